"""Opening the user's files: a missing path or bytes that are not UTF-8 become one-line errors naming file and line.

Also the one safe way to write a file into a folder the user gave (`replace_atomically`): a fresh temporary file
beside it, then a rename over the target, so that a kill leaves the old file or the new one and a symlink planted at
the target (or at a predictable temporary name) is replaced, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import sys
import tempfile

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
        line, column = _decode_error(data, err)
        raise DataError(where(path, line), f"expected UTF-8 text, got byte 0x{data[err.start]:02x} at column "
                                           f"{column}") from None


def _decode_error(data: bytes, err: UnicodeDecodeError) -> tuple[int, int]:
    """(line, column), both from 1, of the first byte that is not UTF-8."""
    line = data.count(b"\n", 0, err.start) + 1
    return line, err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1


def read_stdin_lines(what: str = "text") -> list[str]:
    """The lines of standard input, read as UTF-8 (a leading byte-order mark dropped), line ends removed.

    Args:
      what: what the lines are, for the message (``"sentences to translate"``).

    Raises:
      DataError: bytes that are not UTF-8, naming the first one's value, offset and line.
    """
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream put in place of stdin (tests, notebooks): already decoded
        return sys.stdin.read().splitlines()
    data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line, _ = _decode_error(data, err)
        raise DataError("stdin", f"expected {what} as UTF-8 text, got byte 0x{data[err.start]:02x} at offset "
                                 f"{err.start} (line {line})") from None
    return text.splitlines()


def replace_atomically(path: str | os.PathLike, contents: str | bytes, mode: int = 0o644) -> pathlib.Path:
    """Writes ``contents`` to ``path`` through a new temporary file in the same folder and `os.replace`.

    The temporary file is created exclusively (``O_EXCL``, a random name), so nothing already at a predictable
    name, a symlink included, is opened; the rename then replaces whatever is at ``path`` (a symlink there is replaced
    by the file, its target left untouched). A kill leaves the old file or the new one, never half of it.

    Returns:
      ``path`` as a Path.
    """
    path = pathlib.Path(path)
    data = contents.encode("utf-8") if isinstance(contents, str) else bytes(contents)
    # Named as the caller gave them (a user's --output), not by the temporary file's name.
    if path.is_dir() and not path.is_symlink():  # a symlink there is replaced, as below
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not path.parent.is_dir():
        raise MissingPath(path.parent, f"expected a folder to write {path.name} into, found nothing")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path
