"""End to end: an epoch of `medjax train medmnist --model resnet18` (the README's main job) against the official
MedMNIST v2 PyTorch recipe's loop on the same npz file.

    python -m benchmarks.e2e_medmnist --data-dir ../shared/data/breastmnist-copy   # times both, writes the JSON
    python -m benchmarks.e2e_medmnist --report                                     # the table in RESULTS.md

Each side runs in its own process, alternating, three epochs per process; an epoch is training plus scoring the
validation split, as both loops do every epoch.
- medjax: the task's data side and the loop's own `setup`, `train_epoch`, `predict_split` and `score_split`.
- PyTorch: MedMNIST v2's `experiments/MedMNIST2D/train_and_eval_pytorch.py` as published: the CIFAR-style ResNet-18
  (`benchmarks/twins/resnet18.py`, the recipe's `models.py`), images as ``ToTensor`` + ``Normalize(0.5, 0.5)``
  (written here with NumPy, without torchvision), a shuffling ``DataLoader`` of 128, ``CrossEntropyLoss``, Adam 1e-3,
  ``MultiStepLR`` at 50% and 75% of the epochs, and each epoch's validation AUC and accuracy (scikit-learn, as the
  recipe's ``Evaluator``).
Epoch 1 includes compilation; epochs 2-3 are the steady state.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from benchmarks import e2e, results_md

RESULTS = pathlib.Path(__file__).parent / "results" / "e2e_medmnist.json"
EPOCHS = 3


def _medjax(data_dir: str, dataset: str) -> dict:
    import jax

    from medjax.tasks import medmnist
    from medjax.train import evaluation, loop

    def score_val(state, task, config, run):  # as `medjax train` does after every epoch
        predictions = loop.predict_split(state, task, "val", config.eval_batch_size, run.mesh, run.members)
        evaluation.score_split(task, predictions, "val")

    seconds, _, run = e2e.time_medjax_epochs(medmnist, EPOCHS, after_epoch=score_val, data_dir=data_dir,
                                             dataset=dataset, model="resnet18")
    return {"epoch_seconds": seconds, "jax": jax.__version__,
            "facts": {"dataset": dataset, "steps_per_epoch": run.steps_per_epoch}}


def _torch(data_dir: str, dataset: str) -> dict:
    import torch
    from sklearn.metrics import accuracy_score, roc_auc_score

    from benchmarks.twins.resnet18 import ResNet18

    with np.load(pathlib.Path(data_dir) / f"{dataset}.npz", allow_pickle=False) as npz:
        splits = {name: (npz[f"{name}_images"], npz[f"{name}_labels"]) for name in ("train", "val")}

    def tensors(images, labels):  # ToTensor (uint8 HW[C] -> float CHW in [0, 1]) and Normalize(mean=.5, std=.5)
        x = torch.from_numpy(images.astype(np.float32) / 255.0)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return torch.utils.data.TensorDataset((x - 0.5) / 0.5, torch.from_numpy(labels.astype(np.int64)))

    train, val = (tensors(*splits[name]) for name in ("train", "val"))
    classes = int(splits["train"][1].max()) + 1
    torch.manual_seed(0)
    model = ResNet18(train.tensors[0].shape[1], classes, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[0.5 * EPOCHS, 0.75 * EPOCHS], gamma=0.1)
    criterion = torch.nn.CrossEntropyLoss()
    train_loader = torch.utils.data.DataLoader(train, batch_size=128, shuffle=True)
    val_loader = torch.utils.data.DataLoader(val, batch_size=128, shuffle=False)
    seconds = []
    for _ in range(EPOCHS):
        start = time.perf_counter()
        model.train()
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets.squeeze(-1))
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        scores, truth = [], []
        with torch.no_grad():
            for inputs, targets in val_loader:
                scores.append(torch.softmax(model(inputs), dim=1).numpy())
                truth.append(targets.numpy().ravel())
        scores, truth = np.concatenate(scores), np.concatenate(truth)
        roc_auc_score(truth, scores[:, 1]) if classes == 2 else roc_auc_score(truth, scores, multi_class="ovr")
        accuracy_score(truth, scores.argmax(1))
        seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": seconds, "torch": torch.__version__, "threads": torch.get_num_threads()}


def measure(data_dir: str, repeats: int) -> dict:
    from benchmarks.runner import machine_facts

    runs, facts = e2e.alternate("benchmarks.e2e_medmnist", repeats, lambda side, facts: [
        "--data-dir", data_dir, "--dataset", facts.get("dataset", "breastmnist")])
    return {"command": "python -m benchmarks.e2e_medmnist --data-dir " + data_dir, "date": time.strftime("%Y-%m-%d"),
            "machine": machine_facts(), "facts": facts, "runs": runs}


def report(results: dict) -> str:
    runs, machine, facts = results["runs"], results["machine"], results["facts"]
    lines = [f"{machine['cpu']}, {machine['cpus_available']} CPUs; {e2e.versions(runs)}; `{results['command']}`, "
             f"{results['date']}. {facts['dataset']}, ResNet-18 (28), {facts['steps_per_epoch']} batches of 128 an "
             f"epoch, training "
             f"+ validation scoring; median over {len(results['runs']['medjax'])} processes per side.", "",
             "| epoch | medjax s | official PyTorch recipe s | medjax / PyTorch |", "|---|---|---|---|"]
    for name, epochs in (("1 (medjax compiles)", [0]), ("2-3 (steady, mean)", [1, 2])):
        m, t = e2e.median_epoch(runs, "medjax", epochs), e2e.median_epoch(runs, "torch", epochs)
        lines.append(f"| {name} | {m:.1f} | {t:.1f} | {m / t:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = e2e.parser(__doc__, "../shared/data/breastmnist-copy")
    parser.add_argument("--dataset", default="breastmnist", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        result = (_medjax if args.side == "medjax" else _torch)(args.data_dir, args.dataset)
        print(json.dumps(result))
        return 0
    return results_md.record_and_report(
        RESULTS, None if args.report else lambda: measure(args.data_dir, args.repeats), report, "e2e medmnist",
        "The README's main job against the official MedMNIST recipe (issue 28)",
        "python -m benchmarks.e2e_medmnist --report")


if __name__ == "__main__":
    raise SystemExit(main())
