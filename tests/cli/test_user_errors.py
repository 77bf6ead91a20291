"""Every user mistake through the real command line: one line on stderr naming the file (and line), exit status 2.

Each case runs `python -m medjax.cli` as a subprocess, as a user would, and checks that stderr is exactly one line
starting ``medjax: error:``, with no traceback, naming the place the mistake is in.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys

import numpy as np


import wfdb
from cli_data import breastmnist, ecg_record

CONLL = "Breast\tB-Disease\ncancer\tI-Disease\nis\tO\ncommon\tO\n\nIt\tO\nkills\tO\n"
ABSTRACTS_HEADER = "condition_label,medical_abstract\n"
LABELS = "condition_label,condition_name\n1,neoplasms\n2,digestive system diseases\n"


def ner_corpus(folder, **replace):
    """A valid three-file NER corpus in ``folder``; ``replace`` swaps one file's text (or bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "devel.tsv", "test.tsv"):
        content = replace.get(name.replace(".", "_"), CONLL)
        if content is None:
            continue
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def abstracts_corpus(folder, abstracts=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "medical_tc_labels.csv").write_text(LABELS)
    rows = abstracts or ABSTRACTS_HEADER + "".join(f"{1 + i % 2},abstract number {i} about disease\n" for i in range(40))
    (folder / "medical_tc_test.csv").write_text(rows)
    return folder


def cases(tmp):
    """``[(name, argv, what stderr must name)]``: two dozen distinct mistakes across every task and command."""
    good_npz = breastmnist(tmp / "breastmnist.npz")
    truncated = tmp / "truncated" / "breastmnist.npz"
    truncated.parent.mkdir()
    truncated.write_bytes(good_npz.read_bytes()[:5000])
    (tmp / "labels").mkdir()
    bad_labels = breastmnist(tmp / "labels" / "breastmnist.npz", labels_high=7)
    image = ["train", "medmnist", "--model", "cnn", "--epochs", "1", "--no-progress", "--workdir", str(tmp / "run")]

    three_columns = ner_corpus(tmp / "ner3", train_tsv=CONLL + "odd\tO\textra\n")
    latin1 = ner_corpus(tmp / "latin1", devel_tsv=b"a\tO\nb\tO\n\nna\xefve\tO\n")
    new_tag = ner_corpus(tmp / "newtag", test_tsv=CONLL + "\nAspirin\tB-Chemical\n")
    bad_tag = ner_corpus(tmp / "badtag", train_tsv="a\tO\nb\tX-Dis\n")
    no_devel = ner_corpus(tmp / "nodevel", devel_tsv=None)
    ner = ["train", "ner", "--epochs", "1", "--no-progress", "--workdir", str(tmp / "nerrun")]

    header = abstracts_corpus(tmp / "header", "label,text\n1,x\n")
    not_int = abstracts_corpus(tmp / "notint", ABSTRACTS_HEADER + "1,fine\none,bad label\n")
    unclosed = abstracts_corpus(tmp / "unclosed", ABSTRACTS_HEADER + '1,fine\n2,"never closed\n')
    text = ["train", "textclf", "--epochs", "1", "--no-progress", "--workdir", str(tmp / "textrun")]

    truncated_dat, _, _, _ = ecg_record(tmp / "ecg-truncated", seconds=20.0)
    dat = truncated_dat.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:999])
    foreign, _, beats, _ = ecg_record(tmp / "ecg-foreign", seconds=20.0)
    wfdb.wrann("900", "atr", beats[:-1] + 144, symbol=["N"] * (beats.size - 1), write_dir=str(foreign.parent))
    pvc_only = tmp / "ecg-npz"
    pvc_only.mkdir()
    for name in ("100", "105", "106"):
        np.savez(pvc_only / f"mitdb_{name}.npz", ecg_adu=np.zeros(3600, np.int16), adu_per_mv=200.0, fs=360,
                 r_peaks=np.arange(100, 3500, 300), is_pvc=np.zeros(12, np.uint8))
    ecg_train = ["train", "ecg", "--epochs", "1", "--no-progress", "--workdir", str(tmp / "ecgrun")]

    unknown_key = tmp / "unknown.toml"
    unknown_key.write_text('model = "cnn"\nlearning_rate = 0.1\n')
    broken_toml = tmp / "broken.toml"
    broken_toml.write_text('model = "cnn"\nepochs = = 3\n')
    not_a_run = tmp / "not-a-run"
    not_a_run.mkdir()
    corrupt_run = tmp / "corrupt-run"
    corrupt_run.mkdir()
    (corrupt_run / "config.json").write_text('{"task": "ner", "config": ')
    return [
        ("truncated npz", [*image, "--data-dir", str(truncated)], f"{truncated}: truncated or corrupt"),
        ("labels out of range", [*image, "--data-dir", str(bad_labels)], f"{bad_labels}: train_labels: expected labels"),
        ("missing data folder", [*image, "--data-dir", str(tmp / "nowhere")], str(tmp / "nowhere")),
        ("batch size 0", [*image, "--data-dir", str(good_npz), "--batch-size", "0"], "--batch-size: expected"),
        ("unknown model", [*image, "--data-dir", str(good_npz), "--model", "vgg"], "--model: expected one of"),
        ("DP delta too large", [*image, "--data-dir", str(good_npz), "--dp-epsilon", "8", "--dp-delta", "0.01"],
         "--dp-delta: expected 0 < delta < 1/546"),
        ("too many devices", [*image, "--data-dir", str(good_npz), "--num-devices", "99"], "--num-devices"),
        ("CoNLL line of 3 columns", [*ner, "--data-dir", str(three_columns)], f"{three_columns}/train.tsv:8:"),
        ("bytes that are not UTF-8", [*ner, "--data-dir", str(latin1)], f"{latin1}/devel.tsv:4: expected UTF-8"),
        ("tag that training lacks", [*ner, "--data-dir", str(new_tag)], f"{new_tag}/test.tsv:9: expected tags"),
        ("unknown tag", [*ner, "--data-dir", str(bad_tag)], f"{bad_tag}/train.tsv:2: unknown tag 'X-Dis'"),
        ("missing devel file", [*ner, "--data-dir", str(no_devel)], f"{no_devel}/devel.tsv: expected a CoNLL file"),
        ("wrong CSV header", [*text, "--data-dir", str(header)], f"{header}/medical_tc_test.csv:1: header is"),
        ("label not an integer", [*text, "--data-dir", str(not_int)], f"{not_int}/medical_tc_test.csv:3: label"),
        ("unclosed CSV quote", [*text, "--data-dir", str(unclosed)], f"{unclosed}/medical_tc_test.csv:3: malformed"),
        ("wrong folder for the task", [*text, "--data-dir", str(three_columns)], f"{three_columns}/medical_tc_"),
        ("TOML with an unknown option", [*image, "--config", str(unknown_key)], f"{unknown_key}: expected options"),
        ("TOML that does not parse", [*image, "--config", str(broken_toml)], f"{broken_toml}: expected TOML"),
        ("truncated WFDB signal file", [*ecg_train, "--data-dir", str(truncated_dat.parent)],
         f"{truncated_dat}.hea: expected the signal file to hold"),
        ("annotations of another record", [*ecg_train, "--data-dir", str(foreign.parent)],
         f"{foreign}.atr: expected beat annotations on this signal's QRS"),
        ("AAMI labels from PVC flags", [*ecg_train, "--data-dir", str(pvc_only), "--labels", "aami"],
         f"{pvc_only}/mitdb_100.npz: expected MIT-BIH beat symbols"),
        ("predict with no inputs", ["predict", "--workdir", str(not_a_run)], "INPUT: expected inputs"),
        ("predict with a folder that is no run", ["predict", "--workdir", str(not_a_run),
                                                  str(pvc_only / "mitdb_100.npz")], f"{not_a_run}: expected"),
        ("unknown task", ["train", "xray"], "expected a task among ecg, medmnist, molecules, ner, textclf, translation, "
                                              "treatment"),
        ("evaluate a folder that is no run", ["evaluate", "--workdir", str(not_a_run)], f"{not_a_run}: expected"),
        ("evaluate a damaged config.json", ["evaluate", "--workdir", str(corrupt_run)], f"{corrupt_run}/config.json"),
    ]


def run_cli(argv):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MEDJAX_CACHE_DIR"] = os.path.join(os.path.dirname(argv[-1]) if argv else ".", "cache")
    return subprocess.run([sys.executable, "-m", "medjax.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=300)


def test_each_user_mistake_is_one_line_naming_its_place_and_exit_status_2(tmp_path):
    found = cases(tmp_path)
    assert len(found) >= 20
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = list(pool.map(run_cli, [argv for _, argv, _ in found]))
    failures = []
    for (name, argv, named), result in zip(found, done):
        lines = result.stderr.strip().splitlines()
        ok = (result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1
              and lines[0].startswith("medjax: error: ") and named in lines[0])
        if not ok:
            failures.append(f"{name}: exit {result.returncode}, stderr {result.stderr[-600:]!r}")
    assert not failures, "\n".join(failures)
    # A failed run leaves nothing that a later good run would trip on: no checkpoint, no results.
    for run in ("run", "nerrun", "textrun", "ecgrun"):
        assert not (tmp_path / run / "checkpoints").exists() and not (tmp_path / run / "results.json").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli(["--debug", "train", "ner", "--data-dir", str(tmp_path / "nowhere"), "--workdir",
                      str(tmp_path / "run")])
    assert result.returncode == 1 and "Traceback" in result.stderr and "MissingPath" in result.stderr
