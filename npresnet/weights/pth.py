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
Unpickling runs whatever callables the pickle names, so a pickle can run
``os.system``. :class:`RestrictedUnpickler` is a pickle machine that

* resolves globals from a short allowlist (``_rebuild_tensor_v2``,
  ``_rebuild_parameter``, ``collections.OrderedDict`` and the ``torch.*Storage``
  types), each mapped to a function *of this module*; torch is never imported and
  every other global is refused with :class:`~npresnet.errors.WeightsError` naming it;
* accepts only the opcodes that ``torch.save`` writes (no ``INST``, ``OBJ``,
  ``NEWOBJ``, extension registry or out-of-band buffers), allows ``BUILD`` only to
  attach torch's ``_metadata`` to a dict, and builds every dict itself so that a
  key set twice is caught;
* checks every storage and tensor against the bytes actually in the archive
  before allocating, and returns fresh, native-byte-order, contiguous arrays.

We subclass the pure-Python ``pickle._Unpickler`` because, unlike the C
unpickler, it lets us replace the handler of each opcode.

The legacy format (``_use_new_zipfile_serialization=False``, the default before
PyTorch 1.6) is a bare sequence of pickles rather than a zip; it is refused with
a message explaining how to re-save the file.

dtypes: bfloat16 storages are widened to float32 exactly (NumPy has no
bfloat16); every other supported storage keeps its dtype (``num_batches_tracked``
stays int64).
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
from typing import BinaryIO

import numpy

from ..errors import WeightsError
from ._checks import (
    bfloat16_to_float32,
    check_bool_values,
    element_count,
    native,
    open_zip,
    read_member,
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

# Opcodes torch.save can emit (any pickle protocol 2..5), and nothing else.
# GLOBAL/STACK_GLOBAL go through find_class, BINPERSID through persistent_load,
# REDUCE can only call what find_class handed out, and BUILD is restricted below.
ALLOWED_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP
    PUT BINPUT LONG_BINPUT GET BINGET LONG_BINGET MEMOIZE
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    BINBYTES SHORT_BINBYTES BINBYTES8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS
    EMPTY_DICT DICT SETITEM SETITEMS
    GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID
""".split())


class _PickledDict(dict):
    """The only dict type the unpickler builds: refuses a key that is set twice."""

    __slots__ = ()

    def __setitem__(self, key, value):
        if key in self:
            raise WeightsError(f"duplicate key {key!r:.100} in the pickled dict")
        super().__setitem__(key, value)


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: just the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str):
        self.name = name
        self.dtype = dtype

    def __repr__(self):
        return f"torch.{self.name}"


def _refuse_opcode(name: str):
    def refuse(unpickler):
        raise WeightsError(f"pickle opcode {name} is not allowed (torch.save does not write it)")
    return refuse


def _build_dispatch() -> dict:
    """Opcode byte -> handler: the standard handler for allowed opcodes, a refusal otherwise."""
    table = {}
    for opcode in pickletools.opcodes:
        code = opcode.code.encode("latin-1")[0]
        if opcode.name in ALLOWED_OPCODES:
            table[code] = pickle._Unpickler.dispatch[code]
        else:
            table[code] = _refuse_opcode(opcode.name)
    return table


def _array_from_storage_bytes(data: bytes, dtype_name: str, byteorder: str) -> numpy.ndarray:
    """The elements of one storage as a native-order 1-d array (read-only view or copy)."""
    order = "<" if byteorder == "little" else ">"
    if dtype_name == "bfloat16":
        raw = numpy.frombuffer(data, dtype=numpy.dtype("u2").newbyteorder(order))
        return bfloat16_to_float32(raw)
    dtype = numpy.dtype(dtype_name).newbyteorder(order)
    array = numpy.frombuffer(data, dtype=dtype)
    check_bool_values(array, "storage")
    if not dtype.isnative:
        array = native(array)
    return array


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickle a checkpoint's ``data.pkl`` with an allowlist of globals and opcodes.

    Parameters
    ----------
    data : bytes
        The pickle.
    archive : zipfile.ZipFile
        The checkpoint, already checked by :func:`open_zip`.
    prefix : str
        The folder of its members, e.g. ``"resnet18/"``.
    byteorder : {"little", "big"}
        Byte order of the storages.
    budget : int
        Most bytes the rebuilt arrays may occupy in total.
    """

    dispatch = _build_dispatch()

    def __init__(self, data: bytes, archive, prefix: str, byteorder: str, budget: int):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._budget = budget
        self._storages: dict[str, tuple[_StorageType, numpy.ndarray]] = {}
        self.rebuilt_bytes = 0
        self._allowed = {
            ("collections", "OrderedDict"): self._ordered_dict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
        }
        for name, dtype in STORAGE_DTYPES.items():
            self._allowed[("torch", name)] = _StorageType(name, dtype)

    # -- globals and persistent ids ------------------------------------------------
    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise WeightsError(
                f"refused global {self._python3_name(module, name)}: a weight file may only name the "
                "tensor-rebuild globals (torch._utils._rebuild_tensor_v2, "
                "collections.OrderedDict, torch.*Storage); this file would run code "
                "or needs classes npresnet does not load") from None

    def _python3_name(self, module, name) -> str:
        """``module.name`` as Python 3 would resolve it (protocol < 3 writes Python 2 names)."""
        written = f"{module}.{name}"
        if self.proto >= 3:
            return written
        module3, name3 = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module3 = _compat_pickle.IMPORT_MAPPING.get(module3, module3)
        resolved = f"{module3}.{name3}"
        return written if resolved == written else f"{resolved} (written as {written})"

    def persistent_load(self, pid):
        """Resolve ``("storage", storage_type, key, location, numel)`` to a 1-d array."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightsError(f"unexpected persistent id {pid!r:.120} (expected a storage)")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"storage type {storage_type!r:.80} is not a torch storage type")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise WeightsError(f"malformed storage reference {pid!r:.120}")
        if key in self._storages:
            known_type, array = self._storages[key]
            if known_type.dtype != storage_type.dtype or array.size != numel:
                raise WeightsError(
                    f"storage {key!r} is referenced as {known_type!r} and as {storage_type!r} "
                    f"with {array.size} and {numel} elements")
            return array
        itemsize = 2 if storage_type.dtype == "bfloat16" else numpy.dtype(storage_type.dtype).itemsize
        name = f"{self._prefix}data/{key}"
        if name not in self._archive.NameToInfo:
            raise WeightsError(f"storage {key!r} is missing: no zip member {name!r}")
        size = self._archive.getinfo(name).file_size
        if size != numel * itemsize:
            raise WeightsError(
                f"storage {key!r} claims {numel} elements of {storage_type.dtype} "
                f"({numel * itemsize} bytes) but its zip member holds {size} bytes")
        data = read_member(self._archive, name, numel * itemsize)
        array = _array_from_storage_bytes(data, storage_type.dtype, self._byteorder)
        self._storages[key] = (storage_type, array)
        return array

    # -- the allowed callables --------------------------------------------------------
    def _ordered_dict(self, *args):
        if args:
            raise WeightsError("collections.OrderedDict called with arguments; torch.save never does that")
        return _PickledDict()

    def _rebuild_parameter(self, data, requires_grad=False, backward_hooks=None, *rest):
        if rest or not isinstance(data, numpy.ndarray):
            raise WeightsError("malformed torch._utils._rebuild_parameter call")
        return data

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride,
                           requires_grad=False, backward_hooks=None, metadata=None):
        """Copy the tensor ``size``/``stride``/``storage_offset`` describes out of ``storage``.

        Returns a fresh C-contiguous array of shape ``size``.
        """
        if not isinstance(storage, numpy.ndarray):
            raise WeightsError("tensor is rebuilt from something that is not a storage")
        if backward_hooks or metadata:
            raise WeightsError("tensor carries backward hooks or metadata; not a plain state-dict tensor")
        what = f"tensor (size {size!r:.80}, stride {stride!r:.80}, offset {storage_offset!r:.40})"
        numel = element_count(size, what)
        element_count(stride, what)
        if len(stride) != len(size):
            raise WeightsError(f"{what}: size and stride have different lengths")
        if type(storage_offset) is not int or storage_offset < 0:
            raise WeightsError(f"{what}: storage offset must be an integer >= 0")
        if numel == 0:
            return numpy.zeros(size, dtype=storage.dtype)
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.size:
            raise WeightsError(
                f"{what}: reaches element {last} but its storage holds only {storage.size}")
        if numel > storage.size:
            raise WeightsError(
                f"{what}: has {numel} elements but its storage holds only {storage.size} "
                "(broadcast views are not read)")
        nbytes = numel * storage.itemsize
        self.rebuilt_bytes += nbytes
        if self.rebuilt_bytes > self._budget:
            raise WeightsError(
                f"tensors would need more than {self._budget} bytes, far more than the "
                "file's storages; refusing (overlapping views?)")
        view = numpy.lib.stride_tricks.as_strided(
            storage[storage_offset:], shape=size,
            strides=[s * storage.itemsize for s in stride], writeable=False)
        return numpy.array(view, order="C", copy=True)

    # -- opcodes whose standard handlers we replace -----------------------------------------
    def _load_empty_dict(self):
        self.append(_PickledDict())

    def _load_dict(self):
        items = self.pop_mark()
        if len(items) % 2:
            raise WeightsError("DICT opcode with an odd number of items")
        result = _PickledDict()
        for i in range(0, len(items), 2):
            result[items[i]] = items[i + 1]
        self.append(result)

    def _load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._target_dict()[key] = value

    def _load_setitems(self):
        items = self.pop_mark()
        target = self._target_dict()
        if len(items) % 2:
            raise WeightsError("SETITEMS opcode with an odd number of items")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _target_dict(self) -> _PickledDict:
        target = self.stack[-1]
        if not isinstance(target, _PickledDict):
            raise WeightsError(f"pickle sets an item on a {type(target).__name__}, not a dict")
        return target

    def _load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        # torch pickles OrderedDict(...)._metadata as BUILD with {"_metadata": {...}}; ignored.
        if not (isinstance(target, _PickledDict) and isinstance(state, _PickledDict)
                and set(state) <= {"_metadata"}):
            raise WeightsError(f"pickle opcode BUILD on a {type(target).__name__} is not allowed")

    def _load_inst(self):
        module = self.readline()[:-1].decode("ascii", "replace")
        name = self.readline()[:-1].decode("ascii", "replace")
        self.find_class(module, name)  # refuses, naming the global, unless allowlisted
        raise WeightsError("pickle opcode INST is not allowed (torch.save does not write it)")


for _name, _handler in {
    "EMPTY_DICT": RestrictedUnpickler._load_empty_dict,
    "DICT": RestrictedUnpickler._load_dict,
    "SETITEM": RestrictedUnpickler._load_setitem,
    "SETITEMS": RestrictedUnpickler._load_setitems,
    "BUILD": RestrictedUnpickler._load_build,
    "INST": RestrictedUnpickler._load_inst,
}.items():
    RestrictedUnpickler.dispatch[getattr(pickle, _name)[0]] = _handler
del _name, _handler


def _find_prefix(archive) -> str:
    """The folder holding ``data.pkl``, e.g. ``"resnet18/"``; exactly one is allowed."""
    candidates = [name[: -len("data.pkl")] for name in archive.namelist()
                  if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(candidates) != 1:
        found = "no" if not candidates else f"{len(candidates)}"
        raise WeightsError(
            f"zip archive has {found} '<archive>/data.pkl' members; a PyTorch checkpoint has one")
    return candidates[0]


def _read_byteorder(archive, prefix: str) -> str:
    name = f"{prefix}byteorder"
    if name not in archive.NameToInfo:
        return "little"  # older files lack the member; they were written little-endian
    if archive.getinfo(name).file_size > 16:
        raise WeightsError("byteorder member is too long")
    value = read_member(archive, name).decode("ascii", "replace").strip()
    if value not in ("little", "big"):
        raise WeightsError(f"byteorder member says {value!r}; expected 'little' or 'big'")
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
    archive = open_zip(file, file_size)
    prefix = _find_prefix(archive)
    byteorder = _read_byteorder(archive, prefix)
    pickle_bytes = read_member(archive, f"{prefix}data.pkl")
    storage_bytes = sum(info.file_size for info in archive.infolist()
                        if info.filename.startswith(f"{prefix}data/"))
    # Views of one storage are copied out separately; allow overlap (tied weights,
    # slices) up to the storages' size again, or 64 MiB for small files.
    budget = storage_bytes + max(storage_bytes, 64 * 2**20)
    unpickler = RestrictedUnpickler(pickle_bytes, archive, prefix, byteorder, budget)
    try:
        result = unpickler.load()
    except WeightsError:
        raise
    except Exception as exc:  # only our own handlers ran: any failure means a malformed pickle
        raise WeightsError(f"data.pkl is not a valid checkpoint pickle: "
                           f"{type(exc).__name__}: {exc}") from exc
    return _as_state_dict(result)


def _as_state_dict(obj) -> dict[str, numpy.ndarray]:
    """Check that the unpickled object is a flat ``{str: tensor}`` dict.

    A tensor pickled under two names (tied weights) comes back as one array under
    both, as ``torch.load`` gives one tensor.
    """
    if not isinstance(obj, dict):
        raise WeightsError(f"checkpoint holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise WeightsError(f"state dict key {key!r:.80} is a {type(key).__name__}, not a string")
        if not isinstance(value, numpy.ndarray):
            hint = ""
            if isinstance(value, dict):
                hint = (f"; this looks like a training checkpoint wrapping the state dict: "
                        f"save just that part, e.g. torch.save(checkpoint[{key!r}], 'weights.pth')")
            raise WeightsError(f"value of {key!r} is a {type(value).__name__}, not a tensor{hint}")
    return dict(obj)
