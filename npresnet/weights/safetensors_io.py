"""Read and write ``.safetensors`` state dicts (needs the ``safetensors`` package).

Layout: 8 bytes little-endian ``N``, then ``N`` bytes of JSON header mapping each
name to ``{"dtype": "F32", "shape": [64, 3, 7, 7], "data_offsets": [begin, end]}``
(plus an optional ``"__metadata__"`` of strings), then the data block; offsets
count bytes from the start of the data block. No code can hide in it.

We check the header ourselves first (the package silently keeps the last of two
entries with the same name, and gives NumPy no bfloat16), then let the package
parse the file too, and build the arrays from the bytes it returns. BF16 tensors
are widened to float32 exactly, as in :mod:`npresnet.weights.pth`.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy

from ..errors import WeightsError
from ._checks import (
    bfloat16_to_float32,
    check_bool_values,
    describe,
    element_count,
    native,
)
from .limits import MAX_NESTING, MAX_SAFETENSORS_HEADER_BYTES

__all__ = ["read_safetensors", "write_safetensors", "DTYPES"]

# safetensors dtype tag -> NumPy dtype (little-endian). BF16 is widened to float32.
DTYPES = {
    "BOOL": "|b1",
    "U8": "|u1",
    "I8": "|i1",
    "U16": "<u2",
    "I16": "<i2",
    "U32": "<u4",
    "I32": "<i4",
    "U64": "<u8",
    "I64": "<i8",
    "F16": "<f2",
    "BF16": "<u2",
    "F32": "<f4",
    "F64": "<f8",
}
MAX_HEADER_SIZE = MAX_SAFETENSORS_HEADER_BYTES  # far below the format's own 100 MB; see limits.py

# An escape (backslash and the character after it), then a string literal without escapes
# (or one left open at the end): both patterns match without backtracking, in linear time.
_JSON_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_JSON_STRING = re.compile(rb'"[^"]*(?:"|\Z)')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _import_safetensors() -> Any:
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError(
            'reading or writing .safetensors needs the safetensors package: pip install "npresnet[tools]"'
        ) from exc
    return safetensors


def _unique_keys(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:  # JSON keys are always str
            raise WeightsError(f"safetensors header names {describe(key)} twice")
        result[key] = value
    return result


def json_nesting(text: bytes) -> int:
    """How deep arrays and objects nest in the JSON ``text``, in linear time, without parsing it.

    Escapes and then string literals are removed (a bracket inside a string nests
    nothing); then each ``[``/``{`` counts +1 and each ``]``/``}`` -1, and the deepest
    running total is the nesting. Malformed text is left for ``json.loads`` to refuse.
    """
    brackets = _JSON_STRING.sub(b"", _JSON_ESCAPE.sub(b"", text)).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    steps = numpy.frombuffer(brackets, dtype=numpy.uint8)
    opening = (steps == ord("[")) | (steps == ord("{"))
    return int(numpy.cumsum(numpy.where(opening, 1, -1)).max())


def _check_entry(name: str, entry: object, data_size: int) -> None:
    """One tensor's header entry: types first, then sizes against the data block."""
    what = f"tensor {describe(name)}"
    if not (type(entry) is dict and set(entry) == {"dtype", "shape", "data_offsets"}):
        raise WeightsError(f"{what}: header entry must have exactly dtype, shape, data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if type(dtype) is not str or dtype not in DTYPES:
        raise WeightsError(f"{what}: unknown or unsupported dtype tag {describe(dtype)}")
    if type(shape) is not list:
        raise WeightsError(f"{what}: shape must be a list of integers, got {describe(shape)}")
    numel = element_count(shape, what)
    if not (type(offsets) is list and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise WeightsError(f"{what}: data_offsets must be a list of two integers, got {describe(offsets)}")
    if not 0 <= offsets[0] <= offsets[1] <= data_size:
        raise WeightsError(
            f"{what}: data_offsets [{describe(offsets[0])}, {describe(offsets[1])}] lie outside the "
            f"{data_size}-byte data block"
        )
    nbytes = numel * numpy.dtype(DTYPES[dtype]).itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise WeightsError(
            f"{what}: shape [{', '.join(map(str, shape))}] of {dtype} needs {nbytes} bytes, "
            f"data_offsets give {offsets[1] - offsets[0]}"
        )


def _parse_header(data: bytes) -> tuple[dict[str, Any], int]:
    """Check the header against the file; return (entries without __metadata__, data start)."""
    if len(data) < 8:
        raise WeightsError(f"file is {len(data)} bytes, too short for a safetensors header")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > MAX_HEADER_SIZE:
        raise WeightsError(
            f"safetensors header claims {header_size} bytes, more than the {MAX_HEADER_SIZE} npresnet reads"
        )
    if header_size > len(data) - 8:
        raise WeightsError(f"safetensors header claims {header_size} bytes but the file has {len(data) - 8} after it")
    text = data[8 : 8 + header_size]
    if json_nesting(text) > MAX_NESTING:
        raise WeightsError(f"safetensors header nests arrays/objects more than {MAX_NESTING} deep (real ones nest 3)")
    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_unique_keys)
    except WeightsError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        raise WeightsError(f"safetensors header is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if type(header) is not dict:
        raise WeightsError("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if type(metadata) is not dict or not all(type(v) is str for v in metadata.values()):
        raise WeightsError("safetensors __metadata__ must be an object of strings")
    start = 8 + header_size
    for name, entry in header.items():
        _check_entry(name, entry, len(data) - start)
    return header, start


def read_safetensors(data: bytes) -> dict[str, numpy.ndarray]:
    """Read a ``.safetensors`` file's bytes into ``name -> array`` (fresh, native-order copies)."""
    header, _ = _parse_header(data)
    safetensors = _import_safetensors()
    try:
        tensors = safetensors.deserialize(data)
    except Exception as exc:  # the Rust parser's SafetensorError, or anything it raises
        raise WeightsError(f"not a valid safetensors file: {str(exc)[:200]}") from exc
    state_dict = {}
    for name, info in tensors:
        entry = header.get(name)
        if entry is None or entry["dtype"] != info["dtype"] or list(info["shape"]) != entry["shape"]:
            raise WeightsError(f"tensor {describe(name)}: the safetensors package and the header disagree")
        raw = numpy.frombuffer(info["data"], dtype=DTYPES[entry["dtype"]])
        if entry["dtype"] == "BF16":
            array = bfloat16_to_float32(raw)
        else:
            check_bool_values(raw, f"tensor {describe(name)}")
            array = raw
        state_dict[name] = native(array.reshape(entry["shape"]))
    if len(state_dict) != len(header):
        raise WeightsError("the safetensors package and the header list different tensors")
    # safetensors orders tensors by offset; keep the header's (writer's) order.
    return {name: state_dict[name] for name in header}


def write_safetensors(state_dict: Mapping[str, numpy.ndarray]) -> bytes:
    """Serialise NumPy arrays to the bytes of a ``.safetensors`` file."""
    safetensors = _import_safetensors()
    arrays = {}
    for name, array in state_dict.items():
        if array.dtype.kind not in "biuf":
            raise WeightsError(f"{name!r}: dtype {array.dtype} cannot be stored in safetensors")
        # safetensors stores little-endian, C-ordered bytes.
        arrays[name] = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)
    try:
        return bytes(safetensors.numpy.save(arrays))
    except Exception as exc:
        raise WeightsError(f"safetensors could not serialise the state dict: {exc}") from exc
