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
  maximum (:func:`._memory.poison`), so code that reads memory it has not written fails visibly.
- ``x.data.ptr`` is the address of the first element, as CuPy's ``MemoryPointer``; the emulated
  cuBLAS (:mod:`._cublas`) finds the allocation behind an address with :func:`resolve_pointer`
  and refuses one that reaches outside it.

One rule is the emulation's own: float64 from narrower floats without an explicit ``dtype``
raises :class:`._precision.Float64PromotionError` (see :mod:`._precision`).
"""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

import numpy

from ._counters import record
from ._dispatch import array_function, array_ufunc, binary_operator, namespace, operators, unary_operator
from ._memory import MemoryPointer, pointer_to, poison
from ._precision import check_precision

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import SupportsIndex, TypeAlias

    from numpy.typing import DTypeLike, NDArray

    Scalar: TypeAlias = bool | int | float | complex | numpy.generic
    Operand: TypeAlias = NDArray[Any] | Scalar  # what a kernel takes: a device array's data, or a scalar
    ShapeLike: TypeAlias = SupportsIndex | Sequence[SupportsIndex]
    Casting: TypeAlias = Literal["no", "equiv", "safe", "same_kind", "unsafe"]
    Order: TypeAlias = Literal["K", "A", "C", "F"]
    OrderCF: TypeAlias = Literal["C", "F"]

    class Flags(Protocol):
        """The layout flags callers read (NumPy's ``flagsobj`` class is not public; CuPy's ``Flags`` has these)."""

        @property
        def c_contiguous(self) -> bool: ...
        @property
        def f_contiguous(self) -> bool: ...
        @property
        def owndata(self) -> bool: ...


__all__ = ["ndarray"]

_PY_SCALARS = (bool, int, float, complex)


# --------------------------------------------------------------------------- argument rules
def _unsupported(value: object, where: str) -> TypeError:
    # CuPy's wording (cupy/_core/_scalar.pyx, CScalar.__init__), then what it means here.
    return TypeError(
        f"Unsupported type {type(value)} in {where}: a kernel argument must be a device array or a scalar "
        f"(emulated CuPy; move host arrays with cupy.asarray first)"
    )


def operand(value: object, where: str) -> Operand:
    """Return a kernel argument: the NumPy data of a device array, or a scalar; anything else raises TypeError."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, _PY_SCALARS) or isinstance(value, numpy.generic):
        return value
    raise _unsupported(value, where)


def device_args(obj: object, where: str) -> Any:
    """Device arrays replaced by their data through lists, tuples and dicts; host arrays refused.

    Returns ``obj``'s structure with NumPy arrays in it (``Any``: whatever the caller passed, as CuPy takes it).
    """
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, numpy.ndarray):
        raise _unsupported(obj, where)
    if isinstance(obj, (list, tuple)):
        return type(obj)(device_args(o, where) for o in obj)
    if isinstance(obj, dict):
        return {k: device_args(v, where) for k, v in obj.items()}
    return obj


def index_args(key: object, where: str) -> Any:
    """Return an index (``Any``: any of NumPy's index forms) with device arrays replaced by their data.

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


def wrap(result: object) -> Any:
    """NumPy results as device arrays: arrays wrapped, NumPy scalars as 0-d arrays, tuples element-wise.

    ``Any``: a device array, a tuple of them, or ``result`` as it was, following what NumPy returned.
    """
    if isinstance(result, (numpy.ndarray, numpy.generic)):
        return wrap_array(result)
    if isinstance(result, tuple):
        return tuple(wrap(r) for r in result)
    return result


def wrap_array(result: NDArray[Any] | numpy.generic) -> ndarray:
    """Return a NumPy array as a device array, a NumPy scalar (a reduction's result) as a 0-d one."""
    return ndarray._of(result if isinstance(result, numpy.ndarray) else numpy.asarray(result))


def _shares(result: object, a: NDArray[Any]) -> bool:
    return isinstance(result, numpy.ndarray) and (result.size == 0 or numpy.may_share_memory(result, a))


# --------------------------------------------------------------------------- the array
def _view_method(name: str) -> Callable[..., ndarray]:
    """Make a method that returns a view when it can (reshape, transpose, ...); a copy when it cannot is one launch."""

    def method(self: ndarray, *args: Any, **kwargs: Any) -> ndarray:
        a = self._a
        result: NDArray[Any] = getattr(a, name)(*device_args(args, name), **device_args(kwargs, name))
        if not _shares(result, a):
            record("copy")
        return wrap_array(result)

    method.__name__ = name
    return method


def _computing_method(name: str, kind: str) -> Callable[..., ndarray]:
    """Make a method that computes a new array (a reduction, a copy): one launch of ``kind``."""

    def method(self: ndarray, *args: Any, **kwargs: Any) -> ndarray:
        out: ndarray | None = kwargs.get("out")  # a device array, returned as itself
        where = f"ndarray.{name}"
        result: NDArray[Any] | numpy.generic = getattr(self._a, name)(
            *device_args(args, where), **device_args(kwargs, name)
        )
        check_precision(where, (self._a,), result, explicit_dtype=kwargs.get("dtype") is not None)
        record(kind)
        return out if out is not None else wrap_array(result)

    method.__name__ = name
    return method


def _sync(self: ndarray) -> NDArray[Any]:
    """Return the data copied to the host: a device-to-host transfer the host waits for."""
    record("d2h")
    record("sync")
    return self._a


class ndarray:
    """An array in emulated device memory (see the module docstring for how it differs from NumPy).

    ``ndarray(shape, dtype=float, order='C')`` allocates uninitialised memory, as ``cupy.ndarray``.
    """

    __slots__ = ("_a", "__weakref__")
    __hash__ = None  # type: ignore[assignment]  # unhashable, as NumPy's and CuPy's arrays (typeshed's own spelling)
    _a: NDArray[Any]

    def __init__(
        self,
        shape: ShapeLike,
        dtype: DTypeLike = float,
        memptr: object = None,
        strides: object = None,
        order: OrderCF = "C",
    ) -> None:
        if memptr is not None or strides is not None:
            raise NotImplementedError("emulated CuPy: ndarray(memptr=..., strides=...) is not emulated")
        self._a = poison(numpy.empty(shape, dtype=dtype, order=order))

    @classmethod
    def _of(cls, a: NDArray[Any]) -> ndarray:
        obj = object.__new__(cls)
        obj._a = a
        return obj

    # -- attributes
    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def dtype(self) -> numpy.dtype[Any]:
        return self._a.dtype

    @property
    def itemsize(self) -> int:
        return self._a.itemsize

    @property
    def nbytes(self) -> int:
        return self._a.nbytes

    @property
    def strides(self) -> tuple[int, ...]:
        return self._a.strides

    @property
    def flags(self) -> Flags:
        return self._a.flags

    @property
    def T(self) -> ndarray:
        return ndarray._of(self._a.T)

    @property
    def data(self) -> MemoryPointer:
        """The address of the first element (``.data.ptr``), as CuPy's ``MemoryPointer``."""
        return pointer_to(self._a)

    @property
    def mT(self) -> ndarray:
        return ndarray._of(self._a.mT)

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

    def astype(
        self,
        dtype: DTypeLike,
        order: Order = "K",
        casting: Casting | None = None,
        subok: object = None,
        copy: bool = True,
    ) -> ndarray:
        """Cast; with ``copy=False`` and the same dtype, the array itself (no launch)."""
        result = self._a.astype(dtype, order=order, casting="unsafe" if casting is None else casting, copy=copy)
        if result is self._a:
            return self
        record("copy")
        return ndarray._of(result)

    def fill(self, value: object) -> None:
        self._a.fill(operand(value, "ndarray.fill"))
        record("fill")

    def dot(self, b: object, out: ndarray | None = None) -> ndarray:
        product: ndarray = namespace().dot(self, b, out=out)
        return product

    # -- to the host: each one a synchronisation
    def get(
        self, stream: object = None, order: Order = "C", out: NDArray[Any] | None = None, blocking: bool = True
    ) -> NDArray[Any]:
        """Return a NumPy copy of the array (a device-to-host transfer and a synchronisation)."""
        data = _sync(self)
        if out is not None:
            if not isinstance(out, numpy.ndarray):
                raise TypeError(f"out must be a numpy.ndarray, got {type(out)}")
            numpy.copyto(out, data)
            return out
        return numpy.array(data, order=order, copy=True)

    def set(self, arr: object, stream: object = None) -> None:
        """Copy the host array ``arr`` into this array (a host-to-device transfer)."""
        if not isinstance(arr, numpy.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError(f"Shape/dtype mismatch: {arr.shape}/{arr.dtype} vs {self.shape}/{self.dtype}")
        record("h2d")
        self._a[...] = arr

    def item(self) -> Any:  # a Python scalar of the dtype's kind, as NumPy's ``item`` (typed Any there too)
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return _sync(self).item()

    def tolist(self) -> Any:  # nested lists of Python scalars, as NumPy's ``tolist``
        return _sync(self).tolist()

    def tobytes(self, order: Order = "C") -> bytes:
        return _sync(self).tobytes(order)

    def __int__(self) -> int:
        return int(_sync(self))

    def __float__(self) -> float:
        return float(_sync(self))

    def __complex__(self) -> complex:
        return complex(_sync(self))

    def __bool__(self) -> bool:
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

    def __repr__(self) -> str:
        return repr(_sync(self))

    def __str__(self) -> str:
        return str(_sync(self))

    def __format__(self, spec: str) -> str:
        return format(_sync(self), spec)

    def __reduce__(self) -> tuple[Callable[[object], ndarray], tuple[NDArray[Any]]]:
        return _from_host, (self.get(),)

    def __copy__(self) -> ndarray:
        return self.copy()

    def __deepcopy__(self, memo: object) -> ndarray:
        return self.copy()

    def __array__(self, dtype: object = None, copy: object = None) -> NoReturn:
        # CuPy's refusal, word for word (core.pyx, ndarray.__array__).
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy "
            "array explicitly."
        )

    # -- containers
    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self) -> Iterator[ndarray]:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key: object) -> ndarray:
        a = self._a
        index = index_args(key, "indexing")
        result = a[index]
        if isinstance(result, numpy.generic):  # CuPy gives a 0-d view, not a host scalar
            result = a[(index if isinstance(index, tuple) else (index,)) + (Ellipsis,)]
        if not _shares(result, a):
            record("gather")
        return ndarray._of(result)

    def __setitem__(self, key: object, value: object) -> None:
        index = index_args(key, "indexing")
        if isinstance(value, (numpy.ndarray, list, tuple)):
            record("h2d")  # CuPy copies it to the device (core.array) before the kernel
            data: Operand = numpy.array(value)
        else:  # a device array's data, or a scalar; anything else refused
            data = operand(value, "assignment")
        self._a[index] = data
        if _fancy(index):
            record("scatter")
        else:
            record("fill" if numpy.ndim(data) == 0 else "copy")

    # -- NumPy's protocols and the operators, as CuPy implements them (core.pyx): see ._dispatch
    __array_ufunc__ = array_ufunc
    __array_function__ = array_function
    __neg__ = unary_operator("__neg__", "negative")
    __pos__ = unary_operator("__pos__", "positive")
    __abs__ = unary_operator("__abs__", "absolute")
    __invert__ = unary_operator("__invert__", "invert")
    __add__, __radd__, __iadd__ = operators("add", "add")
    __sub__, __rsub__, __isub__ = operators("sub", "subtract")
    __mul__, __rmul__, __imul__ = operators("mul", "multiply")
    __truediv__, __rtruediv__, __itruediv__ = operators("truediv", "true_divide")
    __floordiv__, __rfloordiv__, __ifloordiv__ = operators("floordiv", "floor_divide")
    __mod__, __rmod__, __imod__ = operators("mod", "remainder")
    __pow__, __rpow__, __ipow__ = operators("pow", "power")
    __and__, __rand__, __iand__ = operators("and", "bitwise_and")
    __or__, __ror__, __ior__ = operators("or", "bitwise_or")
    __xor__, __rxor__, __ixor__ = operators("xor", "bitwise_xor")
    __lshift__, __rlshift__, __ilshift__ = operators("lshift", "left_shift")
    __rshift__, __rrshift__, __irshift__ = operators("rshift", "right_shift")
    __eq__ = binary_operator("__eq__", "equal")  # type: ignore[assignment]  # element-wise, not object's bool
    __ne__ = binary_operator("__ne__", "not_equal")  # type: ignore[assignment]  # element-wise, not object's bool
    __lt__ = binary_operator("__lt__", "less")
    __le__ = binary_operator("__le__", "less_equal")
    __gt__ = binary_operator("__gt__", "greater")
    __ge__ = binary_operator("__ge__", "greater_equal")

    def __matmul__(self, other: object) -> ndarray:
        product: ndarray = namespace().matmul(self, other)
        return product

    def __rmatmul__(self, other: object) -> ndarray:
        product: ndarray = namespace().matmul(other, self)
        return product


def _fancy(key: object) -> bool:
    """Whether an index holds an array (advanced indexing: a gather or scatter kernel)."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, numpy.ndarray) and k.ndim > 0 for k in keys)


def _from_host(host: object) -> ndarray:
    """Copy a host array to the device: one host-to-device transfer."""
    if not isinstance(host, (numpy.ndarray, numpy.generic, numbers.Number, list, tuple)):
        raise TypeError(f"cannot copy a {type(host).__name__} to the device")
    record("h2d")
    data = numpy.array(host, copy=True)
    if not data.dtype.isnative:  # device arrays have no byte-order flag
        data = data.astype(data.dtype.newbyteorder("="))
    return ndarray._of(data)
