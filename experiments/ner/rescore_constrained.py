"""Re-scores finished BiLSTM-CRF runs with Viterbi kept to valid IOB2 paths (`--constrained-decoding`).

Training is unchanged: the same best checkpoint (chosen on devel F1 during training) is decoded again, with transitions
such as O → I-Disease forbidden, and scored on devel and test. Devel says whether the constraint helps; test is reported.

    .venv/bin/python experiments/ner/rescore_constrained.py runs/ner/bilstm-crf/seed0 runs/ner/bilstm-crf/seed1 ...
"""

from __future__ import annotations

import dataclasses
import json
import sys

from medjax.tasks import load_workdir, ner
from medjax.train import loop


def rescore(workdir: str) -> dict:
    _, config = load_workdir(workdir)
    constrained = dataclasses.replace(config, constrained_decoding=True)
    return loop.evaluate(ner.build_task(constrained), constrained, splits=("val", "test"))


def main(workdirs: list[str]) -> dict:
    results = {workdir: rescore(workdir) for workdir in workdirs}
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
