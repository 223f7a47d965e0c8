"""Thin CuPy wrappers that launch this package's kernels.

These have never run on a GPU: they are written against CuPy's documented ``RawModule``
API. Without a device they run on the emulated CuPy (:mod:`npresnet._emulation`), whose
``RawModule`` checks each launch's arguments against the kernel's C parameter list (pointer
types, ``int`` against ``long long``, contiguity) and runs the kernel's NumPy twin. What
awaits a GPU run is the C translation on the device itself and the speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from ...shapes import conv_output_size
from . import SOURCES
from .grid import launch_config

if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Sequence

    from numpy.typing import DTypeLike

    from ..._typing import Array

__all__ = ["CudaKernels", "ARITHMETIC"]

_INT_MAX = 2**31 - 1  # every size the kernels take as ``int``
_CTYPES: dict[numpy.dtype[Any], str] = {
    numpy.dtype(numpy.float16): "__half",
    numpy.dtype(numpy.float32): "float",
    numpy.dtype(numpy.float64): "double",
}
ARITHMETIC: dict[numpy.dtype[Any], numpy.dtype[Any]] = {
    numpy.dtype(numpy.float16): numpy.dtype(numpy.float32),
    numpy.dtype(numpy.float32): numpy.dtype(numpy.float32),
    numpy.dtype(numpy.float64): numpy.dtype(numpy.float64),
}
"""The type each storage dtype is computed in: float16 values are summed and biased in float32."""


def _ints(name: str, values: Sequence[int]) -> tuple[numpy.int32, ...]:
    """``values`` as ``numpy.int32`` (CuPy passes Python ints as 64-bit), each checked to fit."""
    if any(not 0 <= v <= _INT_MAX for v in values):
        raise ValueError(f"{name}: sizes {tuple(values)} must lie in [0, 2**31)")
    return tuple(numpy.int32(v) for v in values)


class CudaKernels:
    """The kernels compiled for the current CUDA device, for one storage dtype.

    Activations are stored in ``dtype`` and computed on in ``ARITHMETIC[dtype]``: for float16,
    the epilogue's accumulator and bias and the average pool's output are float32.

    Parameters
    ----------
    dtype : float16, float32 or float64
    xp : module, optional
        The CuPy module (default: ``import cupy``), or the emulated one.
    """

    def __init__(self, dtype: DTypeLike = "float32", xp: types.ModuleType | None = None) -> None:
        if xp is None:
            import cupy

            xp = cupy

        self.dtype = numpy.dtype(dtype)
        if self.dtype not in _CTYPES:
            raise ValueError(f"CudaKernels: dtype={self.dtype}, expected float16, float32 or float64")
        self.arithmetic = ARITHMETIC[self.dtype]
        self._xp = xp

        # a kernel's template arguments: the storage type, then (if it takes one) the arithmetic type
        storage, arithmetic = _CTYPES[self.dtype], _CTYPES[self.arithmetic]
        self._functions: dict[str, Callable[..., None]] = {}  # kernel name -> its RawKernel
        for unit in SOURCES:
            module = xp.RawModule(code=unit.source, name_expressions=unit.name_expressions)
            for expression in unit.name_expressions:
                kernel, _, arguments = expression.partition("<")
                if arguments.rstrip(">") in (storage, f"{storage}, {arithmetic}"):
                    self._functions[kernel] = module.get_function(expression)

    def _array(
        self, name: str, array: Array, shape: Sequence[int] | None = None, dtype: numpy.dtype[Any] | None = None
    ) -> Array:
        dtype = self.dtype if dtype is None else dtype
        device_array: type = self._xp.ndarray  # CuPy's (or the emulated CuPy's) array class
        if not isinstance(array, device_array) or array.dtype != dtype or not array.flags.c_contiguous:
            raise TypeError(f"{name}: expected a C-contiguous cupy array of {dtype}, got {type(array).__name__}")
        if shape is not None and array.shape != tuple(shape):
            raise ValueError(f"{name}: shape {array.shape}, expected {tuple(shape)}")
        return array

    def _out(self, out: Array | None, shape: tuple[int, ...], dtype: numpy.dtype[Any] | None = None) -> Array:
        if out is None:
            fresh: Array = self._xp.empty(shape, dtype=self.dtype if dtype is None else dtype)
            return fresh
        return self._array("out", out, shape, dtype)

    def _launch(self, kernel: str, total: int, args: tuple[object, ...]) -> None:
        grid, block = launch_config(total)
        self._functions[kernel]((grid,), (block,), args)

    def im2col_nhwc(
        self,
        x: Array,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int = 1,
        out: Array | None = None,
    ) -> Array:
        """Columns ``(groups, N*out_h*out_w, kh*kw*C/groups)`` of an NHWC ``x`` for one GEMM per group."""
        N, H, W, C = self._array("x", x).shape
        if groups < 1 or C % groups:
            raise ValueError(f"im2col_nhwc: groups={groups} must be >= 1 and divide C={C}")
        (kh, kw), (sy, sx), (ph, pw), (dy, dx) = kernel_size, stride, padding, dilation
        out_h = conv_output_size(H, kh, sy, ph, dy)
        out_w = conv_output_size(W, kw, sx, pw, dx)
        cols = self._out(out, (groups, N * out_h * out_w, kh * kw * C // groups))
        sizes = _ints("im2col_nhwc", (N, H, W, C, out_h, out_w, kh, kw, sy, sx, ph, pw, dy, dx, groups))
        self._launch("im2col_nhwc", cols.size, (x, cols, *sizes))
        return cols

    def bias_residual_relu(
        self, acc: Array, bias: Array, residual: Array | None = None, relu: bool = True, out: Array | None = None
    ) -> Array:
        """``relu(acc + bias [+ residual])`` over ``acc`` of shape (..., O), rounded once to the storage dtype.

        ``acc`` and ``bias`` are in the arithmetic dtype, ``residual`` and ``out`` in the storage
        dtype; when the two are one, ``out=acc`` works in place.
        """
        O = self._array("acc", acc, dtype=self.arithmetic).shape[-1]
        self._array("bias", bias, (O,), self.arithmetic)
        if residual is not None:
            self._array("residual", residual, acc.shape)
        out = self._out(out, acc.shape)
        M = numpy.int64(acc.size // max(O, 1))  # the kernel's ``long long M``
        (O32,) = _ints("bias_residual_relu", (O,))  # the kernel's ``int O``
        flags = numpy.int32(residual is not None), numpy.int32(relu)
        shortcut = out if residual is None else residual  # not read without a residual, but must be a pointer
        self._launch("bias_residual_relu", acc.size, (acc, bias, shortcut, out, M, O32, *flags))
        return out

    def max_pool_nhwc(
        self,
        x: Array,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        ceil_mode: bool = False,
        out: Array | None = None,
    ) -> Array:
        """NHWC max pooling, ``(N, out_h, out_w, C)``, padding as −∞."""
        N, H, W, C = self._array("x", x).shape
        (kh, kw), (sy, sx), (ph, pw), (dy, dx) = kernel_size, stride, padding, dilation
        out_h = conv_output_size(H, kh, sy, ph, dy, ceil_mode)
        out_w = conv_output_size(W, kw, sx, pw, dx, ceil_mode)
        out = self._out(out, (N, out_h, out_w, C))
        sizes = _ints("max_pool_nhwc", (N, H, W, C, out_h, out_w, kh, kw, sy, sx, ph, pw, dy, dx))
        self._launch("max_pool_nhwc", out.size, (x, out, *sizes))
        return out

    def global_avg_pool_nhwc(self, x: Array, out: Array | None = None) -> Array:
        """Mean over the pixels of an NHWC ``x``: ``(N, C)``, in the arithmetic dtype."""
        N, H, W, C = self._array("x", x).shape
        out = self._out(out, (N, C), self.arithmetic)
        self._launch("global_avg_pool_nhwc", out.size, (x, out, *_ints("global_avg_pool_nhwc", (N, H * W, C))))
        return out
