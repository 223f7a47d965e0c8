"""The emulated ``cupy.ndarray``: a NumPy array held "on the device", refusing what CuPy refuses.

Each rule below is CuPy's own, cited from its source (``cupy/_core/core.pyx``,
``_kernel.pyx``, ``_scalar.pyx``, ``_routines_indexing.pyx``, CuPy 14):

- ``numpy.asarray(device_array)`` raises TypeError: ``ndarray.__array__`` refuses
  implicit conversion and points to ``.get()``.
- ``float(x)``, ``int(x)``, ``bool(x)``, ``if x:``, ``x.item()``, ``x.tolist()``, ``repr(x)``
  work, through ``self.get()``: each is a device-to-host copy the host waits for, counted as
  a synchronisation.
- A host array mixed into a kernel (``dev + host``, ``cupy.add(dev, host)``, ``host * dev``)
  raises TypeError: a kernel argument must be a device array or a scalar
  (``_scalar.CScalar``: "Unsupported type <class 'numpy.ndarray'>").
- Assignment ``dev[...] = host`` and NumPy index arrays are accepted: CuPy copies them to the
  device first (``core.array``), counted as a host-to-device transfer.
- NumPy functions called on device arrays go through ``__array_function__`` and
  ``__array_ufunc__``: one CuPy implements (same module path and name) runs on the device;
  any other raises TypeError ("no implementation found", or ``__array__``'s refusal for the
  functions NumPy does not dispatch, such as ``numpy.lib.stride_tricks.as_strided``).
- Reductions and full integer indexing give 0-d device arrays, never host scalars.
- Freshly allocated memory (``empty``) holds garbage: here floats are NaN and integers their
  maximum, so code that reads memory it has not written fails visibly.
- ``x.data.ptr`` is the address of the first element, as CuPy's ``MemoryPointer``; the emulated
  cuBLAS (:mod:`._cublas`) finds the allocation behind an address with :func:`resolve_pointer`
  and refuses one that reaches outside it.

One rule is the emulation's own: an operation on floating arrays narrower than float64 that
produces float64 without an explicit ``dtype`` raises :class:`Float64PromotionError`
(float64 creeping into a float32 computation; CuPy would silently run it at float64 speed).
"""

from __future__ import annotations

import functools
import numbers
import warnings
from typing import TYPE_CHECKING, Any

import numpy

from . import _counters
from ._counters import record
from ._memory import MemoryPointer, pointer_to

if TYPE_CHECKING:
    import types
    from collections.abc import Sequence

_NAMESPACE: list[types.ModuleType] = []  # the emulated ``cupy`` module, registered by ._namespace when it is built


def _namespace() -> types.ModuleType:
    """Return the emulated ``cupy`` module (``._namespace`` imports this module, so it registers itself here)."""
    return _NAMESPACE[0]


__all__ = ["ndarray", "Float64PromotionError"]

_PY_SCALARS = (bool, int, float, complex)


class Float64PromotionError(TypeError):
    """An operation on float32 (or narrower) operands produced float64 without being asked to."""


# --------------------------------------------------------------------------- argument rules
def _unsupported(value, where: str) -> TypeError:
    # CuPy's wording (cupy/_core/_scalar.pyx, CScalar.__init__), then what it means here.
    return TypeError(
        f"Unsupported type {type(value)} in {where}: a kernel argument must be a device array or a scalar "
        f"(emulated CuPy; move host arrays with cupy.asarray first)"
    )


def operand(value: object, where: str) -> Any:
    """Return a kernel argument: the NumPy data of a device array, or a scalar; anything else raises TypeError."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, _PY_SCALARS) or isinstance(value, numpy.generic):
        return value
    raise _unsupported(value, where)


def device_args(obj: Any, where: str) -> Any:
    """Device arrays replaced by their data through lists, tuples and dicts; host arrays refused."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, numpy.ndarray):
        raise _unsupported(obj, where)
    if isinstance(obj, (list, tuple)):
        return type(obj)(device_args(o, where) for o in obj)
    if isinstance(obj, dict):
        return {k: device_args(v, where) for k, v in obj.items()}
    return obj


def index_args(key: Any, where: str) -> Any:
    """Return an index with device arrays replaced by their data.

    NumPy arrays and lists are copied to the device first (CuPy's ``_prepare_slice_list`` converts
    them with ``core.array``), counted as transfers.
    """
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, (numpy.ndarray, list)):
        record("h2d")
        return numpy.array(key)
    if isinstance(key, tuple):
        return tuple(index_args(k, where) for k in key)
    return key


def wrap(result: Any) -> Any:
    """NumPy results as device arrays: arrays wrapped, NumPy scalars as 0-d arrays, tuples element-wise."""
    if isinstance(result, numpy.ndarray):
        return ndarray._of(result)
    if isinstance(result, numpy.generic):
        return ndarray._of(numpy.asarray(result))
    if isinstance(result, tuple):
        return tuple(wrap(r) for r in result)
    return result


def check_precision(where: str, operands: Sequence[Any], result: Any, explicit_dtype: bool = False) -> None:
    """Raise :class:`Float64PromotionError` when float64 appears that nobody asked for.

    That is when ``result`` is float64 (or complex128) but a floating operand is narrower and no
    ``dtype`` was asked for. Python floats are weak scalars (NEP 50, as CuPy's
    ``numpy_dtype_from_pyscalar`` marks them) and never widen an array, so they do not count.
    """
    if explicit_dtype or _counters.float64_allowed():
        return
    dtype = getattr(result[0] if isinstance(result, tuple) else result, "dtype", None)
    if dtype is None or dtype.kind not in "fc" or dtype.itemsize < (8 if dtype.kind == "f" else 16):
        return
    narrow = [
        str(o.dtype)
        for o in operands
        if isinstance(o, (numpy.ndarray, numpy.generic)) and o.dtype.kind in "fc" and o.dtype.itemsize < dtype.itemsize
    ]
    if narrow:
        raise Float64PromotionError(
            f"{where}: {dtype} result from {', '.join(narrow)} operands without an explicit dtype "
            f"(float64 crept into a narrower float computation; cast with astype if it is meant)"
        )


def poison(a: numpy.ndarray) -> numpy.ndarray:
    """Fill freshly allocated ``a`` with values that show reads of unwritten memory: NaN, or the integer maximum."""
    if a.dtype.kind in "fc":
        a.fill(numpy.nan)
    elif a.dtype.kind in "iu":
        a.fill(numpy.iinfo(a.dtype).max)
    return a


def _shares(result, a) -> bool:
    return isinstance(result, numpy.ndarray) and (result.size == 0 or numpy.may_share_memory(result, a))


# --------------------------------------------------------------------------- the array
def _view_method(name):
    """Make a method that returns a view when it can (reshape, transpose, ...); a copy when it cannot is one launch."""

    def method(self, *args, **kwargs):
        a = self._a
        result = getattr(a, name)(*device_args(args, name), **device_args(kwargs, name))
        if not _shares(result, a):
            record("copy")
        return wrap(result)

    method.__name__ = name
    return method


def _computing_method(name, kind):
    """Make a method that computes a new array (a reduction, a copy): one launch of ``kind``."""

    def method(self, *args, **kwargs):
        out = kwargs.get("out")  # a device array, returned as itself
        result = getattr(self._a, name)(*device_args(args, f"ndarray.{name}"), **device_args(kwargs, name))
        check_precision(f"ndarray.{name}", (self._a,), result, explicit_dtype=kwargs.get("dtype") is not None)
        record(kind)
        return out if out is not None else wrap(result)

    method.__name__ = name
    return method


def _binary_operator(name, ufunc_name, reflected=False):
    def op(self, other):
        ufunc = getattr(numpy, ufunc_name)  # dispatches to the emulated ufunc through __array_ufunc__, as CuPy
        return ufunc(other, self) if reflected else ufunc(self, other)

    op.__name__ = name
    return op


def _inplace_operator(name, ufunc_name):
    def op(self, other):
        return getattr(_namespace(), ufunc_name)(self, other, out=self)

    op.__name__ = name
    return op


def _sync(self) -> numpy.ndarray:
    """Return the data copied to the host: a device-to-host transfer the host waits for."""
    record("d2h")
    record("sync")
    return self._a


class ndarray:
    """An array in emulated device memory (see the module docstring for how it differs from NumPy).

    ``ndarray(shape, dtype=float, order='C')`` allocates uninitialised memory, as ``cupy.ndarray``.
    """

    __slots__ = ("_a", "__weakref__")
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("emulated CuPy: ndarray(memptr=..., strides=...) is not emulated")
        self._a = poison(numpy.empty(shape, dtype=dtype, order=order))

    @classmethod
    def _of(cls, a: numpy.ndarray) -> ndarray:
        obj = object.__new__(cls)
        obj._a = a
        return obj

    # -- attributes
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._of(self._a.T))

    @property
    def data(self) -> MemoryPointer:
        """The address of the first element (``.data.ptr``), as CuPy's ``MemoryPointer``."""
        return pointer_to(self._a)

    mT = property(lambda self: ndarray._of(self._a.mT))

    # -- views (no launch) and copies
    reshape = _view_method("reshape")
    transpose = _view_method("transpose")
    swapaxes = _view_method("swapaxes")
    squeeze = _view_method("squeeze")
    ravel = _view_method("ravel")
    view = _view_method("view")
    diagonal = _view_method("diagonal")
    copy = _computing_method("copy", "copy")
    flatten = _computing_method("flatten", "copy")
    take = _computing_method("take", "gather")
    repeat = _computing_method("repeat", "copy")
    clip = _computing_method("clip", "elementwise")
    round = _computing_method("round", "elementwise")
    conj = _computing_method("conj", "elementwise")
    # -- reductions
    sum = _computing_method("sum", "reduction")
    prod = _computing_method("prod", "reduction")
    mean = _computing_method("mean", "reduction")
    var = _computing_method("var", "reduction")
    std = _computing_method("std", "reduction")
    max = _computing_method("max", "reduction")
    min = _computing_method("min", "reduction")
    argmax = _computing_method("argmax", "reduction")
    argmin = _computing_method("argmin", "reduction")
    all = _computing_method("all", "reduction")
    any = _computing_method("any", "reduction")
    cumsum = _computing_method("cumsum", "reduction")

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        """Cast; with ``copy=False`` and the same dtype, the array itself (no launch)."""
        result = self._a.astype(dtype, order=order, casting="unsafe" if casting is None else casting, copy=copy)
        if result is self._a:
            return self
        record("copy")
        return ndarray._of(result)

    def fill(self, value):
        self._a.fill(operand(value, "ndarray.fill"))
        record("fill")

    def dot(self, b, out=None):
        cupy = _namespace()
        return cupy.dot(self, b, out=out)

    # -- to the host: each one a synchronisation
    def get(self, stream=None, order="C", out=None, blocking=True):
        """Return a NumPy copy of the array (a device-to-host transfer and a synchronisation)."""
        data = _sync(self)
        if out is not None:
            if not isinstance(out, numpy.ndarray):
                raise TypeError(f"out must be a numpy.ndarray, got {type(out)}")
            numpy.copyto(out, data)
            return out
        return numpy.array(data, order=order, copy=True)

    def set(self, arr, stream=None):
        """Copy the host array ``arr`` into this array (a host-to-device transfer)."""
        if not isinstance(arr, numpy.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError(f"Shape/dtype mismatch: {arr.shape}/{arr.dtype} vs {self.shape}/{self.dtype}")
        record("h2d")
        self._a[...] = arr

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return _sync(self).item()

    def tolist(self):
        return _sync(self).tolist()

    def tobytes(self, order="C"):
        return _sync(self).tobytes(order)

    def __int__(self):
        return int(_sync(self))

    def __float__(self):
        return float(_sync(self))

    def __complex__(self):
        return complex(_sync(self))

    def __bool__(self):
        # CuPy's rules (core.pyx, __nonzero__): empty warns and is False, one element is read back, more refuse.
        if self.size == 0:
            warnings.warn(
                "The truth value of an empty array is ambiguous. Returning False, but in future this will "
                "result in an error. Use `array.size > 0` to check that an array is not empty.",
                DeprecationWarning,
                stacklevel=2,
            )
            return False
        if self.size == 1:
            return bool(_sync(self))
        raise ValueError("The truth value of an array with more than one element is ambiguous. Use a.any() or a.all()")

    def __repr__(self):
        return repr(_sync(self))

    def __str__(self):
        return str(_sync(self))

    def __format__(self, spec):
        return format(_sync(self), spec)

    def __reduce__(self):
        return _from_host, (self.get(),)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __array__(self, dtype=None, copy=None):
        # CuPy's refusal, word for word (core.pyx, ndarray.__array__).
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy "
            "array explicitly."
        )

    # -- containers
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key):
        a = self._a
        key = index_args(key, "indexing")
        result = a[key]
        if isinstance(result, numpy.generic):  # CuPy gives a 0-d view, not a host scalar
            result = a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
        if not _shares(result, a):
            record("gather")
        return ndarray._of(result)

    def __setitem__(self, key, value):
        key = index_args(key, "indexing")
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, (numpy.ndarray, list, tuple)):
            record("h2d")  # CuPy copies it to the device (core.array) before the kernel
            value = numpy.array(value)
        elif not (isinstance(value, _PY_SCALARS) or isinstance(value, numpy.generic)):
            raise _unsupported(value, "assignment")
        self._a[key] = value
        if _fancy(key):
            record("scatter")
        else:
            record("fill" if numpy.ndim(value) == 0 else "copy")

    # -- NumPy's protocols, as CuPy implements them (core.pyx)
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        cupy = _namespace()
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = out[0]
            inout = inputs + out
        else:
            inout = inputs
        if method not in ("__call__", "outer", "at", "reduce", "accumulate", "reduceat"):
            return NotImplemented
        try:  # the namespace's function of the same name (a ufunc, or matmul), as CuPy looks it up
            func = getattr(cupy, ufunc.__name__)
            if method != "__call__":
                func = getattr(func, method)
        except AttributeError:
            return NotImplemented
        for x in inout:
            if not (isinstance(x, (ndarray, numpy.ndarray, numpy.generic)) or isinstance(x, _PY_SCALARS)):
                return NotImplemented
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        cupy = _namespace()
        try:
            module = functools.reduce(getattr, func.__module__.split(".")[1:], cupy)
            emulated = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        if emulated is func or not all(issubclass(t, (ndarray, numpy.ndarray)) for t in types):
            return NotImplemented
        return emulated(*args, **kwargs)

    # -- arithmetic, through the ufuncs as CuPy does
    __neg__ = lambda self: numpy.negative(self)  # noqa: E731
    __pos__ = lambda self: numpy.positive(self)  # noqa: E731
    __abs__ = lambda self: numpy.absolute(self)  # noqa: E731
    __invert__ = lambda self: numpy.invert(self)  # noqa: E731

    def __matmul__(self, other):
        cupy = _namespace()
        return cupy.matmul(self, other)

    def __rmatmul__(self, other):
        cupy = _namespace()
        return cupy.matmul(other, self)


_OPERATORS = {
    "add": "add",
    "sub": "subtract",
    "mul": "multiply",
    "truediv": "true_divide",
    "floordiv": "floor_divide",
    "mod": "remainder",
    "pow": "power",
    "and": "bitwise_and",
    "or": "bitwise_or",
    "xor": "bitwise_xor",
    "lshift": "left_shift",
    "rshift": "right_shift",
}
for _op, _name in _OPERATORS.items():
    setattr(ndarray, f"__{_op}__", _binary_operator(f"__{_op}__", _name))
    setattr(ndarray, f"__r{_op}__", _binary_operator(f"__r{_op}__", _name, reflected=True))
    setattr(ndarray, f"__i{_op}__", _inplace_operator(f"__i{_op}__", _name))
for _op, _name in {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater"}.items():
    setattr(ndarray, f"__{_op}__", _binary_operator(f"__{_op}__", _name))
ndarray.__ge__ = _binary_operator("__ge__", "greater_equal")
del _op, _name


def _fancy(key) -> bool:
    """Whether an index holds an array (advanced indexing: a gather or scatter kernel)."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, numpy.ndarray) and k.ndim > 0 for k in keys)


def _from_host(host: numpy.ndarray) -> ndarray:
    """Copy a host array to the device: one host-to-device transfer."""
    if not isinstance(host, (numpy.ndarray, numpy.generic, numbers.Number, list, tuple)):
        raise TypeError(f"cannot copy a {type(host).__name__} to the device")
    record("h2d")
    data = numpy.array(host, copy=True)
    if not data.dtype.isnative:  # device arrays have no byte-order flag
        data = data.astype(data.dtype.newbyteorder("="))
    return ndarray._of(data)
