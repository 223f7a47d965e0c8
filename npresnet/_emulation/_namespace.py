"""The emulated ``cupy`` namespace: the functions npresnet calls through ``xp``, with CuPy's signatures.

Each function keeps the parameter list of its CuPy 14 counterpart (checked against the
installed CuPy by ``tests/emulation/test_emulated_cupy.py``), so a NumPy-only argument fails here as it
would on a GPU. Host arrays are accepted only where CuPy copies them to the device
(``asarray``, ``array``, assignment, ``outer``) and refused in kernels.

The namespace is a module object named ``"cupy"``: code that recognises CuPy by its
module name (``npresnet.workspace``, the fused path's profiler) takes its CuPy branch,
reading the emulated device's memory (:data:`DEVICE_TOTAL_BYTES`) and synchronising
through ``cupy.cuda.Device().synchronize()``.
"""

from __future__ import annotations

import math
import types

import numpy

from . import _array, _cublas, _ufunc
from ._array import _from_host, check_precision, device_args, ndarray, operand, poison, wrap
from ._counters import record
from ._kernels import RawModule

__all__ = ["cupy", "DEVICE_TOTAL_BYTES"]

DEVICE_TOTAL_BYTES = 80 * 2**30
"""Memory of the emulated device, an 80 GB H100; ``memGetInfo`` reports all of it free."""


# --------------------------------------------------------------------------- moving data
def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    """Return a device array: ``a`` itself when it is one (cast if ``dtype`` differs), else a host-to-device copy."""
    if isinstance(a, ndarray):
        if copy:
            return a.astype(a.dtype if dtype is None else dtype, order=order or "K", copy=True)
        return a if dtype is None else a.astype(dtype, copy=False)
    device = _from_host(a)
    return device if dtype is None else device.astype(dtype, copy=False)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """Return a device array copied from ``obj`` (a host array, a list, or a device array)."""
    if isinstance(obj, ndarray):
        out = obj.astype(obj.dtype if dtype is None else dtype, order=order, copy=copy)
    else:
        out = asarray(obj, dtype=dtype)
    while out.ndim < ndmin:
        out = out[None]
    return out


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """Return a NumPy array: a device array copied to the host (a synchronisation), else ``numpy.asarray``."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    return numpy.asarray(a, order=order)


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"ascontiguousarray: expected a device array, got {type(a)}")
    if a.flags.c_contiguous and (dtype is None or numpy.dtype(dtype) == a.dtype):
        return a
    record("copy")
    return ndarray._of(numpy.ascontiguousarray(a._a, dtype=dtype))


def get_array_module(*args):
    """Return the emulated namespace if any argument is an emulated array, else ``numpy``."""
    return cupy if any(isinstance(a, ndarray) for a in args) else numpy


# --------------------------------------------------------------------------- creation
def empty(shape, dtype=float, order="C"):
    """Uninitialised memory (no launch): poisoned with NaN / the integer maximum (see the array module)."""
    return ndarray._of(poison(numpy.empty(shape, dtype=dtype, order=order)))


def _filled(make, *args, **kwargs):
    result = make(*args, **kwargs)
    record("fill")
    return ndarray._of(result)


def zeros(shape, dtype=float, order="C"):
    return _filled(numpy.zeros, shape, dtype=dtype, order=order)


def ones(shape, dtype=float, order="C"):
    return _filled(numpy.ones, shape, dtype=dtype, order=order)


def full(shape, fill_value, dtype=None, order="C"):
    return _filled(numpy.full, shape, operand(fill_value, "cupy.full"), dtype=dtype, order=order)


def _like(a, dtype, shape):
    if not isinstance(a, ndarray):
        raise TypeError(f"expected a device array, got {type(a)}")
    return (a.shape if shape is None else shape), (a.dtype if dtype is None else dtype)


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    return empty(*_like(prototype, dtype, shape))


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    return zeros(*_like(a, dtype, shape))


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    return ones(*_like(a, dtype, shape))


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    shape, dtype = _like(a, dtype, shape)
    return full(shape, fill_value, dtype)


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    result = numpy.arange(start, stop, step, dtype=dtype)
    record("elementwise")
    return ndarray._of(result)


# --------------------------------------------------------------------------- products
def matmul(
    *args,
    axes=None,
    axis=None,
    keepdims=False,
    casting="same_kind",
    dtype=None,
    signature=None,
    order="K",
    out=None,
):
    """Compute ``a @ b`` (batched over leading axes): one GEMM launch, as one cuBLAS (strided-batched) call."""
    if axes is not None or axis is not None or keepdims or signature is not None or order != "K":
        raise NotImplementedError("emulated CuPy: matmul's axes, axis, keepdims, signature and order are not emulated")
    if len(args) != 2:
        raise TypeError(f"matmul takes 2 operands, got {len(args)}")
    a, b = (operand(x, "cupy.matmul") for x in args)
    if out is not None and not isinstance(out, ndarray):
        raise TypeError(f"cupy.matmul: out must be a device array, got {type(out)}")
    result = numpy.matmul(a, b, out=None if out is None else out._a, dtype=dtype, casting=casting)
    check_precision("cupy.matmul", (a, b), result, explicit_dtype=dtype is not None)
    record("gemm")
    return out if out is not None else wrap(result)


def dot(a, b, out=None):
    a, b = operand(a, "cupy.dot"), operand(b, "cupy.dot")
    result = numpy.dot(a, b, out=None if out is None else device_args(out, "cupy.dot"))
    check_precision("cupy.dot", (a, b), result)
    record("gemm")
    return out if out is not None else wrap(result)


# --------------------------------------------------------------------------- selection, copies
def where(condition, x=None, y=None):
    if x is None and y is None:
        return nonzero(condition)
    if x is None or y is None:
        raise ValueError("Must provide with both x and y or neither.")
    args = [operand(v, "cupy.where") for v in (condition, x, y)]
    result = numpy.where(*args)
    check_precision("cupy.where", args[1:], result)
    record("elementwise")
    return wrap(result)


def nonzero(a):
    """Return the non-zero elements' indices; CuPy reads their count back to size the result (a synchronisation)."""
    data = operand(a, "cupy.nonzero")
    record("reduction")
    record("sync")
    record("gather")
    return wrap(numpy.nonzero(data))


def copyto(dst, src, casting="same_kind", where=None):
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


def broadcast_to(array, shape):
    return ndarray._of(numpy.broadcast_to(operand(array, "cupy.broadcast_to"), shape))


def _join(join, name, tup, axis, out, dtype, casting):
    arrays = device_args(list(tup), f"cupy.{name}")
    result = join(arrays, axis=axis, dtype=dtype, casting=casting)
    check_precision(f"cupy.{name}", arrays, result, explicit_dtype=dtype is not None)
    record("copy")
    if out is not None:
        copyto(out, ndarray._of(result))
        return out
    return ndarray._of(result)


def concatenate(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    return _join(numpy.concatenate, "concatenate", tup, axis, out, dtype, casting)


def stack(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    return _join(numpy.stack, "stack", tup, axis, out, dtype, casting)


def bincount(x, weights=None, minlength=None):
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
def sum(a, axis=None, dtype=None, out=None, keepdims=False):
    return a.sum(axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def mean(a, axis=None, dtype=None, out=None, keepdims=False):
    return a.mean(axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def amax(a, axis=None, out=None, keepdims=False):
    return a.max(axis=axis, out=out, keepdims=keepdims)


def amin(a, axis=None, out=None, keepdims=False):
    return a.min(axis=axis, out=out, keepdims=keepdims)


def all(a, axis=None, out=None, keepdims=False):
    return a.all(axis=axis, out=out, keepdims=keepdims)


def any(a, axis=None, out=None, keepdims=False):
    return a.any(axis=axis, out=out, keepdims=keepdims)


def reshape(a, newshape, order="C", *, copy=None):
    return a.reshape(newshape, order=order, copy=copy)


def transpose(a, axes=None):
    return a.transpose(axes)


# --------------------------------------------------------------------------- lib.stride_tricks
def as_strided(x, shape=None, strides=None):
    """Return a view of ``x`` with the given shape and byte strides (no launch)."""
    return ndarray._of(numpy.lib.stride_tricks.as_strided(operand(x, "as_strided"), shape, strides))


def sliding_window_view(x, window_shape, axis=None, *, subok=False, writeable=False):
    data = operand(x, "sliding_window_view")
    return ndarray._of(numpy.lib.stride_tricks.sliding_window_view(data, window_shape, axis, writeable=writeable))


# --------------------------------------------------------------------------- the device
class Device:
    """The one emulated device; ``synchronize()`` is a host synchronisation."""

    def __init__(self, device=None):
        if device not in (None, 0):
            raise ValueError(f"emulated CuPy has one device (0), got {device!r}")
        self.id = 0

    def synchronize(self):
        record("sync")

    @property
    def mem_info(self):
        return runtime.memGetInfo()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class MemoryPool:
    """The memory pool: it holds no cached blocks, so the driver's free memory is all there is."""

    def free_bytes(self):
        return 0

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


_POOL = MemoryPool()


def get_default_memory_pool():
    return _POOL


def is_available():
    return True


def _module(name, doc, **members):
    module = types.ModuleType(name, doc)
    module.__dict__.update(members)
    return module


runtime = _module(
    "cupy.cuda.runtime",
    "Emulated CUDA runtime queries.",
    memGetInfo=lambda: (DEVICE_TOTAL_BYTES, DEVICE_TOTAL_BYTES),
    getDeviceCount=lambda: 1,
    getDevice=lambda: 0,
    CUDA_R_32F=_cublas.CUDA_R_32F,
    CUDA_R_64F=_cublas.CUDA_R_64F,
    CUDA_R_16F=_cublas.CUDA_R_16F,
)

cublas = _module(
    "cupy.cuda.cublas",
    "Emulated cuBLAS: the GEMMs npresnet calls, on raw addresses (see npresnet._emulation._cublas).",
    **{name: getattr(_cublas, name) for name in dir(_cublas) if name.startswith(("CUBLAS_", "gemm", "getP", "setP"))},
)

_DTYPES = "bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 intp float16 float32 float64 complex64 complex128"

cupy = _module(
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
)
cupy.lib = _module("cupy.lib", "", stride_tricks=_module("cupy.lib.stride_tricks", "", as_strided=as_strided))
cupy.lib.stride_tricks.sliding_window_view = sliding_window_view
device = _module(
    "cupy.cuda.device", "The current device's library handles.", get_cublas_handle=_cublas.get_cublas_handle
)
cupy.cuda = _module("cupy.cuda", "Emulated CUDA device.", Device=Device, runtime=runtime, cublas=cublas, device=device)
_array._NAMESPACE.append(cupy)  # the arrays' operators and NumPy protocols dispatch through it
