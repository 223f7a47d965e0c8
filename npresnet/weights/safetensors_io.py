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
import struct
from typing import Mapping

import numpy

from ..errors import WeightsError
from ._checks import bfloat16_to_float32, check_bool_values, element_count, native

__all__ = ["read_safetensors", "write_safetensors", "DTYPES"]

# safetensors dtype tag -> NumPy dtype (little-endian). BF16 is widened to float32.
DTYPES = {
    "BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "U32": "<u4",
    "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2", "BF16": "<u2", "F32": "<f4",
    "F64": "<f8",
}
MAX_HEADER_SIZE = 100_000_000  # the limit the safetensors format itself sets


def _import_safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError(
            'reading or writing .safetensors needs the safetensors package: '
            'pip install "npresnet[tools]"') from exc
    return safetensors


def _unique_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise WeightsError(f"safetensors header names {key!r:.100} twice")
        result[key] = value
    return result


def _parse_header(data: bytes) -> tuple[dict, int]:
    """Check the header against the file; return (entries without __metadata__, data start)."""
    if len(data) < 8:
        raise WeightsError(f"file is {len(data)} bytes, too short for a safetensors header")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > min(MAX_HEADER_SIZE, len(data) - 8):
        raise WeightsError(
            f"safetensors header claims {header_size} bytes but the file has {len(data) - 8} after it")
    try:
        header = json.loads(data[8: 8 + header_size].decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"safetensors header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WeightsError("safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    start = 8 + header_size
    data_size = len(data) - start
    for name, entry in header.items():
        what = f"tensor {name!r:.100}"
        if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
            raise WeightsError(f"{what}: header entry must have exactly dtype, shape, data_offsets")
        if entry["dtype"] not in DTYPES:
            raise WeightsError(f"{what}: unknown or unsupported dtype tag {entry['dtype']!r:.40}")
        numel = element_count(entry["shape"], what)
        offsets = entry["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise WeightsError(f"{what}: data_offsets {offsets!r:.80} lie outside the {data_size}-byte data block")
        nbytes = numel * numpy.dtype(DTYPES[entry["dtype"]]).itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise WeightsError(
                f"{what}: shape {entry['shape']} of {entry['dtype']} needs {nbytes} bytes, "
                f"data_offsets give {offsets[1] - offsets[0]}")
    return header, start


def read_safetensors(data: bytes) -> dict[str, numpy.ndarray]:
    """Read a ``.safetensors`` file's bytes into ``name -> array`` (fresh, native-order copies)."""
    header, _ = _parse_header(data)
    safetensors = _import_safetensors()
    try:
        tensors = safetensors.deserialize(data)
    except Exception as exc:  # the Rust parser's SafetensorError, or anything it raises
        raise WeightsError(f"not a valid safetensors file: {exc}") from exc
    state_dict = {}
    for name, info in tensors:
        entry = header.get(name)
        if entry is None or entry["dtype"] != info["dtype"] or list(info["shape"]) != entry["shape"]:
            raise WeightsError(f"tensor {name!r:.100}: the safetensors package and the header disagree")
        raw = numpy.frombuffer(info["data"], dtype=DTYPES[entry["dtype"]])
        if entry["dtype"] == "BF16":
            array = bfloat16_to_float32(raw)
        else:
            check_bool_values(raw, f"tensor {name!r:.100}")
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
        return safetensors.numpy.save(arrays)
    except Exception as exc:
        raise WeightsError(f"safetensors could not serialise the state dict: {exc}") from exc
