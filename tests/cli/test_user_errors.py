"""A standing fuzz test of the user's mistakes (issue 23): every command and every task, one table.

Each row of `CASES` is ``(name, command line, what stderr must name[, bytes on stdin])``; the command line and the
expected text are templates whose ``{names}`` are the paths `build_world` makes once per module: tiny synthetic data
for each task, one tiny finished run for each task whose commands need one (MedMNIST, abstracts, ECG, Eunomia
treatment, translation), damaged copies of the image run, and damaged data files. Every case runs `medjax.cli.main`
in this process (one test walks the table, so that ``pytest -n 2`` builds the runs once, on one worker) and must end
with exit status 2, exactly one stderr line starting ``medjax: error:`` that names the file (or option), no
traceback, and nothing changed: the sha256 of every file under each path the command line names (run folders, data
files) and of a sentinel file outside every run, and the inode, size and times of every path under the module's
folder, are the same after as before. A mistake must change nothing.

One test still runs the real entry point as a subprocess (``python -m medjax.cli``): a mistake, and ``--debug``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import shlex
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
import wfdb

from medjax import cli
from tests.cli.cli_data import breastmnist, ecg_record
from tests.tasks.test_translation import write_tmx

CONLL = "Breast\tB-Disease\ncancer\tI-Disease\nis\tO\ncommon\tO\n\nIt\tO\nkills\tO\n"
ABSTRACTS_HEADER = "condition_label,medical_abstract\n"
LABELS = "condition_label,condition_name\n1,neoplasms\n2,digestive system diseases\n"
QUIET = "--epochs 1 --no-progress --no-tensorboard --log-every 0"

# name, command line, what its one stderr line must contain[, stdin bytes]. The {names} are `world`'s paths.
CASES = [
    # --- the 25 mistakes this file began with -------------------------------------------------------------------
    ("truncated npz", "{train_img} --data-dir {truncated_npz}", "{truncated_npz}: truncated or corrupt"),
    ("labels out of range", "{train_img} --data-dir {labels_npz}", "{labels_npz}: train_labels: expected labels"),
    ("missing data folder", "{train_img} --data-dir {root}/nowhere", "{root}/nowhere"),
    ("batch size 0", "{train_img} --data-dir {npz} --batch-size 0", "--batch-size: expected"),
    ("unknown model", "{train_img} --data-dir {npz} --model vgg", "--model: expected one of"),
    ("unsupported precision", "{train_img} --data-dir {npz} --precision fp8", "--precision: expected one of fp32, bf16"),
    ("sweep value not a number", "{train_img} --data-dir {npz} --sweep lr=1e-3,fast",
     "--sweep: expected numbers after lr=, got 'fast'"),
    ("sweep over dropout", "{train_img} --data-dir {npz} --sweep dropout=0.1,0.3",
     "--sweep: expected an option among lr, weight_decay"),
    ("sweep beside DP", "{train_img} --data-dir {npz} --sweep lr=1e-3,1e-2 --dp-epsilon 8",
     "--sweep: expected no --dp-epsilon and --ensemble 1 beside it"),
    ("DP delta too large", "{train_img} --data-dir {npz} --dp-epsilon 8 --dp-delta 0.01",
     "--dp-delta: expected 0 < delta < 1/546"),
    ("too many devices", "{train_img} --data-dir {npz} --num-devices 99", "--num-devices"),
    ("CoNLL line of 3 columns", "{train_ner} --data-dir {ner3}", "{ner3}/train.tsv:8:"),
    ("bytes that are not UTF-8", "{train_ner} --data-dir {latin1}", "{latin1}/devel.tsv:4: expected UTF-8"),
    ("tag that training lacks", "{train_ner} --data-dir {newtag}", "{newtag}/test.tsv:9: expected tags"),
    ("unknown tag", "{train_ner} --data-dir {badtag}", "{badtag}/train.tsv:2: unknown tag 'X-Dis'"),
    ("missing devel file", "{train_ner} --data-dir {nodevel}", "{nodevel}/devel.tsv: expected a CoNLL file"),
    ("wrong CSV header", "{train_txt} --data-dir {header}", "{header}/medical_tc_test.csv:1: header is"),
    ("label not an integer", "{train_txt} --data-dir {notint}", "{notint}/medical_tc_test.csv:3: label"),
    ("unclosed CSV quote", "{train_txt} --data-dir {unclosed}", "{unclosed}/medical_tc_test.csv:3: malformed"),
    ("wrong folder for the task", "{train_txt} --data-dir {ner3}", "{ner3}/medical_tc_"),
    ("TOML with an unknown option", "{train_img} --config {unknown_toml}", "{unknown_toml}: expected options"),
    ("TOML that does not parse", "{train_img} --config {broken_toml}", "{broken_toml}: expected TOML"),
    ("truncated WFDB signal file", "{train_ecg} --data-dir {ecg_truncated}",
     "{ecg_truncated}/900.hea: expected the signal file to hold"),
    ("annotations of another record", "{train_ecg} --data-dir {ecg_foreign}",
     "{ecg_foreign}/900.atr: expected beat annotations on this signal's QRS"),
    ("AAMI labels from PVC flags", "{train_ecg} --data-dir {ecg_npz} --labels aami",
     "{ecg_npz}/mitdb_100.npz: expected MIT-BIH beat symbols"),
    ("predict with no inputs", "predict --workdir {empty}", "INPUT: expected inputs"),
    ("predict with a folder that is no run", "predict --workdir {empty} {ecg_npz}/mitdb_100.npz", "{empty}: expected"),
    ("unknown task", "train xray", "expected a task among ecg, medmnist, molecules, ner, textclf, translation, "
                                   "treatment"),
    ("evaluate a folder that is no run", "evaluate --workdir {empty}", "{empty}: expected"),
    ("evaluate a damaged config.json", "evaluate --workdir {cfg_truncated}", "{cfg_truncated}/config.json"),

    # --- the command line itself --------------------------------------------------------------------------------
    ("unknown command", "frobnicate --workdir {img}", "expected a command among train, predict"),
    ("unknown option", "predict --workdir {img} {png} --colour red", "unrecognized arguments: --colour red"),
    ("predict --format xml", "predict --workdir {img} {png} --format xml", "argument --format: invalid choice: 'xml'"),
    ("predict --which of no kind", "predict --workdir {img} {png} --which newest", "argument --which: invalid choice"),
    ("explain --split of no kind", "explain --workdir {img} --index 0 --split dev", "argument --split: invalid choice"),
    ("evaluate --splits of no kind", "evaluate --workdir {img} --splits holdout", "argument --splits: invalid choice"),
    ("export --format xml", "export --workdir {img} --format xml", "argument --format: invalid choice: 'xml'"),
    ("recommend without --person-id", "recommend --workdir {rx}", "the following arguments are required: --person-id"),
    ("recommend --person-id of letters", "recommend --workdir {rx} --person-id abc",
     "argument --person-id: invalid int value: 'abc'"),

    # --- predict: inputs of the wrong kind, options out of range ------------------------------------------------
    ("a text file given to an image run", "predict --workdir {img} {notes}", "{notes}: expected an image file"),
    ("a truncated PNG given to an image run", "predict --workdir {img} {png_truncated}",
     "{png_truncated}: expected an image file"),
    ("a folder given to an image run", "predict --workdir {img} {root}/data", "{root}/data"),
    ("an image that is not there", "predict --workdir {img} {root}/scan.png", "{root}/scan.png"),
    ("--coverage 0", "predict --workdir {img} {png} --coverage 0", "--coverage: expected a number between 0 and 1"),
    ("--coverage 1.5", "predict --workdir {img} {png} --coverage 1.5", "--coverage: expected a number between 0 and 1"),
    ("--top-k on an image run", "predict --workdir {img} {png} --top-k 3",
     "--top-k: expected an option that a medmnist run takes (--coverage), got 3"),
    ("--coverage on a translation run", "predict --workdir {mt} 'the fever' --coverage 0.9",
     "--coverage: expected an option that a translation run takes (none), got 0.9"),
    ("--coverage on a treatment run", "predict --workdir {rx} 1 --coverage 0.9",
     "--coverage: expected an option that a treatment run takes (--top-k), got 0.9"),
    ("--coverage on a run without conformal.json", "predict --workdir {no_conformal} {png} --coverage 0.9",
     "{no_conformal}: expected a run calibrated for prediction sets"),
    ("--coverage with a damaged conformal.json", "predict --workdir {conformal_bad} {png} --coverage 0.9",
     "{conformal_bad}/conformal.json"),
    ("a sentence given to an ECG run", "predict --workdir {ecg} 'the patient has a fever'",
     "the patient has a fever.hea: expected a WFDB header"),
    ("an image file given to an ECG run", "predict --workdir {ecg} {npz}", "{npz}: expected the keys"),
    ("a person id that is no integer", "predict --workdir {rx} 12x",
     "INPUT: expected person ids (integers), got '12x'"),
    ("a person the database lacks", "predict --workdir {rx} 987654321",
     "--person-id: expected a person_id of the person table, got 987654321"),
    ("--top-k 0 on a treatment run", "predict --workdir {rx} 1 --top-k 0", "--top-k: expected at least 1"),
    ("an empty stdin", "predict --workdir {txt} -", "INPUT: expected inputs", b""),
    ("stdin that is not UTF-8", "predict --workdir {txt} -", "stdin: expected inputs as UTF-8 text, got byte 0xef",
     "good text\nna".encode() + b"\xefve\n"),
    ("an --file that is not there", "predict --workdir {txt} --file {root}/inputs.txt", "{root}/inputs.txt"),
    ("an --file that is not UTF-8", "predict --workdir {txt} --file {latin1_text}", "{latin1_text}:2: expected UTF-8"),
    ("--output into a missing folder", "predict --workdir {img} {png} --output {root}/nowhere/out.csv",
     "{root}/nowhere: expected a folder to write out.csv into, found nothing"),
    ("--output that is a folder", "predict --workdir {img} {png} --output {theirs}", "{theirs}: Is a directory"),

    # --- translate, recommend, keywords: the wrong run, empty or undecodable input ------------------------------
    ("translate with an image run", "translate --workdir {img} 'the fever'",
     "{img}: expected the work folder of a `medjax train translation` run, got a medmnist run"),
    ("translate an empty stdin", "translate --workdir {mt}", "stdin: expected sentences to translate, got none", b""),
    ("translate stdin that is not UTF-8", "translate --workdir {mt}", "stdin: expected sentences to translate as UTF-8",
     b"the fever\n\xff\n"),
    ("translate blank text", "translate --workdir {mt} '  '", "TEXT: expected sentences to translate, got none"),
    ("recommend with an ECG run", "recommend --workdir {ecg} --person-id 1",
     "{ecg}: expected the work folder of a `medjax train treatment` run, got a ecg run"),
    ("recommend a person the database lacks", "recommend --workdir {rx} --person-id 987654321",
     "--person-id: expected a person_id of the person table, got 987654321"),
    ("recommend --top-k 0", "recommend --workdir {rx} --person-id 1 --top-k 0", "--top-k: expected at least 1"),
    ("keywords with an image run", "keywords --workdir {img} 'tumour of the bowel'",
     "{img}: expected a textclf run, got a 'medmnist' run"),
    ("keywords --top-k 0", "keywords --workdir {txt} --top-k 0 'tumour of the bowel'",
     "--top-k: expected an integer >= 1"),
    ("keywords by attention of an LSTM", "keywords --workdir {txt} --method attention 'tumour of the bowel'",
     "--method attention: LSTMTextClassifier sows no attention weights"),
    ("keywords of a text without words", "keywords --workdir {txt} '... !'", "expected a text with words"),
    ("keywords of a folder that is no run", "keywords --workdir {empty} 'tumour'", "{empty}: expected the work folder"),

    # --- explain -----------------------------------------------------------------------------------------------
    ("explain --index out of range", "explain --workdir {img} --index 9999",
     "--index: expected an index from 0 to 155 (test has 156 examples), got 9999"),
    ("explain --index -1", "explain --workdir {img} --index -1", "--index: expected an index from 0 to 155"),
    ("explain --limit 0", "explain --workdir {img} --limit 0", "--limit: expected an integer >= 1"),
    ("explain --index and --limit", "explain --workdir {img} --index 0 --limit 2", "expected --index i or --limit n"),
    ("explain rollout of an image run", "explain --workdir {img} --index 0 --method rollout",
     "--method rollout needs a text run with attention"),
    ("explain gradcam of a text run", "explain --workdir {txt} --index 0 --method gradcam",
     "--method gradcam does not apply to a text run"),
    ("explain attention of an LSTM text run", "explain --workdir {txt} --index 0 --method attention",
     "--method attention needs a text run with attention; this is an lstm run"),
    ("explain a treatment run", "explain --workdir {rx} --index 0", "{rx}: expected a medmnist, ecg or textclf run"),
    ("explain a run whose data moved", "explain --workdir {data_moved} --index 0", "{root}/moved-away"),
    ("explain a damaged checkpoint", "explain --workdir {ckpt_damaged} --index 0", "{ckpt_damaged}/checkpoints/best"),

    # --- export ------------------------------------------------------------------------------------------------
    ("export --format onnx of an LSTM run", "export --workdir {txt} --format onnx",
     "--format onnx: expected a model jax2onnx can convert"),
    ("export --int8 of a run whose data moved", "export --workdir {data_moved} --int8", "{root}/moved-away"),
    ("export a damaged checkpoint", "export --workdir {ckpt_damaged}", "{ckpt_damaged}/checkpoints/best"),
    ("export a truncated meta.json", "export --workdir {meta_truncated}",
     "{meta_truncated}/meta.json: expected the meta.json of a run (JSON)"),
    ("export a folder that is no run", "export --workdir {empty}", "{empty}: expected the work folder"),

    # --- damaged run folders: config.json, meta.json, results.json, predictions_test.npz, conformal.json --------
    ("predict with config.json a JSON list", "predict --workdir {cfg_list} {png}", "{cfg_list}/config.json: expected"),
    ("predict with config.json of no task", "predict --workdir {cfg_task} {png}",
     "{cfg_task}/config.json: expected the config.json of a run of a task among ecg, medmnist"),
    ("predict with a bad value in config.json", "predict --workdir {cfg_value} {png}",
     "{cfg_value}/config.json: --batch-size: expected an integer >= 1"),
    ("predict with meta.json lacking a key", "predict --workdir {meta_key} {png}",
     "{meta_key}/meta.json: expected the meta.json of a run with 'num_classes'"),
    ("predict with meta.json not UTF-8", "predict --workdir {meta_bytes} {png}", "{meta_bytes}/meta.json"),
    ("evaluate with meta.json a JSON list", "evaluate --workdir {meta_list}", "{meta_list}/meta.json: expected"),
    ("evaluate a run whose data moved", "evaluate --workdir {data_moved}", "{root}/moved-away"),
    ("report a truncated results.json", "report --workdir {results_truncated}",
     "{results_truncated}/results.json: expected the results.json"),
    ("report a results.json that is a list", "report --workdir {results_list}", "{results_list}/results.json"),
    ("report a damaged checkpoint", "report --workdir {ckpt_damaged}", "{ckpt_damaged}/checkpoints/best"),
    ("report a folder that is no run", "report --workdir {empty}", "{empty}: expected the work folder"),
    ("report --html of a config.json that is a list", "report --workdir {cfg_list} --html",
     "{cfg_list}: expected the work folder of a `medjax train` run, found no readable config.json"),
    ("explain a bad value in config.json", "explain --workdir {cfg_value} --index 0",
     "{cfg_value}/config.json: --batch-size: expected an integer >= 1"),
    ("keywords with a damaged config.json", "keywords --workdir {cfg_truncated} 'tumour'",
     "{cfg_truncated}/config.json: expected the config.json of a run (JSON)"),
    ("recommend with a truncated meta.json", "recommend --workdir {meta_truncated} --person-id 1",
     "{meta_truncated}/meta.json: expected the meta.json of a run (JSON)"),
    ("translate with a run of no checkpoint", "translate --workdir {no_checkpoint} 'the fever'",
     "{no_checkpoint}: expected a run with a finished epoch, found no best checkpoint"),
    ("predict --which latest of damaged checkpoints", "predict --workdir {ckpt_damaged} {png} --which latest",
     "{ckpt_damaged}/checkpoints/latest: expected a readable checkpoint"),
    ("plot with config.json a JSON list", "plot --workdir {cfg_list}", "{cfg_list}/config.json"),
    ("plot a folder that is no run", "plot --workdir {empty}", "{empty}"),
    ("plot with results.json a list", "plot --workdir {results_list}",
     "{results_list}/results.json: expected a run's JSON file (a JSON object)"),
    ("report a truncated meta.json", "report --workdir {meta_truncated}",
     "{meta_truncated}/meta.json: expected the meta.json of a run (JSON)"),
    ("export with config.json a JSON list", "export --workdir {cfg_list}", "{cfg_list}/config.json: expected"),

    # --- train: options out of range, impossible combinations, foreign folders, TOML of the wrong type ----------
    ("--ensemble with --dp-epsilon", "{train_img} --data-dir {npz} --ensemble 2 --dp-epsilon 8",
     "--ensemble: expected 1 with --dp-epsilon"),
    ("--lr 0", "{train_img} --data-dir {npz} --lr 0", "--lr: expected a number > 0"),
    ("--lr nan", "{train_img} --data-dir {npz} --lr nan", "--lr: expected a finite number"),
    ("--size 100", "{train_img} --data-dir {npz} --size 100", "--size: expected one of 28, 64, 128, 224"),
    ("--dataset of no kind", "{train_img} --data-dir {npz} --dataset nosuchmnist", "--dataset: expected one of"),
    ("--epochs 0", "{train_img} --data-dir {npz} --epochs 0", "--epochs: expected an integer >= 1"),
    ("--batch-size not divisible by devices", "{train_img} --data-dir {npz} --num-devices 3 --batch-size 32",
     "--batch-size: expected a positive multiple of the 3 devices"),
    ("--batch-size of letters", "{train_img} --data-dir {npz} --batch-size many",
     "argument --batch-size: invalid int value: 'many'"),
    ("an npz file that is an npy array", "{train_img} --data-dir {npy_npz}", "{npy_npz}: not an .npz archive"),
    ("an npz file that is text", "{train_img} --data-dir {text_npz}", "{text_npz}: not an .npz archive"),
    ("an npz with float pixels", "{train_img} --data-dir {float_npz}", "{float_npz}: train_images: expected uint8"),
    ("an npz lacking a split", "{train_img} --data-dir {nokey_npz}", "{nokey_npz}: missing key(s) test_images"),
    ("a folder of other npz files", "{train_img} --data-dir {ecg_npz}",
     "{ecg_npz}: expected a folder holding breastmnist.npz"),
    ("TOML epochs of the wrong type", "{train_img} --config {toml_epochs}",
     "{toml_epochs}: --epochs: expected an integer, got 'ten'"),
    ("TOML model of the wrong type", "{train_img} --config {toml_model}",
     "{toml_model}: --model: expected a string, got 3"),
    ("TOML milestones not a list", "{train_img} --config {toml_milestones}",
     "{toml_milestones}: --milestones: expected a list of"),
    ("TOML file that is not there", "{train_img} --config {root}/missing.toml", "{root}/missing.toml"),
    ("TOML file that is not UTF-8", "{train_img} --config {toml_bytes}", "{toml_bytes}:1: expected UTF-8"),
    ("train into a folder of someone's files", "{train_img_in} {theirs} --data-dir {npz}",
     "{theirs}: holds 1 files that no medjax run wrote"),
    ("train into a run of another task", "{train_mt_in} {ecg} --data-dir {tmx}",
     "{ecg}: holds a run of another task ('ecg')"),
    ("train into a path that is a file", "{train_img_in} {notes} --data-dir {npz}",
     "{notes}: expected a folder for the run"),
    ("NER sentences longer than --buckets", "{train_ner} --data-dir {ner_ok} --buckets 2",
     "expected sentences of at most 2 tokens"),
    ("NER train file of blank lines", "{train_ner} --data-dir {ner_blank}",
     "{ner_blank}/train.tsv: expected sentences"),
    ("NER --model of no kind", "{train_ner} --data-dir {ner_ok} --model crf", "--model: expected one of bilstm"),
    ("abstracts label listed twice", "{train_txt} --data-dir {twice}",
     "{twice}/medical_tc_labels.csv:4: label 1 listed twice"),
    ("abstracts of an unknown label", "{train_txt} --data-dir {unknown_label}",
     "{unknown_label}/medical_tc_test.csv:3: unknown label 9"),
    ("an empty abstract", "{train_txt} --data-dir {empty_abstract}",
     "{empty_abstract}/medical_tc_test.csv:3: expected an abstract"),
    ("abstracts: a header and no rows", "{train_txt} --data-dir {header_only}",
     "{header_only}/medical_tc_test.csv: expected data rows"),
    ("abstracts longer than --buckets", "{train_txt} --data-dir {tc_ok} --buckets 2",
     "--buckets: expected a largest bucket of at least"),
    ("abstracts --model of no kind", "{train_txt} --data-dir {tc_ok} --model cnn", "--model: expected one of lstm"),
    ("NER --limit -1", "{train_ner} --data-dir {ner_ok} --limit -1", "--limit: expected an integer >= 0"),
    ("ECG --rate 0", "{train_ecg} --data-dir {ecg_ok} --rate 0", "--rate: expected a number > 0"),
    ("molecules --split of no kind", "{train_mol} --data-dir {mol_ok} --split cluster",
     "--split: expected one of random, scaffold"),
    ("treatment --horizon-days 0", "{train_rx} --horizon-days 0", "--horizon-days: expected an integer >= 1"),
    ("treatment --model of no kind", "{train_rx} --model gru", "--model: expected one of"),
    ("ECG --before 1000", "{train_ecg} --data-dir {ecg_ok} --before 1000",
     "--before/--after: expected beat windows that fit inside the records"),
    ("ECG --patch wider than the window", "{train_ecg} --data-dir {ecg_ok} --model transformer --patch 1000",
     "--patch: expected at most the window's"),
    ("ECG folder of two records", "{train_ecg} --data-dir {ecg_two}", "{ecg_two}: expected at least 3 records"),
    ("ECG folder of no records", "{train_ecg} --data-dir {theirs}", "{theirs}: expected ECG records"),
    ("ECG npz record lacking keys", "{train_ecg} --data-dir {ecg_nokeys}", "{ecg_nokeys}/mitdb_100.npz: expected the "
                                                                            "keys"),
    ("ECG npz with a flag per peak missing", "{train_ecg} --data-dir {ecg_flags}",
     "{ecg_flags}/mitdb_100.npz: expected one is_pvc flag per r_peak"),
    ("molecules without the target column", "{train_mol} --data-dir {mol_ok} --target-column logp",
     "{mol_ok}:1: expected a column 'logp'"),
    ("molecules target not a number", "{train_mol} --data-dir {mol_nan}", "{mol_nan}:3: expected a number in column"),
    ("molecules empty SMILES", "{train_mol} --data-dir {mol_empty}", "{mol_empty}:3: expected a SMILES"),
    ("molecules SMILES of odd characters", "{train_mol} --data-dir {mol_chars}",
     "{mol_chars}:3: expected a SMILES of characters the atom-level tokenizer covers"),
    ("molecules row of 3 fields", "{train_mol} --data-dir {mol_fields}", "{mol_fields}:3: expected 2 fields"),
    ("molecules classification of real targets", "{train_mol} --data-dir {mol_ok} --task-type classification",
     "--task-type: expected 0/1 targets in column 'expt' for classification, got values such as 0, 0.1, 0.2"),
    ("molecules folder of two CSV files", "{train_mol} --data-dir {mol_two}", "{mol_two}: expected a folder with one "
                                                                                "CSV file"),
    ("treatment fractions leave nothing to train on", "{train_rx} --val-fraction 0.6 --test-fraction 0.5",
     "--val-fraction"),
    ("treatment --data-dir not there", "{train_rx} --data-dir {root}/cdm.duckdb", "{root}/cdm.duckdb"),
    ("treatment --data-dir not DuckDB", "{train_rx} --data-dir {notes}", "{notes}: expected a DuckDB database"),
    ("treatment CSV folder lacking a table", "{train_rx} --data-dir {theirs}", "{theirs}/"),
    ("treatment --database of a missing SQLite file", "{train_rx} --database sqlite:///{root}/missing.sqlite",
     "sqlite:///{root}/missing.sqlite: expected a reachable database, got no such SQLite file "
     "{root}/missing.sqlite"),
    ("translation fractions leave nothing to train on", "{train_mt} --data-dir {tmx} --val-fraction 0.6 "
                                                         "--test-fraction 0.5", "--val-fraction"),
    ("translation --ensemble 2", "{train_mt} --data-dir {tmx} --ensemble 2", "--ensemble: expected 1 for translation"),
    ("translation TMX that is no XML", "{train_mt} --data-dir {tmx_broken}",
     "{tmx_broken}:3: expected well-formed XML"),
    ("translation plain files of unequal length", "{train_mt} --data-dir {plain_unequal}",
     "{plain_unequal}/corpus.fr"),
    ("translation plain file with an empty line", "{train_mt} --data-dir {plain_blank}",
     "{plain_blank}/corpus.en:3: expected a sentence"),
    ("translation folder of two TMX files", "{train_mt} --data-dir {tmx_two}", "{tmx_two}: expected one .tmx file"),
    ("translation --num-heads not dividing --embed-dim", "{train_mt} --data-dir {tmx} --num-heads 3",
     "--num-heads: expected a divisor of --embed-dim 16"),
    ("translation --max-length 2", "{train_mt} --data-dir {tmx} --max-length 2",
     "expected training pairs of at most --max-length 2"),
]


def ner_corpus(folder, **replace):
    """A valid three-file NER corpus in ``folder``; ``replace`` swaps one file's text (or bytes, or None: absent)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "devel.tsv", "test.tsv"):
        content = replace.get(name.replace(".", "_"), CONLL)
        if content is None:
            continue
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def abstracts_corpus(folder, abstracts=None, labels=LABELS):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "medical_tc_labels.csv").write_text(labels)
    rows = abstracts or ABSTRACTS_HEADER + "".join(
        f"{1 + i % 2},abstract {i} about the {'tumour' if i % 2 else 'bowel'} disease\n" for i in range(40))
    (folder / "medical_tc_test.csv").write_text(rows)
    return folder


def mitdb_npz(folder, names=("100", "105", "106"), **replace):
    """MIT-BIH-like ``.npz`` copies with PVC flags and no beat symbols; ``replace`` swaps or drops (None) arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        arrays = {"ecg_adu": np.zeros(3600, np.int16), "adu_per_mv": 200.0, "fs": 360,
                  "r_peaks": np.arange(100, 3500, 300), "is_pvc": np.zeros(12, np.uint8), **replace}
        np.savez(folder / f"mitdb_{name}.npz", **{k: v for k, v in arrays.items() if v is not None})
    return folder


def molecules_csv(path, extra=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("smiles,expt\nCCO,1.5\n" + extra + "".join(f"{'C' * (1 + i % 6)}O,{i / 10}\n" for i in range(30)))
    return path


def run_copy(source: pathlib.Path, target: pathlib.Path, damage) -> str:
    """A copy of a finished run with one file damaged by ``damage(folder)``: the files a case damages are copies, the
    others (checkpoints) hard links, whose inode and times any write would change for both runs."""
    shutil.copytree(source, target, copy_function=os.link)
    for name in ("config.json", "meta.json", "results.json", "conformal.json", "predictions_test.npz"):
        (target / name).unlink()
        shutil.copy(source / name, target / name)
    damage(target)
    return str(target)


def replace(name: str, contents: str | bytes):
    def damage(folder: pathlib.Path) -> None:
        path = folder / name
        path.unlink(missing_ok=True)
        if contents is not None:
            path.write_bytes(contents.encode() if isinstance(contents, str) else contents)
    return damage


def edit_config(**fields):
    def damage(folder: pathlib.Path) -> None:
        saved = json.loads((folder / "config.json").read_text())
        saved["config"].update(fields)
        (folder / "config.json").write_text(json.dumps(saved))
    return damage


def break_checkpoints(folder: pathlib.Path) -> None:
    for path in (folder / "checkpoints").rglob("*"):
        if path.is_file() and "model" in path.parts:
            path.unlink()
            path.write_bytes(b"\0" * 16)


def train(task: str, workdir: pathlib.Path, data: pathlib.Path | None, flags: str) -> str:
    """A finished run in ``workdir``: one epoch of a tiny model, with plain SGD (its step compiles fastest)."""
    fast = "--optimizer sgd --schedule constant --clip-norm 0"
    argv = ["train", task, "--workdir", str(workdir), *shlex.split(QUIET), *shlex.split(fast), *shlex.split(flags)]
    assert cli.main(argv + (["--data-dir", str(data)] if data else [])) == 0
    return str(workdir)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    return build_world(tmp_path_factory.mktemp("mistakes"))


def build_world(root: pathlib.Path) -> dict[str, str]:
    """Every path the table names: tiny data, five tiny finished runs, their damaged copies, damaged data files."""
    data = root / "data"
    data.mkdir()
    paths = {"root": str(root)}

    # One tiny finished run per task whose commands need one.
    npz = breastmnist(data / "breastmnist.npz")
    tc_ok = abstracts_corpus(data / "abstracts")
    ecg_ok = data / "ecg"
    for i in range(4):
        ecg_record(ecg_ok, name=f"90{i}", seconds=10.0, seed=i)
    tmx = write_tmx(data / "tiny.tmx", documents=5, per_document=6)
    img = train("medmnist", root / "img", npz, "--model cnn --batch-size 128 --eval-batch-size 256")
    txt = train("textclf", root / "txt", tc_ok, "--model lstm --embed-dim 8 --hidden 8 --batch-size 16 "
                                                "--eval-batch-size 16 --min-count 1 --no-baseline")
    ecg = train("ecg", root / "ecg", ecg_ok, "--hidden 8 --batch-size 64 --eval-batch-size 64 --no-baseline")
    rx = train("treatment", root / "rx", None, "--limit 16 --max-events 16 --embed-dim 8 --hidden 8 --batch-size 16 "
                                               "--eval-batch-size 16 --no-baseline")
    mt = train("translation", root / "mt", tmx, "--embed-dim 16 --num-heads 2 --num-layers 1 --vocab-size 40 "
                                                "--max-length 16 --batch-size 32 --eval-batch-size 32 --beam 1 "
                                                "--label-smoothing 0")
    paths.update(img=img, txt=txt, ecg=ecg, rx=rx, mt=mt, npz=str(npz), tc_ok=str(tc_ok), ecg_ok=str(ecg_ok),
                 tmx=str(tmx))

    # Damaged copies of the image run.
    damaged = root / "damaged"
    damaged.mkdir()
    source = pathlib.Path(img)
    truncated_config = (source / "config.json").read_bytes()[:40]
    for name, damage in {
        "cfg_truncated": replace("config.json", truncated_config),
        "cfg_list": replace("config.json", "[]"),
        "cfg_task": replace("config.json", json.dumps({"task": "xray", "config": {}})),
        "cfg_value": edit_config(batch_size=0),
        "meta_truncated": replace("meta.json", (source / "meta.json").read_bytes()[:30]),
        "meta_key": replace("meta.json", "{}"),
        "meta_bytes": replace("meta.json", b'{"size": "\xff"}'),
        "meta_list": replace("meta.json", "[1, 2]"),
        "results_truncated": replace("results.json", (source / "results.json").read_bytes()[:25]),
        "results_list": replace("results.json", "[1, 2]"),
        "predictions_truncated": replace("predictions_test.npz",
                                         (source / "predictions_test.npz").read_bytes()[:300]),
        "no_conformal": replace("conformal.json", None),
        "conformal_bad": replace("conformal.json", '{"method": "lac"}'),
        "ckpt_damaged": break_checkpoints,
        "no_checkpoint": lambda folder: shutil.rmtree(folder / "checkpoints"),
        "data_moved": edit_config(data_dir=str(root / "moved-away")),
    }.items():
        paths[name] = run_copy(source, damaged / name, damage)

    # Small files of the wrong kind, and folders that are no run.
    (root / "empty").mkdir()
    (root / "theirs").mkdir()
    (root / "theirs" / "notes.txt").write_text("someone else's notes\n")
    (data / "notes.txt").write_text("not an image\n")
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(data / "scan.png")
    (data / "scan-truncated.png").write_bytes((data / "scan.png").read_bytes()[:40])
    (data / "latin1.txt").write_bytes(b"fine\nna\xefve\n")
    paths.update(empty=str(root / "empty"), theirs=str(root / "theirs"), notes=str(data / "notes.txt"),
                 png=str(data / "scan.png"), png_truncated=str(data / "scan-truncated.png"),
                 latin1_text=str(data / "latin1.txt"))

    # MedMNIST files.
    (data / "truncated").mkdir()
    paths["truncated_npz"] = str(data / "truncated" / "breastmnist.npz")
    pathlib.Path(paths["truncated_npz"]).write_bytes(npz.read_bytes()[:5000])
    (data / "labels").mkdir()
    paths["labels_npz"] = str(breastmnist(data / "labels" / "breastmnist.npz", labels_high=7))
    with np.load(npz) as arrays:
        good = dict(arrays)
    for name, arrays in (("float", {**good, "train_images": good["train_images"].astype(np.float32)}),
                         ("nokey", {k: v for k, v in good.items() if k != "test_images"})):
        (data / name).mkdir()
        np.savez(data / name / "breastmnist.npz", **arrays)
        paths[f"{name}_npz"] = str(data / name / "breastmnist.npz")
    (data / "npy").mkdir()
    np.save(data / "npy" / "breastmnist.npy", np.zeros(3))
    (data / "npy" / "breastmnist.npy").rename(data / "npy" / "breastmnist.npz")
    (data / "text").mkdir()
    (data / "text" / "breastmnist.npz").write_text("images, honestly\n")
    paths.update(npy_npz=str(data / "npy" / "breastmnist.npz"), text_npz=str(data / "text" / "breastmnist.npz"))

    # TOML configs.
    for name, text in (("unknown_toml", 'model = "cnn"\nlearning_rate = 0.1\n'),
                       ("broken_toml", 'model = "cnn"\nepochs = = 3\n'), ("toml_epochs", 'epochs = "ten"\n'),
                       ("toml_model", "model = 3\n"), ("toml_milestones", "milestones = 0.5\n")):
        (data / f"{name}.toml").write_text(text)
        paths[name] = str(data / f"{name}.toml")
    (data / "bytes.toml").write_bytes(b'model = "\xe9"\n')
    paths["toml_bytes"] = str(data / "bytes.toml")

    # NER corpora.
    for name, kwargs in (("ner3", {"train_tsv": CONLL + "odd\tO\textra\n"}),
                         ("latin1", {"devel_tsv": b"a\tO\nb\tO\n\nna\xefve\tO\n"}),
                         ("newtag", {"test_tsv": CONLL + "\nAspirin\tB-Chemical\n"}),
                         ("badtag", {"train_tsv": "a\tO\nb\tX-Dis\n"}), ("nodevel", {"devel_tsv": None}),
                         ("ner_ok", {}), ("ner_blank", {"train_tsv": "\n\n  \n"})):
        paths[name] = str(ner_corpus(data / name, **kwargs))

    # Abstracts.
    for name, kwargs in (("header", {"abstracts": "label,text\n1,x\n"}),
                         ("notint", {"abstracts": ABSTRACTS_HEADER + "1,fine\none,bad label\n"}),
                         ("unclosed", {"abstracts": ABSTRACTS_HEADER + '1,fine\n2,"never closed\n'}),
                         ("twice", {"labels": LABELS + "1,again\n"}),
                         ("unknown_label", {"abstracts": ABSTRACTS_HEADER + "1,fine\n9,what label\n"}),
                         ("empty_abstract", {"abstracts": ABSTRACTS_HEADER + '1,fine\n2,""\n'}),
                         ("header_only", {"abstracts": ABSTRACTS_HEADER})):
        paths[name] = str(abstracts_corpus(data / name, **kwargs))

    # ECG records.
    truncated, _, _, _ = ecg_record(data / "ecg-truncated", seconds=20.0)
    dat = truncated.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:999])
    foreign, _, beats, _ = ecg_record(data / "ecg-foreign", seconds=20.0)
    wfdb.wrann("900", "atr", beats[:-1] + 144, symbol=["N"] * (beats.size - 1), write_dir=str(foreign.parent))
    for i in range(2):
        ecg_record(data / "ecg-two", name=f"90{i}", seconds=10.0, seed=i)
    paths.update(ecg_truncated=str(truncated.parent), ecg_foreign=str(foreign.parent), ecg_two=str(data / "ecg-two"),
                 ecg_npz=str(mitdb_npz(data / "ecg-npz")),
                 ecg_nokeys=str(mitdb_npz(data / "ecg-nokeys", r_peaks=None)),
                 ecg_flags=str(mitdb_npz(data / "ecg-flags", is_pvc=np.zeros(11, np.uint8))))

    # Molecules.
    for name, extra in (("mol_ok", ""), ("mol_nan", "CCC,warm\n"), ("mol_empty", ",1.0\n"), ("mol_chars", "C§C,1.0\n"),
                        ("mol_fields", "CCC,1.0,2.0\n")):
        paths[name] = str(molecules_csv(data / "molecules" / f"{name}.csv", extra))
    molecules_csv(data / "mol-two" / "a.csv")
    molecules_csv(data / "mol-two" / "b.csv")
    paths["mol_two"] = str(data / "mol-two")

    # Parallel text.
    (data / "tmx-broken.tmx").write_text('<?xml version="1.0"?>\n<tmx version="1.4"><body>\n<tu><tuv></tu>\n')
    paths["tmx_broken"] = str(data / "tmx-broken.tmx")
    for name, english, french in (("plain_unequal", "the fever\nthe cough\nthe pain\n", "la fièvre\nla toux\n"),
                                  ("plain_blank", "the fever\nthe cough\n\nthe pain\n",
                                   "la fièvre\nla toux\nla douleur\nle repos\n")):
        (data / name).mkdir()
        (data / name / "corpus.en").write_text(english)
        (data / name / "corpus.fr").write_text(french)
        paths[name] = str(data / name)
    (data / "tmx-two").mkdir()
    write_tmx(data / "tmx-two" / "a.tmx")
    write_tmx(data / "tmx-two" / "b.tmx")
    paths["tmx_two"] = str(data / "tmx-two")

    # `medjax train <task>` heads: a new work folder each, which a mistake must leave unmade.
    tiny = {"img": "medmnist --model cnn", "ner": "ner --embed-dim 8 --hidden 8 --char-features 0",
            "txt": "textclf --embed-dim 8 --hidden 8", "ecg": "ecg --hidden 8",
            "mol": "molecules --embed-dim 8 --hidden 8", "rx": "treatment --limit 16 --embed-dim 8 --hidden 8",
            "mt": "translation --embed-dim 16 --num-heads 2 --num-layers 1 --vocab-size 40 --max-length 16"}
    for key, head in tiny.items():
        paths[f"train_{key}"] = f"train {head} {QUIET} --workdir {root / 'new' / key}"
        paths[f"train_{key}_in"] = f"train {head} {QUIET} --workdir"
    (root / "outside.txt").write_text("a file outside every run: no mistake may touch it\n")
    return paths


_HASHED: dict[tuple, str] = {}


def sha256(path: str, info: os.stat_result) -> str:
    """The file's sha256, computed again whenever its inode changes (any write moves the change time, which no user
    program can set back): the same answer as hashing it every time, at a fraction of the cost."""
    key = (path, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if key not in _HASHED:
        with open(path, "rb") as handle:
            _HASHED[key] = hashlib.sha256(handle.read()).hexdigest()
    return _HASHED[key]


def snapshot(root: pathlib.Path, argv: list[str]) -> dict[str, str]:
    """The sha256 of every file under each path the command line names and of the sentinel outside every run, and the
    inode, size and times of every path under ``root`` (so a file made, removed or touched anywhere shows)."""
    found, folders = {}, [str(root)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                found[entry.path] = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
    state = {path: f"{i.st_ino} {i.st_size} {i.st_mtime_ns} {i.st_ctime_ns}" for path, i in found.items()}
    named = [str(root / "outside.txt")] + [a for a in argv if a.startswith(str(root) + os.sep) and a in found]
    for path, info in found.items():
        if stat.S_ISREG(info.st_mode) and any(path == n or path.startswith(n + os.sep) for n in named):
            state[f"sha256 {path}"] = sha256(path, info)
    return state


def test_the_table_has_at_least_80_distinct_mistakes_over_every_command_and_task():
    names = [case[0] for case in CASES]
    assert len(names) >= 80 and len(set(names)) == len(names)
    assert len({(case[1], *case[3:]) for case in CASES}) == len(CASES)  # a command line (with its stdin) once
    commands = {"train" if case[1].startswith("{train_") else case[1].split()[0] for case in CASES}
    assert {"train", "predict", "recommend", "translate", "report", "explain", "export", "evaluate", "plot",
            "keywords"} <= commands
    words = " ".join(case[1] for case in CASES)
    for task in ("img", "ner", "txt", "ecg", "mol", "rx", "mt"):  # every task's train, its runs' commands above
        assert f"{{train_{task}" in words, task


def check(case, world: dict[str, str], capsys, monkeypatch) -> str | None:
    """Runs one case of the table; what went wrong, or None."""
    name, command, named, *stdin = case
    argv = shlex.split(command.format(**world))
    named = named.format(**world)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin[0] if stdin else b"")))
    root = pathlib.Path(world["root"])
    before = snapshot(root, argv)
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except BaseException as err:  # noqa: BLE001 - a bug: reported with the case, the other cases still run
        return f"{name}: raised {type(err).__name__}: {str(err)[:300]}"
    err = capsys.readouterr().err
    lines = err.splitlines()
    if code != 2 or "Traceback" in err or len(lines) != 1 or not err.endswith("\n") or \
            not lines[0].startswith("medjax: error: ") or named not in lines[0]:
        return f"{name}: exit status {code}, stderr {err[-800:]!r}; expected one line naming {named!r}"
    after = snapshot(root, argv)
    if after != before:
        changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
        return f"{name}: changed {', '.join(changed[:5])}"
    return None


def test_each_mistake_is_one_line_naming_its_place_exit_status_2_and_changes_nothing(world, capsys, monkeypatch):
    # One test over the whole table, so that `pytest -n 2` builds the runs once, on one worker.
    failures = [problem for case in CASES if (problem := check(case, world, capsys, monkeypatch))]
    assert not failures, f"{len(failures)} of {len(CASES)} cases:\n" + "\n".join(failures)


def run_module(argv, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    return subprocess.run([sys.executable, "-m", "medjax.cli", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_the_real_entry_point_prints_one_line_and_debug_the_traceback(tmp_path):
    """Through ``python -m medjax.cli``: what a user sees, warnings and logging included."""
    result = run_module(["train", "ner", "--data-dir", tmp_path / "nowhere", "--workdir", tmp_path / "run"], tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"medjax: error: {tmp_path}/nowhere/train.tsv: expected a CoNLL file, found nothing\n"
    result = run_module(["--debug", "train", "ner", "--data-dir", tmp_path / "nowhere", "--workdir",
                         tmp_path / "run"], tmp_path)
    assert result.returncode == 1 and "Traceback" in result.stderr and "MissingPath" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
