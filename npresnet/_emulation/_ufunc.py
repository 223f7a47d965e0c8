"""Emulated CuPy ufuncs: NumPy's ufuncs behind CuPy's calling rules (``cupy/_core/_kernel.pyx``, class ``ufunc``).

- Keyword arguments are ``out``, ``dtype`` and ``casting`` only; anything else (``where=``
  included) raises ``TypeError('Wrong arguments ...')``.
- Inputs are device arrays or scalars; a host array raises TypeError.
- ``ufunc.at`` exists only for the ufuncs CuPy gives a scatter operation (add, subtract,
  maximum, minimum, bitwise and/or/xor); ``reduce`` and ``accumulate`` only for add and
  multiply, ``reduceat`` only for add; the rest raise NotImplementedError as CuPy does.
"""

from __future__ import annotations

from typing import Any

import numpy

from ._array import device_args, index_args, ndarray, operand, wrap
from ._counters import record
from ._dispatch import namespace
from ._precision import check_precision

__all__ = ["ufunc", "BY_NAME"]

_SCATTER = {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"}


def _out(value: object, where: str) -> ndarray:
    if not isinstance(value, ndarray):
        raise TypeError(f"{where}: out must be a device array (cupy.ndarray), got {type(value)}")
    return value


class ufunc:
    """One emulated CuPy ufunc, computed by the NumPy ufunc of the same name (one elementwise launch)."""

    def __init__(self, np_ufunc: numpy.ufunc):
        self._f = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nin + np_ufunc.nout

    def __repr__(self) -> str:
        return f"<emulated ufunc 'cupy_{self.name}'>"

    def __call__(
        self,
        *args: Any,
        out: ndarray | tuple[ndarray, ...] | None = None,
        dtype: Any = None,
        casting: str = "same_kind",
        **kwargs: Any,
    ) -> Any:
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(
                f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or {self.nargs} "
                f"(with outputs), but given {len(args)}."
            )
        inputs = [operand(x, f"cupy.{self.name}") for x in args[: self.nin]]
        outs = args[self.nin :]
        if out is not None:
            if outs:
                raise ValueError("Cannot specify 'out' as both a positional and keyword argument")
            outs = out if isinstance(out, tuple) else (out,)
        outs = tuple(_out(o, f"cupy.{self.name}") for o in outs)
        result = self._f(*inputs, out=tuple(o._a for o in outs) or None, dtype=dtype, casting=casting)
        check_precision(f"cupy.{self.name}", inputs, result, explicit_dtype=dtype is not None)
        record("elementwise")
        if outs:
            return outs[0] if self.nout == 1 else outs
        return wrap(result)

    def at(self, a: ndarray, indices: Any, b: Any = None) -> None:
        if self.name not in _SCATTER:
            raise NotImplementedError(f"`cupy_{self.name}.at` is not supported yet")
        _out(a, f"cupy.{self.name}.at")
        values = () if b is None else (operand(b, f"cupy.{self.name}.at"),)
        self._f.at(a._a, index_args(indices, f"cupy.{self.name}.at"), *values)
        record("scatter")

    def reduce(
        self, array: ndarray, axis: Any = 0, dtype: Any = None, out: ndarray | None = None, keepdims: bool = False
    ) -> Any:
        if self.name not in ("add", "multiply"):
            raise NotImplementedError(f"`cupy_{self.name}.reduce` is not supported yet")
        method = "sum" if self.name == "add" else "prod"
        return getattr(_out(array, f"cupy.{self.name}.reduce"), method)(axis, dtype, out, keepdims)

    def accumulate(self, array: ndarray, axis: int = 0, dtype: Any = None, out: ndarray | None = None) -> Any:
        if self.name not in ("add", "multiply"):
            raise NotImplementedError(f"`cupy_{self.name}.accumulate` is not supported yet")
        result = self._f.accumulate(operand(array, self.name), axis, dtype, device_args(out, self.name))
        record("reduction")
        return out if out is not None else wrap(result)

    def reduceat(
        self, array: ndarray, indices: Any, axis: int = 0, dtype: Any = None, out: ndarray | None = None
    ) -> Any:
        if self.name != "add":
            raise NotImplementedError(f"`cupy_{self.name}.reduceat` is not supported yet")
        idx = index_args(indices, self.name)
        result = self._f.reduceat(operand(array, self.name), idx, axis, dtype, device_args(out, self.name))
        record("reduction")
        return out if out is not None else wrap(result)

    def outer(self, A: Any, B: Any, **kwargs: Any) -> Any:
        # CuPy copies host operands to the device here (core.array), so host arrays are accepted.
        cupy = namespace()
        A, B = cupy.asarray(A), cupy.asarray(B)
        return self(A.reshape(A.shape + (1,) * B.ndim), B.reshape((1,) * A.ndim + B.shape), **kwargs)


_NAMES = (
    "add subtract multiply true_divide divide floor_divide remainder power negative positive absolute "
    "maximum minimum fmax fmin sqrt square exp log log2 log10 expm1 log1p sign tanh "
    "isnan isfinite isinf equal not_equal less less_equal greater greater_equal "
    "logical_and logical_or logical_not bitwise_and bitwise_or bitwise_xor invert left_shift right_shift"
).split()

BY_NAME = {name: ufunc(getattr(numpy, name)) for name in _NAMES}
"""The emulated ufuncs by NumPy name (``divide`` is ``true_divide``'s NumPy alias; the emulated
``BY_NAME['divide']`` is its own object, named after NumPy's ufunc)."""
