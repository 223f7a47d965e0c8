"""The GPU-native steps of :class:`npresnet.fast.FusedResNet`: a constant, small number of launches per layer.

On a CuPy backend every convolution runs as at most three launches, whatever its kernel size:

1. one gather, :func:`~npresnet.fast.cuda.im2col` ``im2col_nhwc``, writing the NHWC column
   matrix of all groups; none for a stride-1 1×1 convolution, whose channels-last activation
   *is* the ``(M, C)`` operand;
2. one cuBLAS product, :func:`~npresnet.fast.cuda.gemm.grouped_gemm` (a strided batch over the
   groups, written side by side into the NHWC output), with the compute type named;
3. one epilogue, ``bias_residual_relu``: bias, the block's shortcut and the ReLU in one pass.

The stem's max pool is one ``max_pool_nhwc`` launch (after the stem's ReLU, which commutes
with the max); the head is ``global_avg_pool_nhwc``, the fc product and its bias (the
epilogue kernel without ReLU). A forward pass never waits for the device: no value is read
back, and the launch sizes are host arithmetic.

The workspace (:mod:`npresnet.workspace`, on CuPy a quarter of the free device memory)
bounds a chunk of whole images: the columns of ``b`` images plus their output fit in it, or
one image at a time when a single image's do not. Winograd is a CPU technique here: on the
device its convolutions run by their im2col fallback.

Precision modes (:data:`~npresnet.fast.cuda.gemm.PRECISIONS`), for a float32 model:

- ``"float32"``: float32 storage, products with ``CUBLAS_COMPUTE_32F`` (never TF32);
- ``"tf32"``: float32 storage, products with ``CUBLAS_COMPUTE_32F_FAST_TF32``;
- ``"float16"``: activations and convolution weights stored in float16 (:attr:`DeviceOps.storage`);
  each product reads float16 and accumulates and writes float32 (``CUBLAS_COMPUTE_32F``, a
  float32 output), the epilogue adds the float32 bias and the float16 shortcut in float32 and
  rounds once to float16; the head averages in float32 and its fc product, bias and logits
  are float32. The float16 weights are cast once, at a convolution's first call, and kept.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy

from .cuda.gemm import compute_type, grouped_gemm
from .cuda.launch import ARITHMETIC, CudaKernels
from .winograd import WinogradConv

if TYPE_CHECKING:
    import types
    from collections.abc import Callable

    from numpy.typing import DTypeLike

    from .._typing import Array
    from .conv import FusedConv

__all__ = ["DeviceOps"]


class DeviceOps:
    """The fused path's kernels and products on one CuPy device, for one storage dtype and precision.

    Parameters
    ----------
    xp : module
        CuPy, or the emulated CuPy of :mod:`npresnet._emulation`.
    dtype : float32 or float64
        The model's dtype: of its folded weights and biases, the input and the logits.
    precision : str
        ``"float32"``, ``"tf32"`` or ``"float16"`` (:data:`npresnet.fast.cuda.gemm.PRECISIONS`); sets
        the storage dtype (:attr:`storage`) and the cuBLAS compute type
        (:func:`~npresnet.fast.cuda.gemm.compute_type`). A float64 model takes ``"float64"``.

    Attributes
    ----------
    storage : numpy.dtype
        The dtype of the activation buffers and the convolution weights: float16 in ``"float16"``
        mode, else ``dtype``.
    arithmetic : numpy.dtype
        What products, epilogues and the head compute in: ``dtype`` (float32 for float16 storage).
    """

    def __init__(self, xp: types.ModuleType, dtype: DTypeLike, precision: str = "float32") -> None:
        self.xp = xp
        self.arithmetic = numpy.dtype(dtype)
        self.storage = numpy.dtype(numpy.float16) if precision == "float16" else self.arithmetic
        if ARITHMETIC[self.storage] != self.arithmetic:
            raise ValueError(f"DeviceOps: precision={precision!r} needs a float32 model, got {self.arithmetic}")
        self.kernels = CudaKernels(self.storage, xp=xp)
        self.head_kernels = self.kernels if self.storage == self.arithmetic else CudaKernels(self.arithmetic, xp=xp)
        self.compute = compute_type(self.storage, precision)  # the convolutions' products
        self.head_compute = compute_type(self.arithmetic, precision)  # the fc product, on float32 in float16 mode
        self._weights: dict[int, tuple[FusedConv, Array]] = {}  # float16 mode: id(conv) -> (conv, its cast weight)
        self._local = threading.local()  # float16 mode: each thread's float32 accumulator

    def weight(self, conv: FusedConv) -> Array:
        """``conv.weight`` in the storage dtype: itself, or (float16 mode) a copy cast once and kept."""
        weight: Array = conv.weight  # (G, Kg, Og), from npresnet.fast.fold.gemm_weight
        if weight.dtype == self.storage:
            return weight
        kept = self._weights.get(id(conv))
        if kept is None:  # the conv is kept with its copy, so its id is never reused while the copy lives
            kept = self._weights[id(conv)] = (conv, weight.astype(self.storage))
        return kept[1]

    def accumulator_bytes(self) -> int:
        """Bytes of this thread's float32 accumulator; 0 outside float16 mode and before its first convolution."""
        scratch: Array | None = getattr(self._local, "scratch", None)
        return 0 if scratch is None else int(scratch.nbytes)

    def clear_accumulator(self) -> None:
        """Release this thread's float32 accumulator (the next float16-mode convolution allocates it again)."""
        self._local.scratch = None

    def _accumulator(self, size: int) -> Array:
        """Return this thread's flat scratch array of ``size`` elements of the arithmetic dtype, grown as needed."""
        scratch: Array | None = getattr(self._local, "scratch", None)
        if scratch is None or scratch.size < size:
            scratch = self._local.scratch = self.xp.empty(size, dtype=self.arithmetic)
        return scratch[:size]

    def conv(
        self,
        conv: FusedConv | WinogradConv,
        x: Array,
        out: Array,
        residual: bool = False,
        relu: bool = False,
        workspace: Callable[[int, int], Array] | None = None,
        workspace_bytes: int = 1,
        clock: Callable[[str], object] | None = None,
    ) -> Array:
        """``out = [relu](conv(x) + bias [+ out])`` in place: gather, product, epilogue per chunk of images.

        Parameters
        ----------
        conv : FusedConv or WinogradConv
            A Winograd convolution runs by its im2col fallback.
        x : array, shape (N, H, W, C), C-contiguous, the storage dtype
        out : array, shape (N, out_h, out_w, O), C-contiguous, the storage dtype
            Holds the shortcut on entry when ``residual``.
        residual, relu : bool
        workspace : callable
            ``workspace(n_elements, slot)``, as for :class:`npresnet.fast.conv.FusedConv`, of the
            storage dtype; in float16 mode the float32 product goes to this object's own accumulator.
        workspace_bytes : int
            The bound on one chunk's columns plus output.
        clock : callable, optional
            The profiling hook, called after the ``"gather"``, ``"gemm"`` and ``"epilogue"`` of each chunk.
        """
        conv = _im2col_conv(conv)
        workspace = _no_workspace if workspace is None else workspace
        N, H, W, C = x.shape
        _, out_h, out_w, O = out.shape
        kh, kw = conv.kernel_size
        G = conv.groups
        direct = pointwise(conv)
        Kg = kh * kw * C // G
        widened = self.storage != self.arithmetic  # float16 storage: the product is float32
        separate = residual or widened  # the product needs its own buffer, not the output's
        image_bytes = (
            out_h
            * out_w
            * (
                ((C if direct else G * Kg) + O) * self.storage.itemsize
                + (O * self.arithmetic.itemsize if separate else 0)
            )
        )  # columns, output and product of one image
        images = max(1, workspace_bytes // max(image_bytes, 1))  # whole images per chunk, at least one
        weight = self.weight(conv)
        for n0 in range(0, N, images):
            n1 = min(n0 + images, N)
            m = (n1 - n0) * out_h * out_w  # output pixels of the chunk
            o = out[n0:n1].reshape(m, O)
            if widened:
                acc = self._accumulator(m * O).reshape(m, O)  # the float32 product, before the epilogue
            else:
                acc = workspace(m * O, 1).reshape(m, O) if residual else o
            if direct:
                cols = x[n0:n1].reshape(1, m, C)  # the activation is the operand: no copy
            else:
                cols = workspace(G * m * Kg, 0).reshape(G, m, Kg)
                self.kernels.im2col_nhwc(
                    x[n0:n1], conv.kernel_size, conv.stride, conv.padding, conv.dilation, G, out=cols
                )
            if clock is not None:
                clock("gather")
            grouped_gemm(self.xp, cols, weight, acc, self.compute)  # (m, O)
            if clock is not None:
                clock("gemm")
            self.kernels.bias_residual_relu(acc, conv.bias, o if residual else None, relu, out=o)
            if clock is not None:
                clock("epilogue")
        return out

    def max_pool(
        self,
        x: Array,
        pool: tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], bool],
        out: Array,
    ) -> Array:
        """``max_pool(x)`` on NHWC ``x`` into ``out`` (N, out_h, out_w, C): one launch.

        ``pool`` is ``(kernel_size, stride, padding, dilation, ceil_mode)``.
        """
        kernel_size, stride, padding, dilation, ceil_mode = pool
        return self.kernels.max_pool_nhwc(x, kernel_size, stride, padding, dilation, ceil_mode, out=out)

    def head(self, x: Array, fc_weight: Array, fc_bias: Array) -> Array:
        """Logits ``mean over pixels of x @ fc_weight + fc_bias``: average pool, product, bias.

        Parameters
        ----------
        x : array, shape (N, H, W, C), C-contiguous, the storage dtype
        fc_weight : array, shape (C, classes), C-contiguous, the arithmetic dtype
        fc_bias : array, shape (classes,), the arithmetic dtype

        Returns
        -------
        array, shape (N, classes), fresh, the arithmetic dtype (float32 logits in float16 mode)
        """
        N, _, _, C = x.shape
        pooled = self.kernels.global_avg_pool_nhwc(x)  # (N, C), averaged in the arithmetic dtype
        logits = self.xp.empty((N, fc_weight.shape[1]), dtype=self.arithmetic)
        fc = fc_weight.reshape(1, *fc_weight.shape)
        grouped_gemm(self.xp, pooled.reshape(1, N, C), fc, logits, self.head_compute)
        return self.head_kernels.bias_residual_relu(logits, fc_bias, None, relu=False, out=logits)


def _no_workspace(n: int, slot: int) -> Array:
    """Stand in for a missing ``workspace``: a convolution that needs scratch memory was given none."""
    raise TypeError("DeviceOps.conv: this convolution needs a workspace for its scratch arrays; got workspace=None")


def _im2col_conv(conv: FusedConv | WinogradConv) -> FusedConv:
    """Return the convolution the device runs: ``conv``, or the im2col fallback at the end of a Winograd chain."""
    fallback: FusedConv | WinogradConv | None = conv
    while isinstance(fallback, WinogradConv):  # F(4×4) -> F(2×2) -> im2col (fast.model)
        fallback = fallback.fallback
    if fallback is None:  # the fused model gives every Winograd convolution one (fast.model)
        raise ValueError("DeviceOps: a Winograd convolution without an im2col fallback cannot run on the device")
    return fallback


def pointwise(conv: FusedConv | WinogradConv) -> bool:
    """Whether ``conv`` needs no columns on the device: 1×1, stride 1, no padding, one group."""
    fused = _im2col_conv(conv)
    return bool(fused.pointwise) and fused.stride == (1, 1)
