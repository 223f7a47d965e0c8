"""The emulated ``cupy`` namespace: the functions npresnet calls through ``xp``, with CuPy's signatures.

Each function keeps the parameter list of its CuPy 14 counterpart (checked against the
installed CuPy by ``tests/emulation/test_emulated_cupy.py``), so a NumPy-only argument fails here as it
would on a GPU. Host arrays are accepted only where CuPy copies them to the device
(``asarray``, ``array``, assignment, ``outer``) and refused in kernels.

The namespace is a module object named ``"cupy"``: code that recognises CuPy by its
module name (``npresnet.workspace``, the fused path's profiler) takes its CuPy branch,
reading the emulated device's memory (:data:`._device.DEVICE_TOTAL_BYTES`) and synchronising
through ``cupy.cuda.Device().synchronize()`` (:mod:`._device`).
"""

from __future__ import annotations

import builtins
import math
import types
from typing import TYPE_CHECKING, Any

import numpy

from . import _dispatch, _ufunc
from ._array import _from_host, device_args, ndarray, operand, wrap_array
from ._counters import record
from ._device import cuda, get_default_memory_pool, is_available, make_module
from ._kernels import RawModule
from ._memory import poison
from ._precision import check_precision

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

    from numpy.typing import DTypeLike, NDArray

    from ._array import Casting, Order, OrderCF, ShapeLike

    Axis: TypeAlias = int | tuple[int, ...] | None

__all__ = ["cupy"]


def _array_operand(value: object, where: str) -> NDArray[Any]:
    """Return a kernel argument (:func:`._array.operand`) as a NumPy array, as a NumPy function would make it."""
    return numpy.asarray(operand(value, where))


# --------------------------------------------------------------------------- moving data
def asarray(
    a: object,
    dtype: DTypeLike | None = None,
    order: Order | None = None,
    *,
    copy: bool | None = None,
    blocking: bool = False,
) -> ndarray:
    """Return a device array: ``a`` itself when it is one (cast if ``dtype`` differs), else a host-to-device copy."""
    if isinstance(a, ndarray):
        if copy:
            return a.astype(a.dtype if dtype is None else dtype, order=order or "K", copy=True)
        return a if dtype is None else a.astype(dtype, copy=False)
    device = _from_host(a)
    return device if dtype is None else device.astype(dtype, copy=False)


def array(
    obj: object,
    dtype: DTypeLike | None = None,
    copy: bool = True,
    order: Order = "K",
    subok: bool = False,
    ndmin: int = 0,
    *,
    blocking: bool = False,
) -> ndarray:
    """Return a device array copied from ``obj`` (a host array, a list, or a device array)."""
    if isinstance(obj, ndarray):
        out = obj.astype(obj.dtype if dtype is None else dtype, order=order, copy=copy)
    else:
        out = asarray(obj, dtype=dtype)
    while out.ndim < ndmin:
        out = out[None]
    return out


def asnumpy(
    a: object, stream: object = None, order: Order = "C", out: NDArray[Any] | None = None, *, blocking: bool = True
) -> NDArray[Any]:
    """Return a NumPy array: a device array copied to the host (a synchronisation), else ``numpy.asarray``."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    return numpy.asarray(a, order=order)


def ascontiguousarray(a: object, dtype: DTypeLike | None = None) -> ndarray:
    if not isinstance(a, ndarray):
        raise TypeError(f"ascontiguousarray: expected a device array, got {type(a)}")
    if a.flags.c_contiguous and (dtype is None or numpy.dtype(dtype) == a.dtype):
        return a
    record("copy")
    return ndarray._of(numpy.ascontiguousarray(a._a, dtype=dtype))


def get_array_module(*args: object) -> types.ModuleType:
    """Return the emulated namespace if any argument is an emulated array, else ``numpy``."""
    # builtins.any: this module's own ``any`` is the reduction
    return cupy if builtins.any(isinstance(a, ndarray) for a in args) else numpy


# --------------------------------------------------------------------------- creation
def empty(shape: ShapeLike, dtype: DTypeLike = float, order: OrderCF = "C") -> ndarray:
    """Uninitialised memory (no launch): poisoned with NaN / the integer maximum (see the array module)."""
    return ndarray._of(poison(numpy.empty(shape, dtype=dtype, order=order)))


def _filled(make: Callable[..., NDArray[Any]], *args: Any, **kwargs: Any) -> ndarray:
    result = make(*args, **kwargs)
    record("fill")
    return ndarray._of(result)


def zeros(shape: ShapeLike, dtype: DTypeLike = float, order: OrderCF = "C") -> ndarray:
    return _filled(numpy.zeros, shape, dtype=dtype, order=order)


def ones(shape: ShapeLike, dtype: DTypeLike = float, order: OrderCF = "C") -> ndarray:
    return _filled(numpy.ones, shape, dtype=dtype, order=order)


def full(shape: ShapeLike, fill_value: object, dtype: DTypeLike | None = None, order: OrderCF = "C") -> ndarray:
    return _filled(numpy.full, shape, operand(fill_value, "cupy.full"), dtype=dtype, order=order)


def _like(a: object, dtype: DTypeLike | None, shape: ShapeLike | None) -> tuple[ShapeLike, DTypeLike]:
    if not isinstance(a, ndarray):
        raise TypeError(f"expected a device array, got {type(a)}")
    return (a.shape if shape is None else shape), (a.dtype if dtype is None else dtype)


def empty_like(
    prototype: object,
    dtype: DTypeLike | None = None,
    order: Order = "K",
    subok: object = None,
    shape: ShapeLike | None = None,
) -> ndarray:
    return empty(*_like(prototype, dtype, shape))


def zeros_like(
    a: object, dtype: DTypeLike | None = None, order: Order = "K", subok: object = None, shape: ShapeLike | None = None
) -> ndarray:
    return zeros(*_like(a, dtype, shape))


def ones_like(
    a: object, dtype: DTypeLike | None = None, order: Order = "K", subok: object = None, shape: ShapeLike | None = None
) -> ndarray:
    return ones(*_like(a, dtype, shape))


def full_like(
    a: object,
    fill_value: object,
    dtype: DTypeLike | None = None,
    order: Order = "K",
    subok: object = None,
    shape: ShapeLike | None = None,
) -> ndarray:
    full_shape, full_dtype = _like(a, dtype, shape)
    return full(full_shape, fill_value, full_dtype)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: DTypeLike | None = None) -> ndarray:
    if stop is None:
        start, stop = 0, start
    result = numpy.arange(start, stop, step, dtype=dtype)
    record("elementwise")
    return ndarray._of(result)


# --------------------------------------------------------------------------- products
def matmul(
    *args: object,
    axes: object = None,
    axis: object = None,
    keepdims: bool = False,
    casting: Casting = "same_kind",
    dtype: DTypeLike | None = None,
    signature: object = None,
    order: Order = "K",
    out: object = None,
) -> ndarray:
    """Compute ``a @ b`` (batched over leading axes): one GEMM launch, as one cuBLAS (strided-batched) call."""
    if axes is not None or axis is not None or keepdims or signature is not None or order != "K":
        raise NotImplementedError("emulated CuPy: matmul's axes, axis, keepdims, signature and order are not emulated")
    if len(args) != 2:
        raise TypeError(f"matmul takes 2 operands, got {len(args)}")
    a, b = (operand(x, "cupy.matmul") for x in args)
    if out is not None and not isinstance(out, ndarray):
        raise TypeError(f"cupy.matmul: out must be a device array, got {type(out)}")
    if out is None:
        result = numpy.matmul(a, b, dtype=dtype, casting=casting)
    else:
        result = numpy.matmul(a, b, out=out._a, dtype=dtype, casting=casting)
    check_precision("cupy.matmul", (a, b), result, explicit_dtype=dtype is not None)
    record("gemm")
    return out if out is not None else wrap_array(result)


def dot(a: object, b: object, out: ndarray | None = None) -> ndarray:
    x, y = operand(a, "cupy.dot"), operand(b, "cupy.dot")
    result = numpy.dot(x, y, out=None if out is None else device_args(out, "cupy.dot"))
    check_precision("cupy.dot", (x, y), result)
    record("gemm")
    return out if out is not None else wrap_array(result)


# --------------------------------------------------------------------------- selection, copies
def where(condition: object, x: object = None, y: object = None) -> ndarray | tuple[ndarray, ...]:
    if x is None and y is None:
        return nonzero(condition)
    if x is None or y is None:
        raise ValueError("Must provide with both x and y or neither.")
    args = [operand(v, "cupy.where") for v in (condition, x, y)]
    result = numpy.where(*args)
    check_precision("cupy.where", args[1:], result)
    record("elementwise")
    return wrap_array(result)


def nonzero(a: object) -> tuple[ndarray, ...]:
    """Return the non-zero elements' indices; CuPy reads their count back to size the result (a synchronisation)."""
    data = _array_operand(a, "cupy.nonzero")
    record("reduction")
    record("sync")
    record("gather")
    return tuple(wrap_array(indices) for indices in numpy.nonzero(data))


def copyto(dst: object, src: object, casting: Casting = "same_kind", where: object = None) -> None:
    """Copy ``src`` into ``dst`` (broadcasting), where ``where`` is true; a host ``src`` only as a one-element array."""
    if not isinstance(dst, ndarray):
        raise TypeError(f"copyto: dst must be a device array, got {type(dst)}")
    if isinstance(src, numpy.ndarray):  # CuPy (cupy/_manipulation/basic.py) accepts only a scalar's worth
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        src = src.squeeze()[()]
    mask = None if where is None else operand(where, "cupy.copyto")
    numpy.copyto(dst._a, operand(src, "cupy.copyto"), casting=casting, where=True if mask is None else mask)
    record("copy")


def broadcast_to(array: object, shape: int | Sequence[int]) -> ndarray:
    return ndarray._of(numpy.broadcast_to(_array_operand(array, "cupy.broadcast_to"), shape))


def _join(
    join: Callable[..., NDArray[Any]],
    name: str,
    tup: Sequence[object],
    axis: int | None,
    out: ndarray | None,
    dtype: DTypeLike | None,
    casting: Casting,
) -> ndarray:
    arrays = device_args(list(tup), f"cupy.{name}")
    result = join(arrays, axis=axis, dtype=dtype, casting=casting)
    check_precision(f"cupy.{name}", arrays, result, explicit_dtype=dtype is not None)
    record("copy")
    if out is not None:
        copyto(out, ndarray._of(result))
        return out
    return ndarray._of(result)


def concatenate(
    tup: Sequence[object],
    axis: int | None = 0,
    out: ndarray | None = None,
    *,
    dtype: DTypeLike | None = None,
    casting: Casting = "same_kind",
) -> ndarray:
    return _join(numpy.concatenate, "concatenate", tup, axis, out, dtype, casting)


def stack(
    tup: Sequence[object],
    axis: int = 0,
    out: ndarray | None = None,
    *,
    dtype: DTypeLike | None = None,
    casting: Casting = "same_kind",
) -> ndarray:
    return _join(numpy.stack, "stack", tup, axis, out, dtype, casting)


def bincount(x: object, weights: ndarray | None = None, minlength: int | None = None) -> ndarray:
    """Count the occurrences (or sum the weights) of each non-negative integer.

    Follows CuPy's implementation step by step: it checks the values and sizes the result on the
    host, two synchronisations (``cupy/_statistics/histogram.py``: ``(x < 0).any()`` and
    ``int(cupy.max(x))``).
    """
    if not isinstance(x, ndarray):
        raise TypeError(f"Unsupported type {type(x)} in cupy.bincount")
    if x.ndim != 1:
        raise ValueError("object too deep for desired array" if x.ndim > 1 else "object of too small depth")
    if x.dtype.kind == "f":
        raise TypeError("x must be int array")
    if (x < 0).any():  # a synchronisation, as in CuPy
        raise ValueError("The first argument of bincount must be non-negative")
    if weights is not None and x.shape != weights.shape:
        raise ValueError("The weights and list don't have the same length.")
    if x.size == 0:
        return zeros((0 if minlength is None else int(minlength),), dtype=numpy.intp)
    size = max(int(x.max()) + 1, 0 if minlength is None else int(minlength))  # a synchronisation
    w = None if weights is None else operand(weights, "cupy.bincount")
    result = numpy.bincount(x._a, weights=w, minlength=size)
    check_precision("cupy.bincount", () if w is None else (w,), result)
    record("fill")
    record("scatter")
    return ndarray._of(result)


# --------------------------------------------------------------------------- reductions as functions
def sum(
    a: ndarray, axis: Axis = None, dtype: DTypeLike | None = None, out: ndarray | None = None, keepdims: bool = False
) -> ndarray:
    return a.sum(axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def mean(
    a: ndarray, axis: Axis = None, dtype: DTypeLike | None = None, out: ndarray | None = None, keepdims: bool = False
) -> ndarray:
    return a.mean(axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def amax(a: ndarray, axis: Axis = None, out: ndarray | None = None, keepdims: bool = False) -> ndarray:
    return a.max(axis=axis, out=out, keepdims=keepdims)


def amin(a: ndarray, axis: Axis = None, out: ndarray | None = None, keepdims: bool = False) -> ndarray:
    return a.min(axis=axis, out=out, keepdims=keepdims)


def all(a: ndarray, axis: Axis = None, out: ndarray | None = None, keepdims: bool = False) -> ndarray:
    return a.all(axis=axis, out=out, keepdims=keepdims)


def any(a: ndarray, axis: Axis = None, out: ndarray | None = None, keepdims: bool = False) -> ndarray:
    return a.any(axis=axis, out=out, keepdims=keepdims)


def reshape(a: ndarray, newshape: ShapeLike, order: Order = "C", *, copy: bool | None = None) -> ndarray:
    return a.reshape(newshape, order=order, copy=copy)


def transpose(a: ndarray, axes: Sequence[int] | None = None) -> ndarray:
    return a.transpose(axes)


# --------------------------------------------------------------------------- lib.stride_tricks
def as_strided(x: object, shape: Sequence[int] | None = None, strides: Sequence[int] | None = None) -> ndarray:
    """Return a view of ``x`` with the given shape and byte strides (no launch)."""
    return ndarray._of(numpy.lib.stride_tricks.as_strided(_array_operand(x, "as_strided"), shape, strides))


def sliding_window_view(
    x: object,
    window_shape: int | Sequence[int],
    axis: int | tuple[int, ...] | None = None,
    *,
    subok: bool = False,
    writeable: bool = False,
) -> ndarray:
    data = _array_operand(x, "sliding_window_view")
    return ndarray._of(numpy.lib.stride_tricks.sliding_window_view(data, window_shape, axis, writeable=writeable))


stride_tricks = make_module(
    "cupy.lib.stride_tricks", "", as_strided=as_strided, sliding_window_view=sliding_window_view
)
lib = make_module("cupy.lib", "", stride_tricks=stride_tricks)

_DTYPES = "bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 intp float16 float32 float64 complex64 complex128"

cupy = make_module(
    "cupy",
    "Emulated CuPy (npresnet test infrastructure): NumPy underneath, CuPy's rules on top.",
    ndarray=ndarray,
    dtype=numpy.dtype,
    finfo=numpy.finfo,
    iinfo=numpy.iinfo,
    inf=math.inf,
    nan=math.nan,
    pi=math.pi,
    e=math.e,
    **{name: getattr(numpy, name) for name in _DTYPES.split()},
    **_ufunc.BY_NAME,
    abs=_ufunc.BY_NAME["absolute"],
    asarray=asarray,
    array=array,
    asnumpy=asnumpy,
    ascontiguousarray=ascontiguousarray,
    get_array_module=get_array_module,
    empty=empty,
    zeros=zeros,
    ones=ones,
    full=full,
    empty_like=empty_like,
    zeros_like=zeros_like,
    ones_like=ones_like,
    full_like=full_like,
    arange=arange,
    matmul=matmul,
    dot=dot,
    where=where,
    nonzero=nonzero,
    copyto=copyto,
    broadcast_to=broadcast_to,
    concatenate=concatenate,
    stack=stack,
    bincount=bincount,
    sum=sum,
    mean=mean,
    amax=amax,
    amin=amin,
    max=amax,
    min=amin,
    all=all,
    any=any,
    reshape=reshape,
    transpose=transpose,
    get_default_memory_pool=get_default_memory_pool,
    is_available=is_available,
    RawModule=RawModule,
    lib=lib,
    cuda=cuda,
)
_dispatch.NAMESPACE.append(cupy)  # the arrays' operators and NumPy protocols dispatch through it
