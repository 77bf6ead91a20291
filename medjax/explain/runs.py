"""`medjax explain --workdir W --index i [--method m]`: why a trained run labelled one example (or a batch) as it did.

For an imaging run (`medmnist`) the attributions are taken over the normalised pixels the backbone sees and drawn as
overlays on the image; for an ECG run over the beat window, drawn as coloured samples on the beat; for a text run
(`textclf`) over the token embeddings (gradient × input summed per token) or from the attention weights, written as
a small HTML page of highlighted tokens. Files go to ``<workdir>/explain/<split>-<index>-<method>.png`` (or
``.html``), which `medjax report --html` embeds.

Methods: ``saliency``, ``gradient_x_input``, ``integrated_gradients``, ``smoothgrad``, ``occlusion`` (any run),
``gradcam`` (runs whose model has convolutions), ``attention`` and ``rollout`` (text runs with attention).
"""

from __future__ import annotations

import html
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data.files import replace_atomically
from medjax.errors import ConfigError, UserError
from medjax.explain import attributions
from medjax.explain.internals import attention_maps, attention_rollout, grad_cam, last_spatial_layer
from medjax.train.plots import save_png

METHODS = ("saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "occlusion", "gradcam",
           "attention", "rollout")
_TEXT_ONLY, _NOT_TEXT = ("attention", "rollout"), ("gradcam", "occlusion", "smoothgrad")


def attribute(method: str, forward: Callable, x: jax.Array, target: jax.Array, *, key: jax.Array | None = None,
              window: tuple[int, ...] | None = None, cam: Callable[[], jax.Array] | None = None) -> jax.Array:
    """One method's map, shaped like ``x`` (Grad-CAM: the spatial shape), by name."""
    if method == "integrated_gradients":
        return attributions.integrated_gradients(forward, x, target, steps=32)[0]
    if method == "smoothgrad":
        return attributions.smoothgrad(forward, x, target, key if key is not None else jax.random.key(0))
    if method == "occlusion":
        return attributions.occlusion(forward, x, target, window, tuple(max(w // 2, 1) for w in window))
    if method == "gradcam":
        return cam()
    return attributions.METHODS[method](forward, x, target)


def _examples(task, split: str, indices: np.ndarray) -> dict[str, np.ndarray]:
    n = len(task.splits[split])
    if indices.size == 0 or indices.max() >= n or indices.min() < 0:
        raise ConfigError("--index", f"expected an index from 0 to {n - 1} ({split} has {n} examples), got "
                                     f"{int(indices.max() if indices.size else -1)}")
    return next(task.splits[split].batches(len(indices), order=indices))


def explain_workdir(workdir: str | pathlib.Path, indices: np.ndarray, method: str = "integrated_gradients",
                    split: str = "test") -> list[pathlib.Path]:
    """Writes the ``method`` explanation of each example ``indices`` of ``split``; returns the files written."""
    if method not in METHODS:
        raise ConfigError("--method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    from medjax.tasks import saved_config
    from medjax.train import loop
    from medjax.train.workdir import read_meta

    workdir = pathlib.Path(workdir)
    name, module, config = saved_config(workdir)  # what the run is decides what applies, before its data is read
    if name not in ("medmnist", "ecg", "textclf"):
        raise UserError(workdir, f"expected a medmnist, ecg or textclf run, got a {name!r} run")
    if name != "textclf" and method in _TEXT_ONLY:
        raise UserError(workdir, f"--method {method} needs a text run with attention; this is a {name} run")
    if name == "textclf" and method in _NOT_TEXT:
        raise UserError(workdir, f"--method {method} does not apply to a text run; use saliency, gradient_x_input, "
                                 f"integrated_gradients, attention or rollout")
    if name == "textclf" and method in _TEXT_ONLY and config.model == "lstm":
        raise UserError(workdir, f"--method {method} needs a text run with attention; this is an lstm run: use "
                                 f"saliency, gradient_x_input or integrated_gradients")
    task = module.build_task(config, read_meta(workdir))
    batch = _examples(task, split, np.asarray(indices, np.int64))
    state, _ = loop.restore_best(task, config)
    out = workdir / "explain"  # made by the writers below, once every map is computed
    if task.name == "textclf":
        return _explain_text(task, config, state, batch, indices, method, split, out)
    if task.name == "medmnist":
        return _explain_images(task, config, state, batch, indices, method, split, out)
    return _explain_beats(task, state, batch, indices, method, split, out)


def _predicted(logits: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(jax.nn.softmax(logits, axis=-1))
    return probabilities.argmax(-1), probabilities.max(-1)


def _explain_images(task, config, state, batch, indices, method, split, out) -> list[pathlib.Path]:
    from matplotlib.figure import Figure

    normalized = task.model.module
    backbone = normalized.backbone
    variables = {name: tree["module"]["backbone"] for name, tree in state.variables.items()}
    x = (jnp.asarray(batch["image"], jnp.float32) / 255.0 - normalized.pixel_mean) / normalized.pixel_std

    def forward(images):
        return backbone.apply(variables, images, train=False)

    pred, prob = _predicted(forward(x))
    target = jnp.asarray(pred)

    def cam():
        layer = last_spatial_layer(backbone, variables, x, train=False)
        return grad_cam(backbone, variables, (x,), target, layer, size=x.shape[1:3], train=False)

    maps = np.asarray(attribute(method, forward, x, target, window=(4, 4, x.shape[-1]), cam=cam))
    if maps.ndim == 4:
        maps = np.abs(maps).sum(axis=-1)
    labels = np.asarray(batch["label"]).reshape(len(indices), -1)[:, 0]
    out.mkdir(exist_ok=True)
    written = []
    for row, index in enumerate(indices):
        figure = Figure(figsize=(6, 3.2), layout="constrained")
        left, right = figure.subplots(1, 2)
        image = np.asarray(batch["image"][row], np.float32)
        image = image[..., 0] if image.shape[-1] == 1 else image / 255.0
        for axes in (left, right):
            axes.imshow(image, cmap="gray")
            axes.axis("off")
        right.imshow(maps[row], cmap="jet", alpha=0.5)
        names = task.class_names
        figure.suptitle(f"{split} #{index}: true {names[labels[row]]}, predicted {names[pred[row]]} "
                        f"(p={prob[row]:.2f}); {method}", fontsize="small")
        path = out / f"{split}-{index}-{method}.png"
        save_png(figure, path, dpi=100)
        written.append(path)
    return written


def _explain_beats(task, state, batch, indices, method, split, out) -> list[pathlib.Path]:
    from matplotlib.figure import Figure

    model, variables = task.model, state.variables
    window, rr = jnp.asarray(batch["window"]), jnp.asarray(batch["rr"])

    def forward(w):
        return model.apply(variables, {"window": w, "rr": rr}, train=False)

    pred, prob = _predicted(forward(window))
    target = jnp.asarray(pred)

    def cam():
        inputs = ({"window": window, "rr": rr},)
        layer = last_spatial_layer(model, variables, *inputs, train=False)
        return grad_cam(model, variables, inputs, target, layer, size=window.shape[1:], train=False)

    maps = np.abs(np.asarray(attribute(method, forward, window, target, window=(12,), cam=cam)))
    out.mkdir(exist_ok=True)
    written = []
    for row, index in enumerate(indices):
        figure = Figure(figsize=(7, 2.8), layout="constrained")
        axes = figure.subplots()
        t = np.arange(window.shape[1])
        axes.plot(t, np.asarray(window[row]), color="black", linewidth=0.8)
        points = axes.scatter(t, np.asarray(window[row]), c=maps[row], cmap="hot_r", s=10)
        figure.colorbar(points, ax=axes, label=f"|{method}|")
        names = task.class_names
        axes.set(xlabel="sample in the beat window", ylabel="normalised ECG",
                 title=f"{split} #{index}: true {names[int(batch['label'][row])]}, predicted {names[pred[row]]} "
                       f"(p={prob[row]:.2f})")
        path = out / f"{split}-{index}-{method}.png"
        save_png(figure, path, dpi=100)
        written.append(path)
    return written


def _explain_text(task, config, state, batch, indices, method, split, out) -> list[pathlib.Path]:
    from medjax.tasks import textclf

    classifier = task.model.module
    variables = {"params": state.params["module"]}
    ids, mask = jnp.asarray(batch["ids"]), jnp.asarray(batch["mask"])
    embeddings = classifier.apply(variables, ids, method="embed")

    def forward(e):
        return classifier.apply(variables, e, mask, method="classify")

    pred, prob = _predicted(forward(embeddings))
    if method in _TEXT_ONLY:
        maps = attention_maps(classifier, variables, ids, mask)
        if method == "rollout":
            scores = np.asarray(attention_rollout(maps) * mask[:, :, None]).sum(axis=1)
        else:
            scores = np.asarray(jnp.stack([m.mean(axis=1) if m.ndim == 4 else m for m in maps]).mean(0)
                                * mask[:, :, None]).sum(axis=1)
    else:
        scores = np.abs(np.asarray(attribute(method, forward, embeddings, jnp.asarray(pred))).sum(-1))
    scores = np.where(np.asarray(mask), scores, 0.0)
    vocab = textclf.load_corpus(config).vocab
    out.mkdir(exist_ok=True)
    written = []
    for row, index in enumerate(indices):
        length = int(np.asarray(mask[row]).sum())
        top = max(float(scores[row, :length].max()), 1e-12)
        spans = "".join(f'<span style="background:rgba(220,40,40,{scores[row, t] / top:.2f})" title="'
                        f'{scores[row, t]:.3g}">{html.escape(vocab.decode([int(ids[row, t])])[0])}</span> ' for t in range(length))
        names = task.class_names
        page = (f'<!doctype html><meta charset="utf-8"><title>{split} #{index}</title><body style="font-family:'
                f'sans-serif;max-width:50rem;margin:auto;line-height:1.8"><h1>{split} #{index}</h1><p>true '
                f'{html.escape(names[int(batch["label"][row])])}, predicted {html.escape(names[pred[row]])} '
                f'(p={prob[row]:.2f}); {method}</p><p>{spans}</p></body>\n')
        path = out / f"{split}-{index}-{method}.html"
        replace_atomically(path, page)
        written.append(path)
    return written
