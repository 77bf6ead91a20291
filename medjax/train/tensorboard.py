"""TensorBoard event files of a run, in ``<workdir>/tensorboard/``: written with tensorboardX, read back without it.

Every `medjax train` run logs, against the global optimizer step: ``train/loss``, ``train/lr``, ``train/grad_norm`` and
``train/param_norm`` every ``log_every`` steps; ``val/<metric>`` and the epoch's ``train/<metric>`` totals at the end of
each epoch; ``test/<metric>`` and the config (as text) at the end. The writes are host-side protobuf appends (synchronous, no writer thread) on values
the loop already fetched for its own check of the loss, so the step itself is untouched
(`benchmarks/tensorboard_cost.py` measures it).

Resuming: a run killed after its last checkpoint may have logged steps it will redo. `EventLog` keeps, of the earlier
event files, only the events up to the checkpoint's step, rewritten into one file that replaces them, so the resumed
curves continue without duplicated or missing steps (tested by reading the files back with `read_scalars`).

Example:
  >>> log = EventLog("runs/x/tensorboard", resume_step=0)
  >>> log.scalars(10, {"loss": 0.3}, prefix="train"); log.close()
  >>> read_scalars("runs/x/tensorboard")["train/loss"]     # [(10, 0.3)]
"""

from __future__ import annotations

import os
import pathlib
import socket
import struct
import time
from typing import Any, Iterator, Mapping

import numpy as np

EVENTS_GLOB = "events.out.tfevents.*"
# Sorts before every writer's file name (events.out.tfevents.<unix time>.<host>).
TRIMMED_NAME = "events.out.tfevents.0000000000.resumed"


def _records(path: pathlib.Path) -> Iterator[bytes]:
    """The records of a TFRecord file: uint64 length, its masked CRC, the data, the data's masked CRC.

    A record cut short by a killed write (the file's tail) is dropped.
    """
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        start = offset + 12
        if start + length + 4 > len(data):
            return
        yield data[start:start + length]
        offset = start + length + 4


def read_events(directory: str | pathlib.Path) -> list[Any]:
    """Every event (``tensorboardX.proto.event_pb2.Event``) of the directory's event files, in file-name order."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(pathlib.Path(directory).glob(EVENTS_GLOB)):
        events += [event_pb2.Event.FromString(record) for record in _records(path)]
    return events


def read_scalars(directory: str | pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` in the order written, for every scalar of the directory's event files."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for event in read_events(directory):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
    return scalars


def _new_file(directory: pathlib.Path, name: str | None = None):
    """A `tensorboardX.record_writer.RecordWriter` on a new event file, its first record the file version."""
    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import RecordWriter

    name = name or f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
    writer = RecordWriter(str(directory / name))
    writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    return writer


class EventLog:
    """The run's event writer: earlier events trimmed to ``resume_step``, then new events appended.

    Events are written synchronously by the calling thread (serialise, CRC, buffered write: about 10 µs), not
    through tensorboardX's queue and writer thread, whose locking cost the loop ~70 µs a call on two cores; the file
    is flushed at every epoch's end, where a checkpoint is written anyway.

    Args:
      directory: ``<workdir>/tensorboard``.
      resume_step: the global step of the checkpoint the run resumes from (0 for a new run); earlier events after it
        are dropped.
    """

    def __init__(self, directory: str | pathlib.Path, resume_step: int = 0):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        earlier = sorted(self.directory.glob(EVENTS_GLOB))
        if earlier:
            self._trim(earlier, resume_step)
        self._file = _new_file(self.directory)

    def _trim(self, earlier: list[pathlib.Path], resume_step: int) -> None:
        """Replaces the earlier event files by one holding their events up to ``resume_step``, each step once.

        The trimmed file is written aside, then renamed over the previous trimmed file (its name sorts before any
        writer's, so the history reads first); a kill before the old files are removed leaves duplicates that the
        next resume drops.
        """
        seen, kept = set(), []
        for event in read_events(self.directory):
            key = (event.step, tuple(v.tag for v in event.summary.value))
            if event.HasField("file_version") or event.step > resume_step or key in seen:
                continue
            seen.add(key)
            kept.append(event)
        aside = self.directory / f".{TRIMMED_NAME}.tmp"
        writer = _new_file(self.directory, aside.name)
        for event in kept:
            writer.write(event.SerializeToString())
        writer.flush()
        writer.close()
        target = self.directory / TRIMMED_NAME
        os.replace(aside, target)
        for path in earlier:
            if path != target:
                path.unlink()

    def _write(self, step: int, summary) -> None:
        from tensorboardX.proto import event_pb2

        self._file.write(event_pb2.Event(wall_time=time.time(), step=step, summary=summary).SerializeToString())

    def scalars(self, step: int, values: Mapping[str, Any], prefix: str) -> None:
        """Logs every finite number of ``values`` as ``<prefix>/<name>`` at ``step``, all in one event."""
        from tensorboardX.proto.summary_pb2 import Summary

        kept = [Summary.Value(tag=f"{prefix}/{name}", simple_value=float(value)) for name, value in values.items()
                if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
                and np.isfinite(value)]
        if kept:
            self._write(step, Summary(value=kept))

    def text(self, step: int, tag: str, text: str) -> None:
        """Logs ``text`` (Markdown, as TensorBoard's text plugin shows it) under ``tag``."""
        from tensorboardX.summary import text as text_summary

        self._write(step, text_summary(tag, text))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.flush()
        self._file.close()
