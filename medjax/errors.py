"""The user's mistakes, told apart from bugs.

A `UserError` is something the person running medjax can fix: a path, a damaged file, a malformed line, a bad option
value. The command line prints it as one line, ``medjax: error: <file>:<line>: <what was expected>, <what came>``,
and exits with status 2; anything else is a bug and keeps its traceback. Library callers can catch the concrete
classes, which are also the built-in exceptions they would expect (`DataError` is a ValueError, `MissingPath` a
FileNotFoundError).

Example:
  >>> raise DataError(where("train.tsv", 17), "expected 2 tab-separated columns, got 3")
  DataError: train.tsv:17: expected 2 tab-separated columns, got 3
"""

from __future__ import annotations

import os


class UserError(Exception):
    """A mistake in what the user gave medjax; its message is the whole story, one line."""

    def __init__(self, place: str | os.PathLike | None, message: str):
        self.place = None if place is None else str(place)
        super().__init__(message if self.place is None else f"{self.place}: {message}")


class DataError(UserError, ValueError):
    """A data file that cannot be read as the task expects (corrupt, truncated, malformed, wrong values)."""


class MissingPath(UserError, FileNotFoundError):
    """A file or folder the user named (or that a data set must contain) does not exist."""


class ConfigError(UserError, ValueError):
    """An option value outside what it accepts (``--batch-size 0``, an unknown model name, a bad TOML file)."""


def where(path: str | os.PathLike, line: int | None = None) -> str:
    """``"path:line"`` (or just the path): the place a message starts with, as compilers and linters write it."""
    return f"{path}:{line}" if line is not None else str(path)
