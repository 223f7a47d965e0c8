"""The restricted pickle machine under :mod:`npresnet.weights.pth`: opcodes, allowlist, bounds.

Unpickling runs whatever callables the pickle names, so a pickle can run
``os.system``. :class:`RestrictedPickle` is a pickle machine that

* resolves globals from the allowlist its subclass gives (for ``.pth``:
  ``_rebuild_tensor_v2``, ``_rebuild_parameter``, ``collections.OrderedDict`` and the
  ``torch.*Storage`` types, each mapped to a function or stand-in of npresnet); torch is
  never imported and every other global is refused with
  :class:`~npresnet.errors.WeightsError` naming it;
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
  memo (a list, so no hash collisions), and integers (64 bits).

It subclasses the pure-Python ``pickle._Unpickler`` because, unlike the C
unpickler, that one lets us replace the handler of each opcode. Persistent ids
(storages) and the tensor-rebuild functions are the subclass's:
:class:`npresnet.weights.pth.RestrictedUnpickler`.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import WeightsError
from ._checks import describe

if TYPE_CHECKING:
    from collections.abc import Iterable

from .limits import MAX_CONTAINERS, MAX_INT_BYTES, MAX_MEMO_ENTRIES, MAX_NESTING, MAX_PICKLE_BYTES

__all__ = ["ALLOWED_OPCODES", "RestrictedPickle"]

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


class _PickledDict(dict[str, Any]):
    """The only dict type the unpickler builds: keys must be ``str`` (checked before hashing), set once."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        if type(key) is not str:
            raise WeightsError(f"state dict key {describe(key)} is a {type(key).__name__}, not a string")
        if key in self:
            raise WeightsError(f"duplicate key {describe(key)} in the pickled dict")
        super().__setitem__(key, value)


_UNSET = object()  # a memo slot that no PUT has filled


def _refuse_opcode(name: str) -> Callable[[Any], NoReturn]:
    def refuse(unpickler: Any) -> NoReturn:
        raise WeightsError(f"pickle opcode {name} is not allowed (torch.save does not write it)")

    return refuse


def _build_dispatch() -> dict[int, Callable[..., Any]]:
    """Opcode byte -> handler: the standard handler for allowed opcodes, a refusal otherwise."""
    table: dict[int, Callable[..., Any]] = {}
    for opcode in pickletools.opcodes:
        code = opcode.code.encode("latin-1")[0]
        if opcode.name in ALLOWED_OPCODES:
            table[code] = pickle._Unpickler.dispatch[code]
        else:
            table[code] = _refuse_opcode(opcode.name)
    return table


def _is_empty_dict(value: object) -> bool:
    return type(value) is _PickledDict and len(value) == 0


class RestrictedPickle(pickle._Unpickler):
    """Unpickle ``data`` with an allowlist of globals and opcodes, every container counted and bounded.

    Parameters
    ----------
    data : bytes
        The pickle, at most :data:`~npresnet.weights.limits.MAX_PICKLE_BYTES` long.
    allowed : dict of (str, str) to object
        ``(module, name)`` of each global the pickle may name -> what it resolves to.
        The callable ones are what ``REDUCE`` may call (plus ``collections.OrderedDict``,
        which is always this machine's own empty-dict builder).
    """

    dispatch = _build_dispatch()

    if TYPE_CHECKING:  # set and defined by pickle._Unpickler, which typeshed does not describe
        proto: int
        stack: list[Any]
        metastack: list[list[Any]]
        append: Callable[[Any], None]

        def pop_mark(self) -> list[Any]: ...
        def read(self, n: int) -> bytes: ...
        def readline(self) -> bytes: ...

    def __init__(self, data: bytes, allowed: dict[tuple[str, str], Any]):
        if len(data) > MAX_PICKLE_BYTES:
            raise WeightsError(f"data.pkl is {len(data)} bytes, more than the {MAX_PICKLE_BYTES} npresnet reads")
        super().__init__(io.BytesIO(data))
        self._memo: list[Any] = []  # index -> object; a list: no hashing of attacker-chosen ints
        # id(container) -> [container, nesting depth, sealed]; the container is kept alive, so
        # its id is never reused. "sealed" once it sits inside another container.
        self._containers: dict[int, list[Any]] = {}
        self._allowed = {("collections", "OrderedDict"): self._ordered_dict, **allowed}
        self._callables = tuple(value for value in self._allowed.values() if callable(value))

    # -- globals ----------------------------------------------------------------------
    def find_class(self, module: Any, name: Any) -> Any:
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

    # -- the one container constructor a pickle may call -------------------------------
    def _ordered_dict(self, *args: object) -> _PickledDict:
        if args:
            raise WeightsError("collections.OrderedDict called with arguments; torch.save never does that")
        result = _PickledDict()
        self._register(result, ())
        return result

    # -- containers: counted, nesting bounded ------------------------------------------
    def _depth_of_children(self, children: Iterable[object]) -> int:
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

    def _register(self, container: object, children: Iterable[object]) -> None:
        """Count a new tuple/list/dict and record its nesting depth."""
        if len(self._containers) >= MAX_CONTAINERS:
            raise WeightsError(f"pickle builds more than {MAX_CONTAINERS} tuples, lists and dicts")
        self._containers[id(container)] = [container, self._depth_of_children(children), False]

    def _grow(self, container: object, children: Iterable[object], kind: type) -> None:
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

    def _load_mark(self) -> None:
        if len(self.metastack) >= MAX_NESTING:
            raise WeightsError(f"pickle opens more than {MAX_NESTING} MARKs at once (a state dict opens 3)")
        self.metastack.append(self.stack)
        self.stack = []
        self.append = self.stack.append

    def _push_tuple(self, items: list[Any]) -> None:
        result = tuple(items)
        if items:  # () is a shared constant: no memory, nothing inside
            self._register(result, items)
        self.append(result)

    def _load_tuple(self) -> None:
        self._push_tuple(self.pop_mark())

    def _load_tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            raise WeightsError(f"TUPLE{n} opcode with fewer than {n} items on the stack")
        items = self.stack[-n:]
        del self.stack[-n:]
        self._push_tuple(items)

    def _load_empty_list(self) -> None:
        result: list[Any] = []
        self._register(result, ())
        self.append(result)

    def _load_list(self) -> None:
        items = self.pop_mark()
        result = list(items)
        self._register(result, result)
        self.append(result)

    def _load_append(self) -> None:
        value = self.stack.pop()
        self._grow(self.stack[-1], (value,), list)
        self.stack[-1].append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._grow(self.stack[-1], items, list)
        self.stack[-1].extend(items)

    def _load_empty_dict(self) -> None:
        result = _PickledDict()
        self._register(result, ())
        self.append(result)

    def _load_dict(self) -> None:
        items = self.pop_mark()
        result = _PickledDict()
        self._register(result, ())
        self._set_items(result, items)
        self.append(result)

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        self._set_items(self.stack[-1], items)

    def _set_items(self, target: object, items: list[Any]) -> None:
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

    def _put(self, index: int) -> None:
        index = self._memo_index(index)
        if not self.stack:
            raise WeightsError("memo PUT with an empty stack")
        if index >= len(self._memo):
            self._memo.extend([_UNSET] * (index + 1 - len(self._memo)))
        self._memo[index] = self.stack[-1]

    def _get(self, index: int) -> None:
        index = self._memo_index(index)
        if index >= len(self._memo) or self._memo[index] is _UNSET:
            raise WeightsError(f"memo index {index} is read before anything was stored there")
        self.append(self._memo[index])

    @staticmethod
    def _int64(value: int) -> int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise WeightsError(f"pickle integer {describe(value)} does not fit in 64 bits")
        return value

    def _load_put(self) -> None:
        self._put(self._read_int_line(self.readline(), "PUT"))

    def _load_binput(self) -> None:
        self._put(self.read(1)[0])

    def _load_long_binput(self) -> None:
        self._put(struct.unpack("<I", self.read(4))[0])

    def _load_memoize(self) -> None:
        self._put(len(self._memo))

    def _load_get(self) -> None:
        self._get(self._read_int_line(self.readline(), "GET"))

    def _load_binget(self) -> None:
        self._get(self.read(1)[0])

    def _load_long_binget(self) -> None:
        self._get(struct.unpack("<I", self.read(4))[0])

    # -- integers: at most 64 bits, checked before conversion ----------------------------
    def _load_int(self) -> None:
        line = self.readline()
        if line in (b"00\n", b"01\n"):  # protocol 0 writes booleans as INT
            self.append(line == b"01\n")
            return
        self.append(self._read_int_line(line, "INT"))

    def _read_int_line(self, line: bytes, what: str) -> int:
        """Return a protocol-0 decimal integer on its own line (at most 20 digits, an optional "L")."""
        if len(line) > _MAX_TEXT_INT_CHARS or not line.endswith(b"\n"):
            raise WeightsError(f"{what} opcode: not an integer of at most 20 digits on one line")
        text = line[:-1].removesuffix(b"L")
        try:
            return self._int64(int(text, 10))
        except ValueError:
            raise WeightsError(f"{what} opcode: {describe(text)} is not a decimal integer") from None

    def _load_long(self) -> None:
        self.append(self._read_int_line(self.readline(), "LONG"))

    def _load_long_bytes(self, count: int) -> None:
        if count < 0 or count > MAX_INT_BYTES:
            raise WeightsError(f"pickle integer takes {count} bytes; more than {MAX_INT_BYTES} (64 bits) are refused")
        self.append(self._int64(int.from_bytes(self.read(count), "little", signed=True)))

    def _load_long1(self) -> None:
        self._load_long_bytes(self.read(1)[0])

    def _load_long4(self) -> None:
        self._load_long_bytes(struct.unpack("<i", self.read(4))[0])

    # -- calls --------------------------------------------------------------------------
    def _load_reduce(self) -> None:
        args = self.stack.pop()
        function = self.stack[-1]
        if not any(function is allowed for allowed in self._callables):
            name = repr(function) if any(function is value for value in self._allowed.values()) else describe(function)
            raise WeightsError(f"pickle calls {name}, which is not one of the allowed functions")
        if type(args) is not tuple:
            raise WeightsError(f"pickle calls a function with {describe(args)} as its arguments, not a tuple")
        self.stack[-1] = function(*args)

    def _load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        # torch pickles OrderedDict(...)._metadata as BUILD with {"_metadata": {...}}; ignored.
        if not (type(target) is _PickledDict and type(state) is _PickledDict and set(state) <= {"_metadata"}):
            raise WeightsError(f"pickle opcode BUILD on a {type(target).__name__} is not allowed")

    def _load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii", "replace")
        name = self.readline()[:-1].decode("ascii", "replace")
        self.find_class(module, name)  # refuses, naming the global, unless allowlisted
        raise WeightsError("pickle opcode INST is not allowed (torch.save does not write it)")


for _name, _handler in {
    "MARK": RestrictedPickle._load_mark,
    "TUPLE": RestrictedPickle._load_tuple,
    "TUPLE1": lambda self: self._load_tuple_n(1),
    "TUPLE2": lambda self: self._load_tuple_n(2),
    "TUPLE3": lambda self: self._load_tuple_n(3),
    "EMPTY_LIST": RestrictedPickle._load_empty_list,
    "LIST": RestrictedPickle._load_list,
    "APPEND": RestrictedPickle._load_append,
    "APPENDS": RestrictedPickle._load_appends,
    "EMPTY_DICT": RestrictedPickle._load_empty_dict,
    "DICT": RestrictedPickle._load_dict,
    "SETITEM": RestrictedPickle._load_setitem,
    "SETITEMS": RestrictedPickle._load_setitems,
    "PUT": RestrictedPickle._load_put,
    "BINPUT": RestrictedPickle._load_binput,
    "LONG_BINPUT": RestrictedPickle._load_long_binput,
    "MEMOIZE": RestrictedPickle._load_memoize,
    "GET": RestrictedPickle._load_get,
    "BINGET": RestrictedPickle._load_binget,
    "LONG_BINGET": RestrictedPickle._load_long_binget,
    "INT": RestrictedPickle._load_int,
    "LONG": RestrictedPickle._load_long,
    "LONG1": RestrictedPickle._load_long1,
    "LONG4": RestrictedPickle._load_long4,
    "REDUCE": RestrictedPickle._load_reduce,
    "BUILD": RestrictedPickle._load_build,
    "INST": RestrictedPickle._load_inst,
}.items():
    RestrictedPickle.dispatch[getattr(pickle, _name)[0]] = _handler
del _name, _handler
