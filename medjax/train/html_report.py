"""`medjax report --workdir W --html`: one self-contained ``report.html`` of a run, to open on a phone or a laptop.

The page holds the run's config, its results (validation at the best epoch and test) beside the published row where
the task names one (``PUBLISHED`` in its module), every figure the run has (learning curves, ROC, confusion matrix,
the task's own such as the ECG strip; drawn first if missing) and explanation images under ``<workdir>/explain/``.
Everything is inline: CSS in a ``<style>`` element, images as ``data:`` URIs, no script and no network. A run without
``results.json`` yet gets a page that says it is unfinished (how many epochs are done) instead of an error.

Each figure cell carries ``data-key`` (the results.json key) so that a test can hold the page to the file.

A run folder may come from someone else: every value from its files goes into the page through `html.escape`
(`_text`), only regular PNG files inside the folder are embedded (a symlink to a file elsewhere is not), the page is
written through a fresh temporary file and a rename (a symlink at ``report.html`` is replaced, not followed), and a
damaged ``config.json`` or ``results.json`` is a `DataError` naming it.
"""

from __future__ import annotations

import base64
import html
import json
import pathlib
from typing import Any, Callable, Sequence

from medjax.data.files import replace_atomically
from medjax.errors import DataError, UserError
from medjax.train.workdir import read_json_object

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:62rem;padding:1rem;
line-height:1.45;color:#1b1b1b}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85rem;color:#555}
.status{padding:.5rem .75rem;border-radius:.3rem;background:#eef6ee}.status.unfinished{background:#fff4e0}
"""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _text(value: Any) -> str:
    """Any value from the run's files as HTML text: escaped, quotes included."""
    return html.escape(str(value), quote=True)


def _seconds(value: Any) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value:.0f}" if number else _text(value)


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _number(value: Any, key: str = "") -> str:
    attribute = f' data-key="{html.escape(key)}"' if key else ""
    text = f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))
    return f'<td class="num"{attribute}>{text}</td>'


def result_table(results: dict[str, Any], published: Sequence[dict[str, Any]]
                 ) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """``(header, [(metric, [val, test, published...])])``: one row per metric results.json holds for val or test,
    None where a value is missing. The report and the model card (`medjax.train.model_card`) both render it."""
    metrics = []
    for key in results:
        for split in ("val_", "test_"):
            if key.startswith(split) and key[len(split):] not in metrics:
                metrics.append(key[len(split):])
    header = ["metric", "validation (best epoch)", "test", *[str(row["label"]) for row in published]]
    rows = []
    for metric in metrics:
        values = [results.get(f"{split}_{metric}") for split in ("val", "test")]
        values = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in values]
        rows.append((metric, values + [row.get(f"test_{metric}") for row in published]))
    return header, rows


def results_rows(results: dict[str, Any], published: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """`result_table` as HTML cells (val and test cells carry ``data-key``, which the browser test reads)."""
    header, table = result_table(results, published)
    rows = []
    for metric, values in table:
        keys = [f"val_{metric}", f"test_{metric}"] + [""] * (len(values) - 2)
        rows.append([f"<td>{html.escape(metric)}</td>"] + [_number(v, k) if v is not None else "<td></td>"
                                                         for v, k in zip(values, keys)])
    return header, rows


def _figures(workdir: pathlib.Path) -> list[pathlib.Path]:
    """The run's PNG files: regular files (no symlinks) inside the folder that start as a PNG does."""
    pictures = sorted(workdir.glob("*.png")) + sorted((workdir / "explain").glob("*.png"))
    kept = []
    for path in pictures:
        if path.is_symlink() or not path.is_file() or path.parent.is_symlink():
            continue
        with path.open("rb") as handle:
            if handle.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE:
                kept.append(path)
    return kept


def _image(path: pathlib.Path, workdir: pathlib.Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(str(path.relative_to(workdir)))
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{name}" loading="lazy">'
            f"<figcaption>{name}</figcaption></figure>")


def write_report(workdir: str | pathlib.Path, published: Sequence[dict[str, Any]] = (),
                 draw: Callable[[pathlib.Path], Any] | None = None) -> pathlib.Path:
    """Writes ``<workdir>/report.html`` and returns its path.

    Args:
      workdir: a `medjax train` work folder (it must hold ``config.json``).
      published: rows ``{"label": ..., "test_<metric>": value}`` to show beside the run's figures.
      draw: draws the run's PNG figures into the folder when none are there yet (`medjax plot`'s work).

    Raises:
      medjax.errors.UserError: the folder is no run (no ``config.json``).
      medjax.errors.DataError: a truncated or garbled ``config.json`` or ``results.json``.
    """
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").is_file():
        raise UserError(workdir, "expected the work folder of a `medjax train` run, found no config.json")
    saved = read_json_object(workdir / "config.json")
    config, task = saved.get("config", {}), saved.get("task", "?")
    if not isinstance(config, dict):
        raise DataError(f"{workdir / 'config.json'}: config", f"expected a JSON object of options, got "
                                                             f"{type(config).__name__}")
    results_path = workdir / "results.json"
    results = read_json_object(results_path) if results_path.is_file() else None
    epochs_done = 0
    if (workdir / "metrics.jsonl").is_file():
        epochs_done = sum(1 for line in (workdir / "metrics.jsonl").read_bytes().splitlines() if line.strip())
    if draw is not None and results is not None and not list(workdir.glob("*.png")):
        draw(workdir)
    title = f"medjax {task} run: {workdir.name}"
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    epochs = _text(config.get("epochs", "?"))
    if results is None:
        parts.append(f'<p class="status unfinished" id="status">Unfinished: {epochs_done} of '
                     f'{epochs} epochs done, no results.json yet.</p>')
    else:
        parts.append(f'<p class="status" id="status">Finished: best epoch {_text(results.get("best_epoch"))} of '
                     f'{epochs}, selected on validation {_text(results.get("select_metric"))}'
                     f', {_seconds(results.get("wall_seconds", 0))} s of training. medjax '
                     f'{_text(saved.get("medjax_version", "?"))}.</p>')
        header, rows = results_rows(results, published)
        parts += ["<h2>Results</h2>", _table(header, rows)]
    pictures = _figures(workdir)
    if pictures:
        parts += ["<h2>Figures</h2>", *(_image(p, workdir) for p in pictures)]
    parts += ["<h2>Config</h2>", _table(["option", "value"], [[f"<td>{html.escape(k)}</td>",
                                                             f"<td>{html.escape(json.dumps(v))}</td>"]
                                                            for k, v in config.items()])]
    described = saved.get("describe") or {}
    if described:
        parts += ["<h2>Data</h2>", f"<pre>{html.escape(json.dumps(described, indent=2, default=str))}</pre>"]
    parts.append("</body></html>\n")
    return replace_atomically(workdir / "report.html", "".join(parts))
