"""End to end: an epoch of `medjax train ner` (BiLSTM-CRF on NCBI-disease) against a plain PyTorch BiLSTM-CRF loop
fed the very same batches.

    python -m benchmarks.e2e_ner --data-dir ../shared/data/ncbi-disease     # times both, writes the JSON
    python -m benchmarks.e2e_ner --report                                    # the table in RESULTS.md from the JSON

Each side runs in its own process, alternating (medjax, PyTorch, medjax, ...), two epochs per process.
- medjax: the task's data side and the loop's own `setup` and `train_epoch` (the step `medjax train ner` runs, with
  the task's defaults: word + character-CNN + case features, BiLSTM 100 per direction, CRF, dropout 0.5, word
  dropout 0.05, Adam 2e-3 with cosine decay, clipping at global norm 5, batches of 64 sorted by length in chunks).
- PyTorch: the same model written as people write it (``nn.Embedding``, ``nn.Conv1d`` character CNN, packed
  bidirectional ``nn.LSTM``, a CRF whose forward algorithm loops over time), Adam and ``clip_grad_norm_``; it reads
  the epoch's batches that the medjax process wrote (``.npz``), so both see the same padded arrays in the same order.
Epoch 1 includes compilation (medjax compiles once per length bucket); epoch 2 is the steady state.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np

from benchmarks import e2e, results_md

RESULTS = pathlib.Path(__file__).parent / "results" / "e2e_ner.json"
EPOCHS = 2


def _medjax(data_dir: str, batches_file: pathlib.Path) -> dict:
    import jax

    from medjax.tasks import ner
    from medjax.train import batching

    def save_batches(task, config):  # the epochs' batches, in the loop's order, for the PyTorch process
        split, arrays = task.splits["train"], {}
        for epoch in range(EPOCHS):
            order = batching.epoch_order(config.seed, epoch, len(split))
            for i, batch in enumerate(batching.padded_batches(split, config.batch_size, order)):
                arrays.update({f"{epoch}/{i}/{name}": np.asarray(value) for name, value in batch.items()})
        np.savez(batches_file, **arrays)

    seconds, task, run = e2e.time_medjax_epochs(ner, EPOCHS, before=save_batches, data_dir=data_dir)
    sizes = {"vocab": len(task.meta["vocab"]["tokens"]), "tags": len(task.meta["tags"]), "cases": len(ner.CASES)}
    return {"epoch_seconds": seconds, "jax": jax.__version__,
            "facts": {"sizes": sizes, "steps_per_epoch": run.steps_per_epoch}}


def _torch(batches_file: pathlib.Path, sizes: dict) -> dict:
    import torch

    from benchmarks.twins.bilstm_crf import BiLSTMCRF

    torch.manual_seed(0)
    model = BiLSTMCRF(**sizes)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    with np.load(batches_file, allow_pickle=False) as stored:
        epochs = {}
        for key in stored.files:
            epoch, index, name = key.split("/")
            epochs.setdefault(int(epoch), {}).setdefault(int(index), {})[name] = torch.from_numpy(stored[key])
    seconds = []
    model.train()
    for epoch in range(EPOCHS):
        start = time.perf_counter()
        for _, batch in sorted(epochs[epoch].items()):
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": seconds, "torch": torch.__version__, "threads": torch.get_num_threads()}


def measure(data_dir: str, repeats: int) -> dict:
    from benchmarks.runner import machine_facts

    with tempfile.TemporaryDirectory() as tmp:
        batches = str(pathlib.Path(tmp) / "batches.npz")
        runs, facts = e2e.alternate("benchmarks.e2e_ner", repeats, lambda side, facts: [
            "--data-dir", data_dir, "--batches", batches, "--sizes", json.dumps(facts.get("sizes", {}))])
    return {"command": "python -m benchmarks.e2e_ner --data-dir " + data_dir, "date": time.strftime("%Y-%m-%d"),
            "machine": machine_facts(), "facts": facts, "runs": runs}


def report(results: dict) -> str:
    runs, machine, facts = results["runs"], results["machine"], results["facts"]
    lines = [f"{machine['cpu']}, {machine['cpus_available']} CPUs; {e2e.versions(runs)}; `{results['command']}`, "
             f"{results['date']}. NCBI-disease train split, {facts['steps_per_epoch']} batches of 64 an epoch; "
             f"median over {len(results['runs']['medjax'])} processes per side.", "",
             "| epoch | medjax s | PyTorch s | medjax / PyTorch |", "|---|---|---|---|"]
    rows = {name: (e2e.median_epoch(runs, "medjax", [epoch]), e2e.median_epoch(runs, "torch", [epoch]))
            for name, epoch in (("1 (medjax compiles its buckets)", 0), ("2 (steady)", 1))}
    # The task's default run is 15 epochs: the first, then 14 steady ones (derived from the two rows above).
    rows["a 15-epoch run (1st + 14 × 2nd)"] = tuple(first + 14 * steady for first, steady in zip(*rows.values()))
    for name, (m, t) in rows.items():
        lines.append(f"| {name} | {m:.1f} | {t:.1f} | {m / t:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = e2e.parser(__doc__, "../shared/data/ncbi-disease")
    parser.add_argument("--batches", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        result = (_medjax(args.data_dir, pathlib.Path(args.batches)) if args.side == "medjax" else
                  _torch(pathlib.Path(args.batches), json.loads(args.sizes)))
        print(json.dumps(result))
        return 0
    return results_md.record_and_report(
        RESULTS, None if args.report else lambda: measure(args.data_dir, args.repeats), report, "e2e ner",
        "NER epoch against a PyTorch BiLSTM-CRF loop", "python -m benchmarks.e2e_ner --report")


if __name__ == "__main__":
    raise SystemExit(main())
