"""A loaded run's prediction columns as rows: JSON lines or CSV, on stdout or into a file (written atomically)."""

from __future__ import annotations

import csv
import io
import json
import pathlib
import sys
from typing import Any, Iterator

import numpy as np


def iterate(columns: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One dict per row of ``columns`` (every column has one entry per row), as JSON values."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of different lengths: {lengths}")
    count = next(iter(lengths.values()), 0)
    for i in range(count):
        yield {name: _plain(values[i]) for name, values in columns.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def render(columns: dict[str, Any], form: str) -> str:
    """The rows as ``jsonl`` (one JSON object a line) or ``csv`` (lists joined with ``|``)."""
    if form == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in iterate(columns))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    for row in iterate(columns):
        writer.writerow([_cell(value) for value in row.values()])
    return out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "|".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write(columns: dict[str, Any], output: str | None = None, form: str | None = None) -> None:
    """Writes the rows to ``output`` (atomically) or stdout; ``form`` defaults to csv for a ``.csv`` file, else jsonl."""
    form = form or ("csv" if output and output.endswith(".csv") else "jsonl")
    text = render(columns, form)
    if output is None:
        sys.stdout.write(text)
        return
    from medjax.train.workdir import write_atomically

    write_atomically(pathlib.Path(output), text)
    print(f"{len(next(iter(columns.values()), []))} rows: {output}", file=sys.stderr)
