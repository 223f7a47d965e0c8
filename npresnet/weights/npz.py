r"""Read and write ``.npz`` state dicts: a zip of ``.npy`` arrays, one per weight.

Layout: member ``<name>.npy`` holds weight ``<name>``; each ``.npy`` is the magic
``\x93NUMPY``, a format version, a small header (a Python dict literal giving
``descr`` (dtype), ``fortran_order`` and ``shape``) and then the raw elements.

Reading never unpickles (``allow_pickle=False``; object arrays are refused) and
checks each header's shape against the bytes the member really holds before
NumPy allocates the array. Writing stores members uncompressed, like
``numpy.savez``, but builds the archive directly so that a weight named ``file``
or ``allow_pickle`` cannot collide with ``numpy.savez``'s keyword arguments.
"""

from __future__ import annotations

import tokenize
import zipfile
from collections.abc import Mapping
from typing import IO, Any, BinaryIO

import numpy
from numpy.lib import format as npy_format

from ..errors import WeightsError
from ._checks import (
    ZIP_ERRORS,
    check_bool_values,
    check_weight_dtype,
    element_count,
    native,
    open_zip,
)

__all__ = ["read_npz", "write_npz"]

NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER_SIZE = 10_000  # NumPy's own default limit for a .npy header


def _read_header(member: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, numpy.dtype[Any]]:
    """Parse one ``.npy`` header: (shape, fortran_order, dtype)."""
    try:
        version = npy_format.read_magic(member)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(member, max_header_size=MAX_HEADER_SIZE)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(member, max_header_size=MAX_HEADER_SIZE)
    except ZIP_ERRORS + (SyntaxError, TypeError, tokenize.TokenError, RecursionError) as exc:
        # NumPy parses the header's dict with tokenize and ast.literal_eval: unbalanced brackets
        # raise TokenError, deep nesting RecursionError
        raise WeightsError(f"member {name!r} is not a valid .npy array: {exc}") from exc
    raise WeightsError(f"member {name!r} uses .npy format version {version}; 1.0 and 2.0 are read")


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> numpy.ndarray:
    name = info.filename
    try:
        with archive.open(info) as member:
            shape, fortran_order, dtype = _read_header(member, name)
            header_size = member.tell()
    except ZIP_ERRORS as exc:
        raise WeightsError(f"member {name!r} cannot be read (corrupt): {exc}") from exc
    check_weight_dtype(dtype, f"member {name!r}")
    numel = element_count(shape, f"member {name!r}")
    needed = header_size + numel * dtype.itemsize
    if info.file_size != needed:
        raise WeightsError(
            f"member {name!r} declares shape {shape} of {dtype} ({numel * dtype.itemsize} bytes) "
            f"but holds {info.file_size - header_size} bytes of data"
        )
    try:
        with archive.open(info) as member:
            array = npy_format.read_array(member, allow_pickle=False, max_header_size=MAX_HEADER_SIZE)
    except ZIP_ERRORS as exc:
        raise WeightsError(f"member {name!r} cannot be read (corrupt or truncated): {exc}") from exc
    check_bool_values(array, f"member {name!r}")
    return native(array)


def read_npz(file: BinaryIO, file_size: int) -> dict[str, numpy.ndarray]:
    """Read every ``<name>.npy`` member of an ``.npz`` archive.

    Returns
    -------
    dict of str to numpy.ndarray
        ``name`` -> fresh, C-contiguous, native-byte-order array, in archive order.
    """
    archive = open_zip(file, file_size)
    if not archive.infolist():
        raise WeightsError("the .npz archive holds no arrays (empty, or its directory is corrupt)")
    state_dict = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise WeightsError(f"npz member {info.filename!r} is not a .npy array")
        state_dict[info.filename[: -len(".npy")]] = _read_array(archive, info)
    return state_dict


def write_npz(state_dict: Mapping[str, numpy.ndarray], file: BinaryIO) -> None:
    """Write NumPy arrays as an uncompressed ``.npz`` to a seekable binary file."""
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in state_dict.items():
            with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                npy_format.write_array(member, array, allow_pickle=False)
