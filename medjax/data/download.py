"""Cached, MD5-verified downloads that fail fast without a network.

A file is fetched into ``<name>.part`` beside its final path and renamed only after its MD5 matches, so the cache
never holds a truncated or corrupt file under the name a loader looks for.

Example:
  >>> path = fetch("https://zenodo.org/records/10519652/files/breastmnist.npz?download=1",
  ...              cache_dir() / "medmnist" / "breastmnist.npz", md5="750601b1f35ba3300ea97c75c52ff8f6")
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import urllib.error
import urllib.request

from tqdm.auto import tqdm

from medjax.errors import UserError

# Seconds to wait for the server to answer (and for each read): long enough for a slow link, short enough that a
# machine with no network stops at once instead of hanging.
CONNECT_TIMEOUT_S = 10.0
CHUNK_BYTES = 1 << 20


class DownloadError(UserError, ConnectionError):
    """A file could not be fetched (no network, HTTP error) or arrived with the wrong MD5."""


def cache_dir() -> pathlib.Path:
    """The download cache: ``$MEDJAX_CACHE_DIR`` if set, else ``~/.cache/medjax``."""
    return pathlib.Path(os.environ.get("MEDJAX_CACHE_DIR") or pathlib.Path.home() / ".cache" / "medjax")


def file_md5(path: str | os.PathLike) -> str:
    """The hex MD5 of a file, read in 1 MiB chunks so multi-GB files never sit in memory."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_url(url: str, timeout: float):
    """Opens ``url`` for reading; the one place that touches the network (tests replace it)."""
    request = urllib.request.Request(url, headers={"User-Agent": "medjax"})
    return urllib.request.urlopen(request, timeout=timeout)


def fetch(url: str, path: str | os.PathLike, md5: str, *, hint: str = "", progress: bool = True,
          timeout: float = CONNECT_TIMEOUT_S) -> pathlib.Path:
    """Downloads ``url`` to ``path`` unless it is already there, and checks its MD5.

    Args:
      url: where to fetch the file from.
      path: the final location of the file; its folder is created.
      md5: the expected hex MD5 of the file.
      hint: appended to every error message, e.g. how to point the program at a local copy instead.
      progress: show a tqdm progress bar.
      timeout: seconds to wait for the server to answer and for each read.

    Returns:
      ``path``, holding a file whose MD5 is ``md5``.

    Raises:
      DownloadError: the server could not be reached or answered with an error (the message says which and ends with
        ``hint``), or the downloaded bytes have another MD5 (the file is deleted and the message says so).
    """
    path = pathlib.Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    suffix = f" {hint}" if hint else ""
    try:
        response = open_url(url, timeout)
    except urllib.error.HTTPError as err:
        raise DownloadError(None, f"downloading {url} failed: HTTP {err.code} {err.reason}.{suffix}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(None, f"could not download {url} ({reason}): is there no network?{suffix}") from err
    try:
        with response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise DownloadError(None, f"the download of {url} broke off ({err}).{suffix}") from err
    actual = file_md5(partial)
    if actual != md5:
        partial.unlink()
        raise DownloadError(None,
            f"{path.name} downloaded from {url} has MD5 {actual}, expected {md5}; the file was deleted. "
            f"Try again, or download it yourself.{suffix}")
    partial.replace(path)
    return path
