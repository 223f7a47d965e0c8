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
  ``NEWOBJ``, extension registry or out-of-band buffers), allows ``REDUCE`` only to
  call the allowlisted functions with a tuple, allows ``BUILD`` only to attach
  torch's ``_metadata`` to a dict, and builds every dict itself so that a key must
  be a ``str`` (checked before it is hashed) and a key set twice is caught;
* never hashes, compares, formats or walks an object the file built before
  checking its type: a tuple nested a million deep or shared exponentially through
  the memo ("billion laughs") is only ever passed around by reference, and error
  messages describe untrusted values with :func:`~npresnet.weights._checks.describe`;
* bounds everything a small file could multiply (:mod:`npresnet.weights.limits`):
  the size of ``data.pkl``, the number of tuples/lists/dicts, their nesting, the
  memo (a list, so no hash collisions), and integers (64 bits);
* hands out storages as a private type, :class:`_Storage`, that only
  ``_rebuild_tensor_v2`` accepts; it checks the view's real extent
  (``offset + sum((size - 1) * stride) + 1`` elements) against the storage and the
  copies' total against the bytes actually read, before allocating, and returns a
  fresh, writable, native-byte-order, C-contiguous array. A bare storage used as a
  value is refused (``torch.load`` would give a storage, not a tensor).

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
import struct
from typing import BinaryIO

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
from .limits import (
    MAX_CONTAINERS,
    MAX_DIMENSIONS,
    MAX_INT_BYTES,
    MAX_MEMO_ENTRIES,
    MAX_NESTING,
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

# Opcodes torch.save can emit (any pickle protocol 2..5), and nothing else.
# GLOBAL/STACK_GLOBAL go through find_class, BINPERSID through persistent_load,
# REDUCE can only call what find_class handed out, and BUILD is restricted below.
ALLOWED_OPCODES = frozenset(
    """
    PROTO FRAME STOP MARK POP POP_MARK DUP
    PUT BINPUT LONG_BINPUT GET BINGET LONG_BINGET MEMOIZE
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    BINBYTES SHORT_BINBYTES BINBYTES8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS
    EMPTY_DICT DICT SETITEM SETITEMS
    GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID
""".split()
)

# A text integer (protocol 0 INT, LONG, PUT, GET) is at most a sign, 20 digits, "L" and "\n".
_MAX_TEXT_INT_CHARS = 23
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _PickledDict(dict):
    """The only dict type the unpickler builds: keys must be ``str`` (checked before hashing), set once."""

    __slots__ = ()

    def __setitem__(self, key, value):
        if type(key) is not str:
            raise WeightsError(f"state dict key {describe(key)} is a {type(key).__name__}, not a string")
        if key in self:
            raise WeightsError(f"duplicate key {describe(key)} in the pickled dict")
        super().__setitem__(key, value)


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: just the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str):
        self.name = name
        self.dtype = dtype

    def __repr__(self):
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


_UNSET = object()  # a memo slot that no PUT has filled


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


def _plain_ints(values, name: str, what: str) -> tuple:
    """``values`` as checked before use: a tuple of at most MAX_DIMENSIONS ints >= 0."""
    if type(values) is not tuple:
        raise WeightsError(f"{what}: {name} must be a tuple of integers, got {describe(values)}")
    if len(values) > MAX_DIMENSIONS:
        raise WeightsError(f"{what}: {name} has {len(values)} entries, more than the {MAX_DIMENSIONS} npresnet accepts")
    for n in values:
        if type(n) is not int or n < 0:
            raise WeightsError(f"{what}: {name} entry {describe(n)} is not an integer >= 0")
    return values


def _is_empty_dict(value) -> bool:
    return type(value) is _PickledDict and len(value) == 0


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickle a checkpoint's ``data.pkl`` with an allowlist of globals and opcodes.

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

    dispatch = _build_dispatch()

    def __init__(self, data: bytes, archive, prefix: str, byteorder: str):
        if len(data) > MAX_PICKLE_BYTES:
            raise WeightsError(f"data.pkl is {len(data)} bytes, more than the {MAX_PICKLE_BYTES} npresnet reads")
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages: dict[str, _Storage] = {}
        self._memo: list = []  # index -> object; a list: no hashing of attacker-chosen ints
        # id(container) -> [container, nesting depth, sealed]; the container is kept alive, so
        # its id is never reused. "sealed" once it sits inside another container.
        self._containers: dict[int, list] = {}
        self.storage_bytes = 0  # bytes of the storages read so far (sizes verified)
        self.rebuilt_bytes = 0  # bytes of the tensors copied out of them
        self._allowed = {
            ("collections", "OrderedDict"): self._ordered_dict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
        }
        self._callables = tuple(self._allowed.values())
        for name, dtype in STORAGE_DTYPES.items():
            self._allowed[("torch", name)] = _StorageType(name, dtype)

    # -- globals and persistent ids ------------------------------------------------
    def find_class(self, module, name):
        if type(module) is not str or type(name) is not str:
            raise WeightsError(f"global named by {describe(module)} and {describe(name)}, not two strings")
        if (module, name) not in self._allowed:
            raise WeightsError(
                f"refused global {self._python3_name(module, name)}: a weight file may only name the "
                "tensor-rebuild globals (torch._utils._rebuild_tensor_v2, "
                "collections.OrderedDict, torch.*Storage); this file would run code "
                "or needs classes npresnet does not load"
            )
        return self._allowed[(module, name)]

    def _python3_name(self, module: str, name: str) -> str:
        """``module.name`` as Python 3 would resolve it (protocol < 3 writes Python 2 names)."""
        module, name = module[:100], name[:100]
        written = f"{module}.{name}"
        if self.proto >= 3:
            return written
        module3, name3 = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module3 = _compat_pickle.IMPORT_MAPPING.get(module3, module3)
        resolved = f"{module3}.{name3}"
        return written if resolved == written else f"{resolved} (written as {written})"

    def persistent_load(self, pid):
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
    def _ordered_dict(self, *args):
        if args:
            raise WeightsError("collections.OrderedDict called with arguments; torch.save never does that")
        result = _PickledDict()
        self._register(result, ())
        return result

    def _rebuild_parameter(self, data, requires_grad=False, backward_hooks=None, *rest):
        if (
            rest
            or type(data) is not numpy.ndarray
            or type(requires_grad) is not bool
            or not (backward_hooks is None or _is_empty_dict(backward_hooks))
        ):
            raise WeightsError("malformed torch._utils._rebuild_parameter call")
        return data

    def _rebuild_tensor_v2(
        self, storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
    ):
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

    # -- containers: counted, nesting bounded ------------------------------------------
    def _depth_of_children(self, children) -> int:
        """1 + the deepest container among ``children``, which are now sealed inside a container."""
        depth = 1
        for child in children:
            entry = self._containers.get(id(child))
            if entry is not None and entry[0] is child:
                entry[2] = True
                depth = max(depth, entry[1] + 1)
        if depth > MAX_NESTING:
            raise WeightsError(f"pickle nests containers more than {MAX_NESTING} deep (a state dict nests 3)")
        return depth

    def _register(self, container, children):
        """Count a new tuple/list/dict and record its nesting depth."""
        if len(self._containers) >= MAX_CONTAINERS:
            raise WeightsError(f"pickle builds more than {MAX_CONTAINERS} tuples, lists and dicts")
        self._containers[id(container)] = [container, self._depth_of_children(children), False]

    def _grow(self, container, children, kind: str):
        """Add ``children`` to a list or dict the pickle built and has not nested yet."""
        entry = self._containers.get(id(container))
        if entry is None or entry[0] is not container or type(container) is not kind:
            raise WeightsError(f"pickle adds items to {describe(container)}, not to a {kind.__name__} it built")
        if entry[2]:
            raise WeightsError(
                "pickle adds items to a container that already sits inside another one "
                "(torch.save fills each container before nesting it)"
            )
        entry[1] = max(entry[1], self._depth_of_children(children))

    def _load_mark(self):
        if len(self.metastack) >= MAX_NESTING:
            raise WeightsError(f"pickle opens more than {MAX_NESTING} MARKs at once (a state dict opens 3)")
        self.metastack.append(self.stack)
        self.stack = []
        self.append = self.stack.append

    def _push_tuple(self, items: list):
        result = tuple(items)
        if items:  # () is a shared constant: no memory, nothing inside
            self._register(result, items)
        self.append(result)

    def _load_tuple(self):
        self._push_tuple(self.pop_mark())

    def _load_tuple_n(self, n: int):
        if len(self.stack) < n:
            raise WeightsError(f"TUPLE{n} opcode with fewer than {n} items on the stack")
        items = self.stack[-n:]
        del self.stack[-n:]
        self._push_tuple(items)

    def _load_empty_list(self):
        result = []
        self._register(result, ())
        self.append(result)

    def _load_list(self):
        items = self.pop_mark()
        result = list(items)
        self._register(result, result)
        self.append(result)

    def _load_append(self):
        value = self.stack.pop()
        self._grow(self.stack[-1], (value,), list)
        self.stack[-1].append(value)

    def _load_appends(self):
        items = self.pop_mark()
        self._grow(self.stack[-1], items, list)
        self.stack[-1].extend(items)

    def _load_empty_dict(self):
        result = _PickledDict()
        self._register(result, ())
        self.append(result)

    def _load_dict(self):
        items = self.pop_mark()
        result = _PickledDict()
        self._register(result, ())
        self._set_items(result, items)
        self.append(result)

    def _load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    def _load_setitems(self):
        items = self.pop_mark()
        self._set_items(self.stack[-1], items)

    def _set_items(self, target, items: list):
        if type(target) is not _PickledDict:
            raise WeightsError(f"pickle sets an item on {describe(target)}, not a dict")
        if len(items) % 2:
            raise WeightsError("pickle sets dict items from an odd number of keys and values")
        self._grow(target, items[1::2], _PickledDict)
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    # -- memo: a bounded list -------------------------------------------------------------
    def _memo_index(self, index: int) -> int:
        if not 0 <= index < MAX_MEMO_ENTRIES:
            raise WeightsError(f"memo index {describe(index)} is outside [0, {MAX_MEMO_ENTRIES})")
        return index

    def _put(self, index: int):
        index = self._memo_index(index)
        if not self.stack:
            raise WeightsError("memo PUT with an empty stack")
        if index >= len(self._memo):
            self._memo.extend([_UNSET] * (index + 1 - len(self._memo)))
        self._memo[index] = self.stack[-1]

    def _get(self, index: int):
        index = self._memo_index(index)
        if index >= len(self._memo) or self._memo[index] is _UNSET:
            raise WeightsError(f"memo index {index} is read before anything was stored there")
        self.append(self._memo[index])

    @staticmethod
    def _int64(value: int) -> int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise WeightsError(f"pickle integer {describe(value)} does not fit in 64 bits")
        return value

    def _load_put(self):
        self._put(self._read_int_line(self.readline(), "PUT"))

    def _load_binput(self):
        self._put(self.read(1)[0])

    def _load_long_binput(self):
        self._put(struct.unpack("<I", self.read(4))[0])

    def _load_memoize(self):
        self._put(len(self._memo))

    def _load_get(self):
        self._get(self._read_int_line(self.readline(), "GET"))

    def _load_binget(self):
        self._get(self.read(1)[0])

    def _load_long_binget(self):
        self._get(struct.unpack("<I", self.read(4))[0])

    # -- integers: at most 64 bits, checked before conversion ----------------------------
    def _load_int(self):
        line = self.readline()
        if line in (b"00\n", b"01\n"):  # protocol 0 writes booleans as INT
            self.append(line == b"01\n")
            return
        self.append(self._read_int_line(line, "INT"))

    def _read_int_line(self, line: bytes, what: str) -> int:
        """A protocol-0 decimal integer on its own line (at most 20 digits, an optional "L")."""
        if len(line) > _MAX_TEXT_INT_CHARS or not line.endswith(b"\n"):
            raise WeightsError(f"{what} opcode: not an integer of at most 20 digits on one line")
        text = line[:-1].removesuffix(b"L")
        try:
            return self._int64(int(text, 10))
        except ValueError:
            raise WeightsError(f"{what} opcode: {describe(text)} is not a decimal integer") from None

    def _load_long(self):
        self.append(self._read_int_line(self.readline(), "LONG"))

    def _load_long_bytes(self, count: int):
        if count < 0 or count > MAX_INT_BYTES:
            raise WeightsError(f"pickle integer takes {count} bytes; more than {MAX_INT_BYTES} (64 bits) are refused")
        self.append(self._int64(int.from_bytes(self.read(count), "little", signed=True)))

    def _load_long1(self):
        self._load_long_bytes(self.read(1)[0])

    def _load_long4(self):
        self._load_long_bytes(struct.unpack("<i", self.read(4))[0])

    # -- calls --------------------------------------------------------------------------
    def _load_reduce(self):
        args = self.stack.pop()
        function = self.stack[-1]
        if not any(function is allowed for allowed in self._callables):
            name = repr(function) if type(function) is _StorageType else describe(function)
            raise WeightsError(f"pickle calls {name}, which is not one of the allowed functions")
        if type(args) is not tuple:
            raise WeightsError(f"pickle calls a function with {describe(args)} as its arguments, not a tuple")
        self.stack[-1] = function(*args)

    def _load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        # torch pickles OrderedDict(...)._metadata as BUILD with {"_metadata": {...}}; ignored.
        if not (type(target) is _PickledDict and type(state) is _PickledDict and set(state) <= {"_metadata"}):
            raise WeightsError(f"pickle opcode BUILD on a {type(target).__name__} is not allowed")

    def _load_inst(self):
        module = self.readline()[:-1].decode("ascii", "replace")
        name = self.readline()[:-1].decode("ascii", "replace")
        self.find_class(module, name)  # refuses, naming the global, unless allowlisted
        raise WeightsError("pickle opcode INST is not allowed (torch.save does not write it)")


for _name, _handler in {
    "MARK": RestrictedUnpickler._load_mark,
    "TUPLE": RestrictedUnpickler._load_tuple,
    "TUPLE1": lambda self: self._load_tuple_n(1),
    "TUPLE2": lambda self: self._load_tuple_n(2),
    "TUPLE3": lambda self: self._load_tuple_n(3),
    "EMPTY_LIST": RestrictedUnpickler._load_empty_list,
    "LIST": RestrictedUnpickler._load_list,
    "APPEND": RestrictedUnpickler._load_append,
    "APPENDS": RestrictedUnpickler._load_appends,
    "EMPTY_DICT": RestrictedUnpickler._load_empty_dict,
    "DICT": RestrictedUnpickler._load_dict,
    "SETITEM": RestrictedUnpickler._load_setitem,
    "SETITEMS": RestrictedUnpickler._load_setitems,
    "PUT": RestrictedUnpickler._load_put,
    "BINPUT": RestrictedUnpickler._load_binput,
    "LONG_BINPUT": RestrictedUnpickler._load_long_binput,
    "MEMOIZE": RestrictedUnpickler._load_memoize,
    "GET": RestrictedUnpickler._load_get,
    "BINGET": RestrictedUnpickler._load_binget,
    "LONG_BINGET": RestrictedUnpickler._load_long_binget,
    "INT": RestrictedUnpickler._load_int,
    "LONG": RestrictedUnpickler._load_long,
    "LONG1": RestrictedUnpickler._load_long1,
    "LONG4": RestrictedUnpickler._load_long4,
    "REDUCE": RestrictedUnpickler._load_reduce,
    "BUILD": RestrictedUnpickler._load_build,
    "INST": RestrictedUnpickler._load_inst,
}.items():
    RestrictedUnpickler.dispatch[getattr(pickle, _name)[0]] = _handler
del _name, _handler


def _find_prefix(archive) -> str:
    """The folder holding ``data.pkl``, e.g. ``"resnet18/"``; exactly one is allowed."""
    candidates = [
        name[: -len("data.pkl")] for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1
    ]
    if len(candidates) != 1:
        found = "no" if not candidates else f"{len(candidates)}"
        raise WeightsError(f"zip archive has {found} '<archive>/data.pkl' members; a PyTorch checkpoint has one")
    return candidates[0]


def _read_byteorder(archive, prefix: str) -> str:
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


def _as_state_dict(obj) -> dict[str, numpy.ndarray]:
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
