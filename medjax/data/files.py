"""Opening the user's files: a missing path or bytes that are not UTF-8 become one-line errors naming file and line."""

from __future__ import annotations

import os
import pathlib

from medjax.errors import DataError, MissingPath, where


def existing(path: str | os.PathLike, what: str = "file", folder: bool = False) -> pathlib.Path:
    """``path`` as a Path if it exists (as a folder when ``folder``), else a `MissingPath` saying what was expected."""
    path = pathlib.Path(path)
    if folder and not path.is_dir() or not folder and not path.is_file():
        found = "a folder" if path.is_dir() else "a file" if path.exists() else "nothing"
        raise MissingPath(path, f"expected {what}, found {found}")
    return path


def read_text(path: str | os.PathLike, what: str = "a text file") -> str:
    """The contents of a UTF-8 file (a leading byte-order mark dropped).

    Raises:
      MissingPath: no such file.
      DataError: bytes that are not UTF-8, naming the line and column of the first.
    """
    path = existing(path, what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(where(path, line), f"expected UTF-8 text, got byte 0x{data[err.start]:02x} at column "
                                           f"{column}") from None
