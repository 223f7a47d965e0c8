"""Checks shared by the weight-file readers: zip archives, sizes, dtypes and the final mapping.

Every reader trusts nothing in the file. Sizes are checked against the bytes that
are actually there *before* anything is allocated, so that a small file cannot
make us reserve gigabytes, and every failure becomes :class:`WeightsError` with a
message that says what is wrong.
"""

from __future__ import annotations

import collections
import math
import struct
import zipfile
import zlib
from typing import Any, BinaryIO

import numpy

from ..errors import WeightsError
from .limits import MAX_DIMENSIONS, MAX_TENSOR_BYTES, MAX_ZIP_DIRECTORY_BYTES, MAX_ZIP_MEMBERS

# Deflate cannot expand data by more than about 1032:1 (zlib's documented limit),
# so a member that claims more is lying about its size or is a zip bomb.
MAX_DEFLATE_RATIO = 1032

# Exceptions that zipfile and zlib raise for damaged archives. OSError appears when a
# corrupt directory sends a seek outside the file; the file itself opened fine.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    OverflowError,
    struct.error,
    NotImplementedError,
    KeyError,
    IndexError,
    UnicodeDecodeError,
)

# NumPy kinds a weight can have: bool, signed and unsigned integers, floats, complex.
NUMERIC_KINDS = "biufc"


def describe(value: object) -> str:
    """Return a short, safe description of an untrusted object, for error messages.

    Never calls the object's ``repr``/``str`` (a deeply nested or exponentially shared
    tuple, or a 5,000-digit integer, would make that the attack): strings and bytes are
    cut *before* ``repr``, integers are shown only up to 64 bits, containers by type and
    length. The result is at most about 100 characters, computed in constant time.
    """
    kind = type(value)
    if type(value) is str or type(value) is bytes:
        text = repr(value[:60])
        return text if len(value) <= 60 else f"{text}... ({len(value)} characters)"
    if type(value) is int:
        return str(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if kind is bool or kind is float or value is None:
        return repr(value)
    if isinstance(value, (tuple, list, dict)):  # len() is O(1) and looks at no element
        return f"a {kind.__name__} of {len(value)} items"
    return f"a {kind.__name__}"


def describe_ints(values: object) -> str:
    """``(2, 3, 4)`` for a short tuple of plain ints, else :func:`describe` (bounded, safe)."""
    if type(values) is tuple and len(values) <= 8 and all(type(n) is int and n.bit_length() <= 64 for n in values):
        return repr(values)
    return describe(values)


# What zipfile reads besides the central directory while it opens an archive: the end record
# with its comment (at most 22 + 65,535 bytes), read up to twice, and the zip64 end records.
_ZIP_END_RECORDS_BYTES = 2 * (22 + 65_535) + 20 + 56


class _ReadBudget:
    """``file`` with a cap on the bytes all ``read`` calls may return together, while ``limit`` is set.

    ``zipfile.ZipFile`` reads the end records and then the whole central directory, and parses
    every entry before it returns; reading through this refuses an oversized directory before
    a single entry is parsed, whatever sizes the end records claim.
    """

    def __init__(self, file: BinaryIO, file_size: int, limit: int):
        self._file, self._file_size, self._used = file, file_size, 0
        self.limit: int | None = limit

    def read(self, n: int = -1) -> bytes:
        if self.limit is not None:
            available = max(0, self._file_size - self._file.tell())
            wanted = available if n is None or n < 0 else min(n, available)
            if self._used + wanted > self.limit:
                raise WeightsError(
                    f"zip archive's directory is larger than the {MAX_ZIP_DIRECTORY_BYTES:,} bytes npresnet reads"
                )
            self._used += wanted
        return self._file.read(n)

    def __getattr__(self, name: str) -> Any:  # seek, tell, seekable, ...: the file's own
        return getattr(self._file, name)


def open_zip(file: BinaryIO, file_size: int, stored_only: bool = False) -> zipfile.ZipFile:
    """Open a zip archive and check its directory before any member is read.

    Refused: a central directory over :data:`~npresnet.weights.limits.MAX_ZIP_DIRECTORY_BYTES`
    (before ``zipfile`` parses an entry of it), more than
    :data:`~npresnet.weights.limits.MAX_ZIP_MEMBERS` members,
    member names that repeat, encrypted members, compression other than
    stored/deflate (only stored when ``stored_only``, as ``torch.save`` writes), and
    sizes that the archive's bytes cannot back (members whose compressed sizes add up
    to more than the file, or that would expand beyond deflate's maximum ratio).
    Every check is linear in the number of members.
    """
    budgeted = _ReadBudget(file, file_size, MAX_ZIP_DIRECTORY_BYTES + _ZIP_END_RECORDS_BYTES)
    try:
        archive = zipfile.ZipFile(budgeted)
        budgeted.limit = None  # members are read later, each against its own checked size
        infos = archive.infolist()
    except WeightsError:  # the budget's refusal, already saying what is wrong (it is a ValueError too)
        raise
    except ZIP_ERRORS as exc:
        raise WeightsError(f"not a readable zip archive (truncated or corrupt): {exc}") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise WeightsError(f"zip archive has {len(infos)} members, more than the {MAX_ZIP_MEMBERS} npresnet reads")
    counts = collections.Counter(info.filename for info in infos)
    if len(counts) != len(infos):
        repeated = sorted(name for name, count in counts.items() if count > 1)
        raise WeightsError(f"zip archive has duplicate members [{', '.join(describe(n) for n in repeated[:5])}]")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_TENSOR_BYTES:
        raise WeightsError(
            f"zip members hold {declared:,} bytes uncompressed, more than the {MAX_TENSOR_BYTES:,} npresnet "
            "reads from one file"
        )
    total_compressed = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise WeightsError(f"zip member {describe(info.filename)} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            limit = info.compress_size
        elif stored_only:
            raise WeightsError(
                f"zip member {describe(info.filename)} is compressed (method {info.compress_type}); "
                "torch.save stores every member uncompressed, so npresnet reads only stored members "
                "(re-save the file with torch.save)"
            )
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            limit = info.compress_size * MAX_DEFLATE_RATIO + 1024
        else:
            raise WeightsError(
                f"zip member {describe(info.filename)} uses compression method {info.compress_type}; "
                "only stored and deflate are read"
            )
        if info.file_size > limit:
            raise WeightsError(
                f"zip member {describe(info.filename)} claims {info.file_size} bytes but its "
                f"{info.compress_size} stored bytes cannot hold that"
            )
        total_compressed += info.compress_size
    if total_compressed > file_size:
        raise WeightsError(
            f"zip members claim {total_compressed} bytes in a {file_size}-byte file (overlapping or corrupt directory)"
        )
    return archive


def read_member(
    archive: zipfile.ZipFile, name: str, expected_size: int | None = None, max_size: int | None = None
) -> bytes:
    """Return the bytes of member ``name``, checking its size (when given) before reading.

    ``max_size`` refuses a member whose directory entry claims more bytes (a limit from
    :mod:`~npresnet.weights.limits`); at most the claimed size plus one byte is read.

    zipfile verifies the CRC-32 as it reads, which catches most corruption of the data.
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise WeightsError(f"zip member {describe(name)} is missing") from None
    if expected_size is not None and info.file_size != expected_size:
        raise WeightsError(f"zip member {describe(name)} holds {info.file_size} bytes, but {expected_size} are needed")
    if max_size is not None and info.file_size > max_size:
        raise WeightsError(
            f"zip member {describe(name)} holds {info.file_size} bytes, more than the {max_size} npresnet reads for it"
        )
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except ZIP_ERRORS as exc:
        raise WeightsError(f"zip member {describe(name)} cannot be read (corrupt): {exc}") from exc
    if len(data) != info.file_size:
        raise WeightsError(f"zip member {describe(name)} holds {len(data)} bytes, its directory says {info.file_size}")
    return data


MAX_SHAPE_SPAN = 2**59
"""Largest product of a shape's nonzero entries: at 16 bytes an element (complex128) still below 2**63 bytes."""


def element_count(shape: object, what: str) -> int:
    """Return the number of elements of ``shape`` (a tuple or list of ints >= 0), or raise WeightsError.

    Types are checked before anything is formatted or multiplied, so a hostile shape
    costs at most :data:`~npresnet.weights.limits.MAX_DIMENSIONS` steps.
    """
    if type(shape) is not tuple and type(shape) is not list:
        raise WeightsError(f"{what}: shape must be a sequence of integers, got {describe(shape)}")
    if len(shape) > MAX_DIMENSIONS:
        raise WeightsError(
            f"{what}: shape has {len(shape)} dimensions, more than the {MAX_DIMENSIONS} npresnet accepts"
        )
    for n in shape:
        if type(n) is not int or n < 0:
            raise WeightsError(f"{what}: shape entry {describe(n)} is not an integer >= 0")
        if n.bit_length() > 63:
            raise WeightsError(f"{what}: shape entry {describe(n)} does not fit in 63 bits")
    count = math.prod(shape)
    # NumPy refuses a shape whose nonzero entries multiply past what an array could span, even when
    # a zero makes it empty: (0, 2**62) has no elements but cannot be made. (A nonempty shape that
    # large is refused by the caller, its bytes against the file's.)
    span = math.prod(n for n in shape if n)
    if count == 0 and span > MAX_SHAPE_SPAN:
        raise WeightsError(f"{what}: shape {list(shape)} spans {span:.3g} elements along its nonzero entries")
    return count


def check_weight_dtype(dtype: numpy.dtype, what: str) -> None:
    """Refuse dtypes that are not plain numbers: objects (pickles), strings, records, voids."""
    if dtype.hasobject:
        raise WeightsError(f"{what}: object array (it would need pickle); weights are numbers")
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WeightsError(f"{what}: dtype {dtype} is not a numeric weight dtype")


def check_bool_values(array: numpy.ndarray, what: str) -> None:
    """Check that a bool array read from raw bytes holds only 0 and 1 (anything else is a silent garbage value)."""
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
