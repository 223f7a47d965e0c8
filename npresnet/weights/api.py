r"""``load_weights`` and ``save_weights``: one entry point for every weight format.

The format is recognised from the file's first bytes, not its name, so a
``.pth`` that is really an ``.npz`` still loads; the suffix only sharpens the
message when the content is nothing we read.

=================  =====================================  ==============  ===========
format             recognised by                          read            written
=================  =====================================  ==============  ===========
PyTorch ``.pth``   zip (``PK\x03\x04``) with ``*/data.pkl``  yes, no torch   no
``.npz``           zip of ``*.npy`` members               yes             yes
``.safetensors``   8-byte length, then ``{``              yes             yes
=================  =====================================  ==============  ===========

Errors: every problem with a file's *content* raises
:class:`~npresnet.errors.WeightsError` (a ``ValueError``) saying what is wrong.
Problems reaching the file (missing, a directory, no permission) stay the usual
``OSError`` subclasses such as ``FileNotFoundError``, as for ``open``.

Only regular files are read. A path is opened without blocking (``O_NONBLOCK``, so a
FIFO with no writer cannot hang the call) and checked with ``fstat`` before a byte
is read; a FIFO, socket or device is refused with :class:`WeightsError`. Exactly
the size ``fstat`` reported is read, never "until the end".
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy

from .._atomic import atomic_write
from ..backend import to_numpy
from ..errors import WeightsError
from ._checks import check_weight_dtype, describe, open_zip
from .limits import MAX_SAFETENSORS_HEADER_BYTES, MAX_TENSOR_BYTES
from .npz import read_npz, write_npz
from .pth import LEGACY_MAGIC, read_pth
from .safetensors_io import read_safetensors, write_safetensors

__all__ = ["load_weights", "save_weights", "detect_format"]

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
SUFFIXES = {".pth": "pth", ".pt": "pth", ".npz": "npz", ".safetensors": "safetensors"}


def _looks_like_legacy_torch(head: bytes) -> bool:
    """Return True for a pre-1.6 ``torch.save`` file: a protocol-2 pickle of LEGACY_MAGIC first."""
    magic = LEGACY_MAGIC.to_bytes(10, "little")
    return head.startswith(b"\x80\x02\x8a\x0a" + magic)


@contextlib.contextmanager
def _open_regular_file(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``path`` for reading, refusing anything but a regular file; yields ``(file, size)``.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a writer;
    ``fstat`` on the open descriptor (not the path, which could be swapped) then decides.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise WeightsError(
                f"{path} is not a regular file (a FIFO, socket or device); weights are read from regular files only"
            )
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file, os.fstat(file.fileno()).st_size


def _read_exactly(file: BinaryIO, count: int) -> bytes:
    """``count`` bytes from ``file``, or WeightsError if it holds fewer (it shrank while being read)."""
    data = bytes(file.read(count))
    if len(data) != count:
        raise WeightsError(f"file holds {len(data)} bytes where {count} were expected (changed while being read?)")
    return data


def _detect(file: BinaryIO, size: int, path: Path) -> str:
    """Return the format of an open regular file, from its first bytes (and zip member names)."""
    head = file.read(16)
    if head.startswith(ZIP_MAGICS):
        file.seek(0)
        try:
            names = open_zip(file, size).namelist()
        except WeightsError as exc:
            raise WeightsError(f"{path}: {exc}") from exc
        if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names):
            return "pth"
        if all(n.endswith(".npy") for n in names):
            return "npz"
        raise WeightsError(
            f"{path}: a zip archive that is neither a PyTorch checkpoint (no '<archive>/data.pkl') "
            f"nor an .npz (members [{', '.join(describe(n) for n in names[:3])}] are not all .npy)"
        )
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if _looks_like_legacy_torch(head):
        raise WeightsError(
            f"{path}: a PyTorch checkpoint in the legacy (pre-1.6, non-zip) format, which npresnet "
            "does not read; re-save it with PyTorch: "
            "torch.save(torch.load(path, weights_only=True), 'new.pth')"
        )
    if head.startswith(b"\x93NUMPY"):
        raise WeightsError(f"{path}: a single .npy array, not a state dict; save the weights as .npz")
    expected = SUFFIXES.get(path.suffix.lower())
    what = f"is not a {path.suffix} file as its name says" if expected else "is not a weight file"
    raise WeightsError(
        f"{path} {what}: its first bytes {head[:8]!r} match none of .pth (zip), .npz (zip), .safetensors"
    )


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return ``"pth"``, ``"npz"`` or ``"safetensors"`` from the file's content.

    Raises
    ------
    WeightsError
        When the content is none of them (the message names what it looks like), or
        ``path`` is not a regular file.
    """
    path = Path(path)
    with _open_regular_file(path) as (file, size):
        return _detect(file, size, path)


def _read_safetensors_file(file: BinaryIO, size: int) -> dict[str, numpy.ndarray]:
    """Check the header's claimed length against the limit before reading the whole file."""
    if size < 8:
        raise WeightsError(f"file is {size} bytes, too short for a safetensors header")
    if size > 8 + MAX_SAFETENSORS_HEADER_BYTES + MAX_TENSOR_BYTES:
        raise WeightsError(
            f"file is {size:,} bytes, more than a header and the {MAX_TENSOR_BYTES:,} bytes of tensor data "
            "npresnet reads from one file"
        )
    (header_size,) = struct.unpack("<Q", _read_exactly(file, 8))
    if header_size > MAX_SAFETENSORS_HEADER_BYTES:
        raise WeightsError(
            f"safetensors header claims {header_size} bytes, more than the "
            f"{MAX_SAFETENSORS_HEADER_BYTES} npresnet reads"
        )
    file.seek(0)
    return read_safetensors(_read_exactly(file, size))


def load_weights(path: str | os.PathLike[str]) -> dict[str, numpy.ndarray]:
    """Read a state dict (name -> array) from a ``.pth``, ``.npz`` or ``.safetensors`` file.

    PyTorch is not needed and nothing in the file is executed: ``.pth`` pickles go
    through a restricted unpickler (see ``npresnet.weights.pth``), ``.npz`` is
    read with pickling disabled, and every size a file claims is checked against
    its bytes, and against the limits in ``npresnet.weights.limits``, before
    memory is allocated.

    Parameters
    ----------
    path : str or os.PathLike
        A regular file. Its format is detected from the content.

    Returns
    -------
    dict of str to numpy.ndarray
        Keys in file order; values are fresh C-contiguous NumPy arrays in native
        byte order with the file's dtypes (``num_batches_tracked`` stays int64),
        except bfloat16, which is widened exactly to float32.

    Raises
    ------
    WeightsError
        If the content is malformed, unsafe, or not a flat state dict, or the path
        is a FIFO, socket or device.
    FileNotFoundError, IsADirectoryError, PermissionError
        If the file cannot be opened.
    """
    path = Path(path)
    with _open_regular_file(path) as (file, size):
        kind = _detect(file, size, path)
        file.seek(0)
        try:
            if kind == "pth":
                return read_pth(file, size)
            if kind == "npz":
                return read_npz(file, size)
            return _read_safetensors_file(file, size)
        except WeightsError as exc:
            raise WeightsError(f"{path}: {exc}") from exc


_ZIP_NAME_BYTES = 65_535  # a zip member's name is at most this many bytes (a 16-bit field)


def _check_key(name: object, suffix: str) -> None:
    """Refuse a key the file could not hold as it is: an ``.npz`` stores ``<key>.npy`` as a zip member *path*.

    Control characters (NUL would cut the member's name) are refused for both formats; for ``.npz``,
    also ``/`` and the backslash (``../../x`` would be a path out of the folder of whoever unzips the file)
    and names over the zip format's 65,535 bytes.
    """
    if not isinstance(name, str) or not name:
        raise WeightsError(f"state_dict keys must be non-empty strings, got {name!r:.80}")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise WeightsError(
            f"state_dict key {name!r:.80} holds a control character or a lone surrogate; keys are names "
            "such as 'fc.weight'"
        )
    if suffix == ".npz":
        if "/" in name or "\\" in name:
            raise WeightsError(
                f"state_dict key {name!r:.80} holds a path separator, which an .npz would store as a folder "
                "(its members are paths); save it as .safetensors, or rename the key"
            )
        if len(name.encode("utf-8", "surrogatepass")) + len(".npy") > _ZIP_NAME_BYTES:
            raise WeightsError(
                f"state_dict key {name[:40]!r}... is {len(name):,} characters long; an .npz member name holds "
                f"at most {_ZIP_NAME_BYTES:,} bytes"
            )


def _as_numpy_state_dict(state_dict: Mapping[str, Any], suffix: str = "") -> dict[str, numpy.ndarray]:
    """Validate a state dict for saving as ``suffix`` and bring every value to NumPy (from CuPy if needed)."""
    if not isinstance(state_dict, Mapping):
        raise WeightsError(f"state_dict must be a mapping of name -> array, got {type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        _check_key(name, suffix)
        array = to_numpy(value)
        check_weight_dtype(array.dtype, f"state_dict[{name!r}]")
        arrays[name] = array
    if not arrays:
        raise WeightsError("state_dict is empty; there is nothing to save")
    return arrays


def save_weights(state_dict: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a state dict to ``.npz`` or ``.safetensors``, chosen by the suffix of ``path``.

    The file is written atomically: to a temporary file in the same directory,
    synced, then renamed over ``path``. An existing file is replaced only once
    the new one is complete.

    Parameters
    ----------
    state_dict : mapping of str to array
        NumPy or CuPy arrays (CuPy ones are copied to the host) of numeric dtype.
    path : str or os.PathLike
        Destination ending in ``.npz`` or ``.safetensors``.

    Raises
    ------
    WeightsError
        For another suffix, a key the format cannot hold (not a non-empty string, a control
        character, a path separator or over 65,535 bytes in an .npz), or a dtype it cannot store.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    arrays = _as_numpy_state_dict(state_dict, suffix)
    if suffix == ".npz":
        with atomic_write(path) as file:
            write_npz(arrays, file)
    elif suffix == ".safetensors":
        payload = write_safetensors(arrays)
        with atomic_write(path) as file:
            file.write(payload)
    else:
        raise WeightsError(
            f"save_weights writes .npz or .safetensors, not {path.suffix or 'a file without suffix'!r} "
            f"({path}); npresnet never writes pickles"
        )
