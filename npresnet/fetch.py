"""Download torchvision's ImageNet weights, verify them, and cache them as ``.npz``.

The file names below are torchvision's published ones (from its ``*_Weights`` enums,
copied once as data). The hex after the last ``-`` of a name is a prefix of the file's
SHA-256, torch hub's ``check_hash`` convention, so a download is verified against its
own name.

How a fetch stays safe:

* the download streams into a uniquely named temporary file in the cache directory
  (``.resnet18-f37072fd.<random>.pth``), hashing as it goes, with a socket timeout;
* a short transfer (fewer bytes than ``Content-Length``), a wrong hash, a timeout or a
  failed write raises :class:`~npresnet.errors.FetchError` and the temporary file is deleted;
* a download is at most :data:`MAX_DOWNLOAD_BYTES`: a larger ``Content-Length`` is refused
  before reading, and a transfer that runs past the cap is stopped there;
* only a verified download is converted, and the ``.npz`` is written atomically
  (temporary file + ``os.replace``) by :func:`npresnet.weights.save_weights`, then its own
  SHA-256 beside it (``<name>.npz.sha256``, also atomically);
* a cached ``.npz`` is hashed on every use and reused only if it matches its recorded
  SHA-256; a file that does not (damaged, replaced, or cached without a record) is
  downloaded and converted again, so what ``fetch`` returns is always verified;
* two fetches at once each use their own temporary file; the last ``os.replace`` wins
  and both leave the same verified file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import stat
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ._atomic import atomic_write
from .errors import FetchError
from .limits import MAX_DOWNLOAD_BYTES, MAX_FETCH_TIMEOUT, MIN_DOWNLOAD_RATE

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._typing import PathLike

__all__ = [
    "WEIGHTS",
    "DEFAULT_URL",
    "MAX_TIMEOUT",
    "MAX_DOWNLOAD_BYTES",
    "FetchError",
    "cache_dir",
    "weights_filename",
    "fetch",
]

DEFAULT_URL = "https://download.pytorch.org/models/"

# arch -> {torchvision weights name: published file name}; the first entry is the default.
# IMAGENET1K_V1 weights expect the 256/224 preset; the V2 ones were evaluated with a
# shorter side of 232 (resnet50, 101, 152, resnext50_32x4d, wide_resnet50_2/101_2) or
# 232/224 — pass ``--resize-size 232`` to predict with them.
WEIGHTS = {
    "resnet18": {"IMAGENET1K_V1": "resnet18-f37072fd.pth"},
    "resnet34": {"IMAGENET1K_V1": "resnet34-b627a593.pth"},
    "resnet50": {"IMAGENET1K_V1": "resnet50-0676ba61.pth", "IMAGENET1K_V2": "resnet50-11ad3fa6.pth"},
    "resnet101": {"IMAGENET1K_V1": "resnet101-63fe2227.pth", "IMAGENET1K_V2": "resnet101-cd907fc2.pth"},
    "resnet152": {"IMAGENET1K_V1": "resnet152-394f9c45.pth", "IMAGENET1K_V2": "resnet152-f82ba261.pth"},
    "resnext50_32x4d": {
        "IMAGENET1K_V1": "resnext50_32x4d-7cdf4587.pth",
        "IMAGENET1K_V2": "resnext50_32x4d-1a0047aa.pth",
    },
    "resnext101_32x8d": {
        "IMAGENET1K_V1": "resnext101_32x8d-8ba56ff5.pth",
        "IMAGENET1K_V2": "resnext101_32x8d-110c445d.pth",
    },
    "resnext101_64x4d": {"IMAGENET1K_V1": "resnext101_64x4d-173b62eb.pth"},
    "wide_resnet50_2": {
        "IMAGENET1K_V1": "wide_resnet50_2-95faca4d.pth",
        "IMAGENET1K_V2": "wide_resnet50_2-9ba9bcbe.pth",
    },
    "wide_resnet101_2": {
        "IMAGENET1K_V1": "wide_resnet101_2-32ee1156.pth",
        "IMAGENET1K_V2": "wide_resnet101_2-d733dc28.pth",
    },
}

_CHUNK = 1 << 20
MAX_TIMEOUT = MAX_FETCH_TIMEOUT  # seconds (the name this module has always exported)
_DIGEST_SUFFIX = ".sha256"  # the record of a cached .npz's own SHA-256, "<64 hex digits>\n"


def cache_dir() -> Path:
    """``$NPRESNET_HOME`` if set, else the platform's user cache directory for npresnet."""
    home = os.environ.get("NPRESNET_HOME")
    if home:
        return Path(home).expanduser()
    try:
        import platformdirs
    except ImportError:
        raise ImportError(
            'the default cache directory needs platformdirs: pip install "npresnet[tools]" '
            "(or set NPRESNET_HOME, or choose a directory: --dest DIR on the command line, "
            "dest=DIR in Python)"
        ) from None
    return Path(platformdirs.user_cache_dir("npresnet"))


def weights_filename(arch: str, variant: str | None = None) -> str:
    """Return torchvision's published file name for ``arch`` (``resnet18-f37072fd.pth``); ValueError if none."""
    if arch not in WEIGHTS:
        import difflib

        close = difflib.get_close_matches(str(arch).lower(), WEIGHTS, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"no published weights for {arch!r}{hint} (known: {', '.join(WEIGHTS)})")
    variants = WEIGHTS[arch]
    if variant is None:
        variant = next(iter(variants))
    if variant not in variants:
        raise ValueError(f"{arch} has no weights {variant!r}; choose one of {', '.join(variants)}")
    return variants[variant]


def _hash_prefix(filename: str) -> str:
    """Return the SHA-256 prefix in a published name: ``resnet18-f37072fd.pth`` → ``f37072fd``."""
    return filename.rsplit(".", 1)[0].rsplit("-", 1)[1]


def _sha256_of(path: Path) -> str | None:
    """SHA-256 hex digest of the regular file ``path``; None if it is missing or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a directory with its own error
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as file:
        sha = hashlib.sha256()
        while chunk := file.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _recorded_digest(path: Path) -> str | None:
    """Return the digest in the record ``path`` (a regular file of at most 65 bytes), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as file:
        text = file.read(66)  # 64 hex digits and a newline; more is not a record
    digest = text.strip().decode("ascii", "replace")
    return digest if len(text) <= 65 and len(digest) == 64 else None


def _is_verified(target: Path) -> bool:
    """Whether the cached ``target`` matches the SHA-256 recorded beside it when it was converted."""
    recorded = _recorded_digest(target.with_name(target.name + _DIGEST_SUFFIX))
    return recorded is not None and _sha256_of(target) == recorded


def fetch(
    arch: str,
    *,
    variant: str | None = None,
    dest: PathLike | None = None,
    base_url: str | None = None,
    timeout: float = 30.0,
    progress: Callable[[int, int | None], object] | None = None,
) -> Path:
    """Return the path of verified ``.npz`` weights for ``arch``, downloading them if not cached.

    Parameters
    ----------
    arch : str
        A key of :data:`WEIGHTS`.
    variant : str, optional
        ``"IMAGENET1K_V1"`` (default) or ``"IMAGENET1K_V2"`` where published.
    dest : path, optional
        Directory for the cache; default :func:`cache_dir`.
    base_url : str, optional
        Where the ``.pth`` files live; default ``$NPRESNET_WEIGHTS_URL`` or :data:`DEFAULT_URL`.
        A cached file is hashed and compared with the digest recorded when it was written;
        it is downloaded again unless they match.
    timeout : float
        Seconds to wait for the connection and for each read; above 0 and at most 3600.
    progress : callable, optional
        Called as ``progress(bytes_done, bytes_total_or_None)`` while downloading.

    Returns
    -------
    pathlib.Path
        ``dest / "<name>-<hash>.npz"``.

    Raises
    ------
    FetchError
        The download failed or did not verify; no file is left under the final name.
    ValueError
        Unknown architecture or variant, or a timeout out of range.
    TypeError
        ``base_url`` is not a str.
    """
    from .weights import load_weights, save_weights

    if base_url is not None and not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str (an http or https URL), got {type(base_url).__name__} {base_url!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be seconds above 0 and at most {MAX_TIMEOUT:g}, got {timeout!r}")
    filename = weights_filename(arch, variant)
    stem = filename.rsplit(".", 1)[0]
    directory = Path(dest).expanduser() if dest is not None else cache_dir()
    target = directory / f"{stem}.npz"
    if _is_verified(target):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    base = base_url or os.environ.get("NPRESNET_WEIGHTS_URL") or DEFAULT_URL
    url = base.rstrip("/") + "/" + filename

    fd, partial = tempfile.mkstemp(prefix=f".{stem}.", suffix=".pth", dir=directory)
    try:
        try:
            digest = _download(url, fd, timeout, progress)
        finally:
            os.close(fd)
        expected = _hash_prefix(filename)
        if not digest.startswith(expected):
            raise FetchError(
                f"{url}: SHA-256 {digest} does not start with {expected} as its name says; "
                "the server sent the wrong bytes (nothing was cached)"
            )
        save_weights(load_weights(partial), target)
        with atomic_write(target.with_name(target.name + _DIGEST_SUFFIX)) as record:
            record.write(f"{_sha256_of(target)}\n".encode("ascii"))
    finally:
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass
    return target


def _download(url: str, fd: int, timeout: float, progress: Callable[[int, int | None], object] | None) -> str:
    """Stream ``url`` into the open file ``fd``; return the SHA-256 hex digest of what was written."""
    sha = hashlib.sha256()
    done = 0
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            read = getattr(response, "read1", response.read)  # what has arrived, so the rate can be checked
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                raise FetchError(
                    f"{url}: the server announces {total:,} bytes, more than the limit of {MAX_DOWNLOAD_BYTES:,}"
                )
            if progress is not None:
                progress(0, total)
            while True:
                chunk = read(min(_CHUNK, MAX_DOWNLOAD_BYTES + 1 - done))
                if not chunk:
                    break
                elapsed = time.monotonic() - start
                if elapsed > timeout and done + len(chunk) < MIN_DOWNLOAD_RATE * elapsed:
                    # each read is bounded by the timeout, but a server sending a byte a second never hits it
                    raise FetchError(
                        f"{url}: {done + len(chunk):,} bytes in {elapsed:.0f} s, slower than the "
                        f"{MIN_DOWNLOAD_RATE:,} bytes/s a download must keep after its first {timeout:g} s"
                    )
                if done + len(chunk) > MAX_DOWNLOAD_BYTES:
                    raise FetchError(f"{url}: the download runs past the limit of {MAX_DOWNLOAD_BYTES:,} bytes")
                sha.update(chunk)
                view = memoryview(chunk)
                while view:  # os.write may write less than asked
                    view = view[os.write(fd, view) :]
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except FetchError:
        raise
    except urllib.error.HTTPError as err:
        raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise FetchError(f"{url}: {err.reason}") from None
    except TimeoutError:
        raise FetchError(f"{url}: timed out after {timeout} s without data") from None
    except OSError as err:  # connection reset, short read (http.client.IncompleteRead), disk full, ...
        raise FetchError(f"{url}: download failed after {done:,} bytes: {err}") from None
    except http.client.HTTPException as err:  # IncompleteRead, a malformed response
        raise FetchError(f"{url}: transfer failed after {done:,} bytes: {type(err).__name__}") from None
    if total is not None and done != total:
        raise FetchError(f"{url}: transfer cut short: got {done:,} of {total:,} bytes")
    os.fsync(fd)
    return sha.hexdigest()
