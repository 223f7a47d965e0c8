"""Checks shared by the weight-file readers: zip archives, sizes, dtypes and the final mapping.

Every reader trusts nothing in the file. Sizes are checked against the bytes that
are actually there *before* anything is allocated, so that a small file cannot
make us reserve gigabytes, and every failure becomes :class:`WeightsError` with a
message that says what is wrong.
"""
from __future__ import annotations

import math
import struct
import zipfile
import zlib
from typing import BinaryIO

import numpy

from ..errors import WeightsError

# Deflate cannot expand data by more than about 1032:1 (zlib's documented limit),
# so a member that claims more is lying about its size or is a zip bomb.
MAX_DEFLATE_RATIO = 1032

# Exceptions that zipfile and zlib raise for damaged archives. OSError appears when a
# corrupt directory sends a seek outside the file; the file itself opened fine.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
              ValueError, OverflowError, struct.error, NotImplementedError, KeyError,
              IndexError, UnicodeDecodeError)

# NumPy kinds a weight can have: bool, signed and unsigned integers, floats, complex.
NUMERIC_KINDS = "biufc"


def open_zip(file: BinaryIO, file_size: int) -> zipfile.ZipFile:
    """Open a zip archive and check its directory before any member is read.

    Refused: member names that repeat, encrypted members, compression other than
    stored/deflate, and sizes that the archive's bytes cannot back (members whose
    compressed sizes add up to more than the file, or that would expand beyond
    deflate's maximum ratio).
    """
    try:
        archive = zipfile.ZipFile(file)
        infos = archive.infolist()
    except ZIP_ERRORS as exc:
        raise WeightsError(f"not a readable zip archive (truncated or corrupt): {exc}") from exc
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise WeightsError(f"zip archive has duplicate members {repeated[:5]}")
    total_compressed = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise WeightsError(f"zip member {info.filename!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            limit = info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            limit = info.compress_size * MAX_DEFLATE_RATIO + 1024
        else:
            raise WeightsError(
                f"zip member {info.filename!r} uses compression method {info.compress_type}; "
                "only stored and deflate are read")
        if info.file_size > limit:
            raise WeightsError(
                f"zip member {info.filename!r} claims {info.file_size} bytes but its "
                f"{info.compress_size} stored bytes cannot hold that")
        total_compressed += info.compress_size
    if total_compressed > file_size:
        raise WeightsError(
            f"zip members claim {total_compressed} bytes in a {file_size}-byte file "
            "(overlapping or corrupt directory)")
    return archive


def read_member(archive: zipfile.ZipFile, name: str, expected_size: int | None = None) -> bytes:
    """Return the bytes of member ``name``, checking its size (when given) before reading.

    zipfile verifies the CRC-32 as it reads, which catches most corruption of the data.
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise WeightsError(f"zip member {name!r} is missing") from None
    if expected_size is not None and info.file_size != expected_size:
        raise WeightsError(
            f"zip member {name!r} holds {info.file_size} bytes, "
            f"but {expected_size} are needed")
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except ZIP_ERRORS as exc:
        raise WeightsError(f"zip member {name!r} cannot be read (corrupt): {exc}") from exc
    if len(data) != info.file_size:
        raise WeightsError(
            f"zip member {name!r} holds {len(data)} bytes, its directory says {info.file_size}")
    return data


def element_count(shape, what: str) -> int:
    """Number of elements of ``shape`` (a sequence of ints >= 0), or WeightsError."""
    if not isinstance(shape, (tuple, list)):
        raise WeightsError(f"{what}: shape must be a sequence of integers, got {shape!r:.80}")
    if len(shape) > 32:
        raise WeightsError(f"{what}: shape has {len(shape)} dimensions, more than the 32 npresnet accepts")
    for n in shape:
        if type(n) is not int or n < 0:
            raise WeightsError(f"{what}: shape {tuple(shape)!r:.120} has an entry that is not an integer >= 0")
    return math.prod(shape)


def check_weight_dtype(dtype: numpy.dtype, what: str) -> None:
    """Refuse dtypes that are not plain numbers: objects (pickles), strings, records, voids."""
    if dtype.hasobject:
        raise WeightsError(f"{what}: object array (it would need pickle); weights are numbers")
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WeightsError(f"{what}: dtype {dtype} is not a numeric weight dtype")


def check_bool_values(array: numpy.ndarray, what: str) -> None:
    """A bool array read from raw bytes must hold only 0 and 1, or it would be a silent garbage value."""
    if array.dtype == numpy.bool_ and array.size and array.view(numpy.uint8).max() > 1:
        raise WeightsError(f"{what}: bool data holds bytes other than 0 and 1")


def native(array: numpy.ndarray) -> numpy.ndarray:
    """``array`` as a C-contiguous, writable array in native byte order that owns its memory."""
    return numpy.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True)


def bfloat16_to_float32(raw: numpy.ndarray) -> numpy.ndarray:
    """Widen bfloat16 values (given as their uint16 bit patterns) to float32, exactly.

    bfloat16 is the upper half of a float32 (same sign and exponent, 7 of the 23
    mantissa bits), so shifting the bits left by 16 gives the identical value.
    """
    return (raw.astype(numpy.uint32) << 16).view(numpy.float32)
