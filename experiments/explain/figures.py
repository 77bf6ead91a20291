"""Figures of experiments/explain/: every attribution method on a trained BreastMNIST ResNet-18 and a trained text
classifier, and Adebayo et al.'s randomisation check for each, from committed numbers.

    python experiments/explain/figures.py --breastmnist runs/explain/breastmnist-resnet18 --textclf runs/explain/textclf
    python experiments/explain/figures.py --report        # RESULTS.md from the committed sanity.json alone

For each run: the first 6 test examples, each method's map (the class the model predicts), then the same maps with the
model's parameters re-initialised (`medjax.explain.sanity.randomized_variables`), and the mean Spearman correlation
between the two (`rank_correlations`), written to ``sanity.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
IMAGE_METHODS = ("saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "occlusion", "gradcam")
TEXT_METHODS = ("saliency", "gradient_x_input", "integrated_gradients", "attention", "rollout")
EXAMPLES = 6


def _restore(workdir):
    from medjax.tasks import load_workdir
    from medjax.train import loop

    task, config = load_workdir(workdir)
    state, _ = loop.restore_best(task, config)
    return task, config, state


def image_maps(workdir) -> dict:
    import jax
    import jax.numpy as jnp
    from matplotlib.figure import Figure

    from medjax.explain.internals import grad_cam, last_spatial_layer
    from medjax.explain.runs import attribute
    from medjax.explain.sanity import randomized_variables, rank_correlations

    task, _, state = _restore(workdir)
    batch = next(task.splits["test"].batches(EXAMPLES))
    normalized = task.model.module
    backbone = normalized.backbone
    trained = {name: tree["module"]["backbone"] for name, tree in state.variables.items()}
    x = (jnp.asarray(batch["image"], jnp.float32) / 255.0 - normalized.pixel_mean) / normalized.pixel_std
    random = randomized_variables(backbone, trained, jax.random.key(123), x, train=False)
    target = jnp.argmax(backbone.apply(trained, x, train=False), -1)
    layer = last_spatial_layer(backbone, trained, x, train=False)

    def maps(variables, method):
        def forward(images):
            return backbone.apply(variables, images, train=False)

        def cam():
            return grad_cam(backbone, variables, (x,), target, layer, size=x.shape[1:3], train=False)

        out = np.asarray(attribute(method, forward, x, target, window=(4, 4, 1), cam=cam))
        return np.abs(out).sum(-1) if out.ndim == 4 else out

    figure = Figure(figsize=(2 * (len(IMAGE_METHODS) + 1), 2.1 * EXAMPLES), layout="constrained")
    grid = figure.subplots(EXAMPLES, len(IMAGE_METHODS) + 1)
    sanity = {}
    for col, method in enumerate(IMAGE_METHODS, start=1):
        ours, theirs = maps(trained, method), maps(random, method)
        sanity[method] = float(np.mean(rank_correlations(ours, theirs)))
        for row in range(EXAMPLES):
            grid[row, col].imshow(batch["image"][row, ..., 0], cmap="gray")
            grid[row, col].imshow(ours[row], cmap="jet", alpha=0.5)
        grid[0, col].set_title(f"{method}\nρ(random)={sanity[method]:.2f}", fontsize="small")
    for row in range(EXAMPLES):
        grid[row, 0].imshow(batch["image"][row, ..., 0], cmap="gray")
        grid[row, 0].set_ylabel(f"test #{row}: {task.class_names[int(np.ravel(batch['label'][row])[0])]}", fontsize="small")
    for axes in grid.ravel():
        axes.set(xticks=[], yticks=[])
    grid[0, 0].set_title("image (true class)", fontsize="small")
    figure.savefig(HERE / "breastmnist-methods.png", dpi=80)
    return {"run": str(workdir), "grad_cam_layer": layer, "examples": EXAMPLES, "mean_rank_correlation": sanity}


def text_maps(workdir) -> dict:
    import jax
    import jax.numpy as jnp
    from matplotlib.figure import Figure

    from medjax.explain.internals import attention_maps, attention_rollout
    from medjax.explain.runs import attribute
    from medjax.explain.sanity import randomized_variables, rank_correlations
    from medjax.tasks import textclf

    task, config, state = _restore(workdir)
    batch = next(task.splits["test"].batches(EXAMPLES))
    classifier = task.model.module
    trained = {"params": state.params["module"]}
    ids, mask = jnp.asarray(batch["ids"]), jnp.asarray(batch["mask"])
    random = randomized_variables(classifier, trained, jax.random.key(123), ids, mask)

    def scores(variables, method):
        if method in ("attention", "rollout"):
            maps = attention_maps(classifier, variables, ids, mask)
            flows = attention_rollout(maps) if method == "rollout" else jnp.stack(
                [m.mean(1) if m.ndim == 4 else m for m in maps]).mean(0)
            return np.asarray((flows * mask[:, :, None]).sum(1))
        embeddings = classifier.apply(variables, ids, method="embed")

        def forward(e):
            return classifier.apply(variables, e, mask, method="classify")

        target = jnp.argmax(forward(embeddings), -1)
        return np.abs(np.asarray(attribute(method, forward, embeddings, target)).sum(-1))

    vocab = textclf.load_corpus(config).vocab
    figure = Figure(figsize=(12, 1.2 * len(TEXT_METHODS) + 1), layout="constrained")
    axes = figure.subplots(len(TEXT_METHODS), 1)
    sanity = {}
    length = min(int(np.asarray(mask[0]).sum()), 40)
    words = vocab.decode([int(i) for i in np.asarray(ids[0, :length])])
    for ax, method in zip(axes, TEXT_METHODS):
        ours, theirs = scores(trained, method), scores(random, method)
        # Over each document's real tokens only: padding is zero in both and would tie the ranks.
        lengths = np.asarray(mask).sum(axis=1)
        sanity[method] = float(np.mean([rank_correlations(ours[i:i + 1, :n], theirs[i:i + 1, :n])[0]
                                        for i, n in enumerate(lengths)]))
        ax.imshow(ours[:1, :length] / max(ours[0, :length].max(), 1e-12), cmap="Reds", aspect="auto")
        ax.set(yticks=[], xticks=range(length))
        ax.set_xticklabels(words, rotation=70, fontsize=6)
        ax.set_title(f"{method} (ρ with a re-initialised model: {sanity[method]:.2f})", fontsize="small")
    figure.savefig(HERE / "textclf-methods.png", dpi=90)
    return {"run": str(workdir), "model": config.model, "examples": EXAMPLES, "mean_rank_correlation": sanity}


def report() -> None:
    sanity = json.loads((HERE / "sanity.json").read_text())
    lines = ["# Explanations and their sanity check", "",
             "Generated by `python experiments/explain/figures.py --report` from `sanity.json`; see `notes.md`.", "",
             "Mean Spearman correlation between each method's maps on the trained model and on the same model with "
             "its parameters re-initialised (Adebayo et al. 2018); near 0: the map depends on the weights, near 1: "
             "it mostly echoes the input.", "", "| run | " + " | ".join(IMAGE_METHODS + ("attention", "rollout")) +
             " |", "|---|" + "---|" * (len(IMAGE_METHODS) + 2)]
    for name, entry in sanity.items():
        values = entry["mean_rank_correlation"]
        cells = [f"{values[m]:.2f}" if m in values else "" for m in IMAGE_METHODS + ("attention", "rollout")]
        lines.append(f"| {name} ({entry.get('model', 'resnet18')}) | " + " | ".join(cells) + " |")
    lines += ["", "![BreastMNIST](breastmnist-methods.png)", "", "![text classifier](textclf-methods.png)", ""]
    notes = HERE / "notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    (HERE / "RESULTS.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--breastmnist", help="work folder of a trained BreastMNIST run")
    parser.add_argument("--textclf", help="work folder of a trained textclf run (with attention)")
    parser.add_argument("--report", action="store_true", help="only regenerate RESULTS.md from sanity.json")
    args = parser.parse_args(argv)
    if not args.report:
        path = HERE / "sanity.json"
        sanity = json.loads(path.read_text()) if path.exists() else {}
        if args.breastmnist:
            sanity["breastmnist"] = image_maps(args.breastmnist)
        if args.textclf:
            sanity["textclf"] = text_maps(args.textclf)
        path.write_text(json.dumps(sanity, indent=2) + "\n")
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
