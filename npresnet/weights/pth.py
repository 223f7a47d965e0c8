"""Read PyTorch ``.pth`` checkpoints without PyTorch and without running anything from the file.

What ``torch.save(state_dict, "resnet18.pth")`` writes
------------------------------------------------------
Since PyTorch 1.6 a checkpoint is an ordinary zip archive (members are stored,
not compressed) whose members sit in one folder, ``<archive>/``, named after the
file at save time::

    resnet18/data.pkl          the object, pickled (protocol 2 by default)
    resnet18/data/0            raw bytes of storage "0": little-endian elements, no header
    resnet18/data/1            ... one member per storage
    resnet18/byteorder         "little" or "big" (older files lack it and are little-endian)
    resnet18/version           format version, e.g. "3"
    resnet18/.format_version, .storage_alignment, .data/serialization_id   (ignored here)

The pickle of a state dict is an ``OrderedDict`` of name -> tensor. Each tensor
is pickled as a call ::

    torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
                                    requires_grad, backward_hooks[, metadata])

where ``storage_offset``, ``size`` and ``stride`` count *elements*, so element
``[i, j]`` of a 2-d tensor lives at ``storage_offset + i*stride[0] + j*stride[1]``,
and ``storage`` is not pickled inline but as a *persistent id* (opcode
``BINPERSID``), a tuple ::

    ("storage", torch.FloatStorage, "0", "cpu", 6)
     tag        element type         key  device  number of elements

naming the zip member ``<archive>/data/<key>``. Several tensors can share one
storage (views, slices, tied weights); each then carries its own offset/stride.

How it is read safely
---------------------
:class:`RestrictedUnpickler` reads ``data.pkl`` with the restricted pickle machine of
:mod:`npresnet.weights._unpickler` (allowlisted globals and opcodes, every container
bounded; its docstring explains how). This module adds what is particular to a
checkpoint: the zip archive, and storages. It hands out storages as a private type,
:class:`_Storage`, that only ``_rebuild_tensor_v2`` accepts; that checks the view's
real extent (``offset + sum((size - 1) * stride) + 1`` elements) against the storage
and the copies' total against the bytes actually read, before allocating, and returns a
fresh, writable, native-byte-order, C-contiguous array. A bare storage used as a value
is refused (``torch.load`` would give a storage, not a tensor).

The legacy format (``_use_new_zipfile_serialization=False``, the default before
PyTorch 1.6) is a bare sequence of pickles rather than a zip; it is refused with
a message explaining how to re-save the file.

dtypes: bfloat16 storages are widened to float32 exactly (NumPy has no
bfloat16); every other supported storage keeps its dtype (``num_batches_tracked``
stays int64).
"""

from __future__ import annotations

import zipfile
from typing import Any, BinaryIO, Literal

import numpy

from ..errors import WeightsError
from ._checks import (
    bfloat16_to_float32,
    check_bool_values,
    describe,
    describe_ints,
    native,
    open_zip,
    read_member,
)
from ._unpickler import RestrictedPickle, _is_empty_dict, _PickledDict
from .limits import (
    MAX_DIMENSIONS,
    MAX_PICKLE_BYTES,
    MAX_STORAGE_KEY_CHARS,
    MIN_VIEW_BUDGET_BYTES,
)

__all__ = ["read_pth", "RestrictedUnpickler", "LEGACY_MAGIC"]

# torch.<Name>Storage -> the NumPy dtype of its elements ("bfloat16" is widened to float32).
STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}

# The first pickle of a legacy (pre-zip) torch.save file is this integer.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: just the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str):
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """One storage named by a persistent id: the 1-d elements of ``<archive>/data/<key>``.

    Private on purpose: only :meth:`RestrictedUnpickler._rebuild_tensor_v2` reads
    ``elements`` (a read-only, native-order array of the member's bytes), always to copy a
    checked view out of it. Nothing else, not even an earlier rebuilt tensor, can stand in.
    """

    __slots__ = ("key", "storage_type", "elements")

    def __init__(self, key: str, storage_type: _StorageType, elements: numpy.ndarray):
        self.key = key
        self.storage_type = storage_type
        self.elements = elements  # (numel,)


def _array_from_storage_bytes(data: bytes, dtype_name: str, byteorder: str) -> numpy.ndarray:
    """Return the elements of one storage as a native-order 1-d array (read-only view or copy)."""
    order: Literal["<", ">"] = "<" if byteorder == "little" else ">"
    if dtype_name == "bfloat16":
        raw = numpy.frombuffer(data, dtype=numpy.dtype("u2").newbyteorder(order))
        return bfloat16_to_float32(raw)
    dtype = numpy.dtype(dtype_name).newbyteorder(order)
    array = numpy.frombuffer(data, dtype=dtype)
    check_bool_values(array, "storage")
    if not dtype.isnative:
        array = native(array)
    return array


def _plain_ints(values: object, name: str, what: str) -> tuple[int, ...]:
    """``values`` as checked before use: a tuple of at most MAX_DIMENSIONS ints >= 0."""
    if type(values) is not tuple:
        raise WeightsError(f"{what}: {name} must be a tuple of integers, got {describe(values)}")
    if len(values) > MAX_DIMENSIONS:
        raise WeightsError(f"{what}: {name} has {len(values)} entries, more than the {MAX_DIMENSIONS} npresnet accepts")
    for n in values:
        if type(n) is not int or n < 0:
            raise WeightsError(f"{what}: {name} entry {describe(n)} is not an integer >= 0")
    return values


class RestrictedUnpickler(RestrictedPickle):
    """Unpickle a checkpoint's ``data.pkl``: the restricted machine, with torch's globals and the zip's storages.

    Parameters
    ----------
    data : bytes
        The pickle, at most :data:`~npresnet.weights.limits.MAX_PICKLE_BYTES` long.
    archive : zipfile.ZipFile
        The checkpoint, already checked by :func:`open_zip` (every member stored).
    prefix : str
        The folder of its members, e.g. ``"resnet18/"``.
    byteorder : {"little", "big"}
        Byte order of the storages.
    """

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        allowed: dict[tuple[str, str], Any] = {
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
        }
        for name, dtype in STORAGE_DTYPES.items():
            allowed[("torch", name)] = _StorageType(name, dtype)
        super().__init__(data, allowed)
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages: dict[str, _Storage] = {}
        self.storage_bytes = 0  # bytes of the storages read so far (sizes verified)
        self.rebuilt_bytes = 0  # bytes of the tensors copied out of them

    # -- persistent ids: storages ---------------------------------------------------------
    def persistent_load(self, pid: Any) -> _Storage:
        """Resolve ``("storage", storage_type, key, location, numel)`` to a :class:`_Storage`."""
        if type(pid) is not tuple or len(pid) != 5 or type(pid[0]) is not str or pid[0] != "storage":
            raise WeightsError(f"unexpected persistent id {describe(pid)} (expected a 5-tuple starting 'storage')")
        _, storage_type, key, location, numel = pid
        if type(storage_type) is not _StorageType:
            raise WeightsError(f"storage type {describe(storage_type)} is not a torch storage type")
        if type(key) is not str or not 0 < len(key) <= MAX_STORAGE_KEY_CHARS or type(location) is not str:
            raise WeightsError(f"malformed storage reference: key {describe(key)}, location {describe(location)}")
        if type(numel) is not int or numel < 0:
            raise WeightsError(f"storage {describe(key)}: element count {describe(numel)} is not an integer >= 0")
        if key in self._storages:
            known = self._storages[key]
            if known.storage_type.dtype != storage_type.dtype or known.elements.size != numel:
                raise WeightsError(
                    f"storage {describe(key)} is referenced as {known.storage_type!r} and as {storage_type!r} "
                    f"with {known.elements.size} and {numel} elements"
                )
            return known
        itemsize = 2 if storage_type.dtype == "bfloat16" else numpy.dtype(storage_type.dtype).itemsize
        name = f"{self._prefix}data/{key}"
        info = self._archive.NameToInfo.get(name)
        if info is None:
            raise WeightsError(f"storage {describe(key)} is missing: no zip member {describe(name)}")
        if info.file_size != numel * itemsize:
            raise WeightsError(
                f"storage {describe(key)} claims {numel} elements of {storage_type.dtype} "
                f"({numel * itemsize} bytes) but its zip member holds {info.file_size} bytes"
            )
        data = read_member(self._archive, name, numel * itemsize)  # stored: exactly these bytes
        self.storage_bytes += len(data)
        storage = _Storage(key, storage_type, _array_from_storage_bytes(data, storage_type.dtype, self._byteorder))
        self._storages[key] = storage
        return storage

    # -- the allowed callables --------------------------------------------------------
    # -- the tensor-rebuild callables ---------------------------------------------------
    def _rebuild_parameter(
        self, data: object, requires_grad: object = False, backward_hooks: object = None, *rest: object
    ) -> numpy.ndarray:
        if (
            rest
            or type(data) is not numpy.ndarray
            or type(requires_grad) is not bool
            or not (backward_hooks is None or _is_empty_dict(backward_hooks))
        ):
            raise WeightsError("malformed torch._utils._rebuild_parameter call")
        return data

    def _rebuild_tensor_v2(
        self,
        storage: object,
        storage_offset: object,
        size: object,
        stride: object,
        requires_grad: object = False,
        backward_hooks: object = None,
        metadata: object = None,
    ) -> numpy.ndarray:
        """Copy the tensor ``size``/``stride``/``storage_offset`` describes out of ``storage``.

        Element ``index`` of the tensor is element ``storage_offset + sum(index * stride)``
        of the storage, so the view reaches up to element
        ``storage_offset + sum((size - 1) * stride)``, which must exist.

        Returns a fresh, writable, C-contiguous, native-order array of shape ``size``.
        """
        if type(storage) is not _Storage:
            raise WeightsError(
                f"a tensor is rebuilt from {describe(storage)}; only a storage named by a persistent id "
                "may hold a tensor's elements"
            )
        if (
            type(requires_grad) is not bool
            or not (backward_hooks is None or _is_empty_dict(backward_hooks))
            or not (metadata is None or _is_empty_dict(metadata))
        ):
            raise WeightsError("tensor carries backward hooks or metadata; not a plain state-dict tensor")
        what = (
            f"tensor of storage {describe(storage.key)} (size {describe_ints(size)}, "
            f"stride {describe_ints(stride)}, offset {describe(storage_offset)})"
        )
        size = _plain_ints(size, "size", what)
        stride = _plain_ints(stride, "stride", what)
        if len(stride) != len(size):
            raise WeightsError(f"{what}: size and stride have different lengths")
        if type(storage_offset) is not int or storage_offset < 0:
            raise WeightsError(f"{what}: storage offset must be an integer >= 0")
        elements = storage.elements  # (numel,)
        numel = 1
        for n in size:
            numel *= n
        if numel == 0:
            return numpy.zeros(size, dtype=elements.dtype)
        extent = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1  # elements spanned
        if extent > elements.size:
            raise WeightsError(f"{what}: reaches element {extent - 1} but its storage holds only {elements.size}")
        if numel > elements.size:
            raise WeightsError(
                f"{what}: has {numel} elements but its storage holds only {elements.size} "
                "(broadcast views are not read)"
            )
        self.rebuilt_bytes += numel * elements.itemsize
        budget = self.storage_bytes + max(self.storage_bytes, MIN_VIEW_BUDGET_BYTES)
        if self.rebuilt_bytes > budget:
            raise WeightsError(
                f"tensors would need more than {budget} bytes, far more than the {self.storage_bytes} "
                "bytes of storages read; refusing (overlapping views?)"
            )
        # A stride only matters along a dimension of more than one element.
        strides = [s * elements.itemsize if n > 1 else 0 for n, s in zip(size, stride)]
        view = numpy.lib.stride_tricks.as_strided(
            elements[storage_offset:extent], shape=size, strides=strides, writeable=False
        )
        return numpy.array(view, order="C", copy=True)


def _find_prefix(archive: zipfile.ZipFile) -> str:
    """Return the folder holding ``data.pkl``, e.g. ``"resnet18/"``; exactly one is allowed."""
    candidates = [
        name[: -len("data.pkl")] for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1
    ]
    if len(candidates) != 1:
        found = "no" if not candidates else f"{len(candidates)}"
        raise WeightsError(f"zip archive has {found} '<archive>/data.pkl' members; a PyTorch checkpoint has one")
    return candidates[0]


def _read_byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    name = f"{prefix}byteorder"
    if name not in archive.NameToInfo:
        return "little"  # older files lack the member; they were written little-endian
    value = read_member(archive, name, max_size=16).decode("ascii", "replace").strip()
    if value not in ("little", "big"):
        raise WeightsError(f"byteorder member says {describe(value)}; expected 'little' or 'big'")
    return value


def read_pth(file: BinaryIO, file_size: int) -> dict[str, numpy.ndarray]:
    """Read the state dict from a zip-format ``.pth`` checkpoint.

    Parameters
    ----------
    file : binary file object
        Opened for reading, seekable.
    file_size : int
        Its size in bytes (bounds every size claim in the archive).

    Returns
    -------
    dict of str to numpy.ndarray
        In the file's order; fresh, C-contiguous, native-byte-order arrays.

    Raises
    ------
    WeightsError
        For anything unsafe, malformed or not a plain state dict.
    """
    archive = open_zip(file, file_size, stored_only=True)
    prefix = _find_prefix(archive)
    byteorder = _read_byteorder(archive, prefix)
    pickle_bytes = read_member(archive, f"{prefix}data.pkl", max_size=MAX_PICKLE_BYTES)
    unpickler = RestrictedUnpickler(pickle_bytes, archive, prefix, byteorder)
    try:
        result = unpickler.load()
    except WeightsError:
        raise
    except Exception as exc:  # only our own handlers ran: any failure means a malformed pickle
        raise WeightsError(
            f"data.pkl is not a valid checkpoint pickle: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    return _as_state_dict(result)


def _as_state_dict(obj: object) -> dict[str, numpy.ndarray]:
    """Check that the unpickled object is a flat ``{str: tensor}`` dict.

    Keys are strings already (:class:`_PickledDict` refuses others). A tensor pickled
    under two names (tied weights) comes back as one array under both, as ``torch.load``
    gives one tensor. A bare storage is refused: it is not a tensor.
    """
    if type(obj) is not _PickledDict:
        raise WeightsError(f"checkpoint holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    for key, value in obj.items():
        if type(value) is numpy.ndarray:
            continue
        if type(value) is _Storage:
            raise WeightsError(
                f"value of {describe(key)} is a bare torch storage, not a tensor; "
                "npresnet reads state dicts of tensors only"
            )
        hint = ""
        if type(value) is _PickledDict:
            hint = (
                f"; this looks like a training checkpoint wrapping the state dict: "
                f"save just that part, e.g. torch.save(checkpoint[{describe(key)}], 'weights.pth')"
            )
        raise WeightsError(f"value of {describe(key)} is a {type(value).__name__}, not a tensor{hint}")
    return dict(obj)
