"""Generated tables in `benchmarks/RESULTS.md`: each lives between two markers naming the command that wrote it, so
the file quotes committed JSON and a rerun of the command replaces the table in place."""

from __future__ import annotations

import json
import pathlib
from typing import Callable

RESULTS_MD = pathlib.Path(__file__).parent / "RESULTS.md"


def put_section(name: str, title: str, command: str, table: str, path: pathlib.Path = RESULTS_MD) -> None:
    """Replaces the table between ``<!-- {name} table: ... -->`` and ``<!-- /{name} table -->``, or appends a new
    ``## {title}`` section holding it."""
    start, end = f"<!-- {name} table: {command} -->", f"<!-- /{name} table -->"
    text = path.read_text()
    opening = f"<!-- {name} table:"
    if opening in text:
        head, rest = text.split(opening, 1)
        text = head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{start}\n{table}\n{end}\n"
    path.write_text(text)


def record_and_report(results: pathlib.Path, measure: Callable[[], dict] | None, report: Callable[[dict], str],
                      name: str, title: str, command: str) -> int:
    """A benchmark script's last part: ``measure()`` into the JSON ``results`` (None: only report the committed
    one), then its table into RESULTS.md as section ``name`` and onto stdout."""
    if measure is not None:
        results.parent.mkdir(exist_ok=True)
        results.write_text(json.dumps(measure(), indent=1) + "\n")
    table = report(json.loads(results.read_text()))
    put_section(name, title, command, table)
    print(table)
    return 0
