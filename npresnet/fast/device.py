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
"""

from __future__ import annotations

from .cuda.gemm import compute_type, grouped_gemm
from .cuda.launch import CudaKernels
from .winograd import WinogradConv

__all__ = ["DeviceOps"]


class DeviceOps:
    """The fused path's kernels and products on one CuPy device, for one storage dtype and precision.

    Parameters
    ----------
    xp : module
        CuPy, or the emulated CuPy of :mod:`npresnet._emulation`.
    dtype : float32 or float64
        The storage dtype of activations and weights.
    precision : str
        ``"float32"`` or ``"tf32"`` (:data:`npresnet.fast.cuda.gemm.PRECISIONS`); sets the cuBLAS
        compute type (:func:`~npresnet.fast.cuda.gemm.compute_type`).
    """

    def __init__(self, xp, dtype, precision: str = "float32"):
        self.xp = xp
        self.kernels = CudaKernels(dtype, xp=xp)
        self.compute = compute_type(dtype, precision)

    def conv(self, conv, x, out, residual=False, relu=False, workspace=None, workspace_bytes=1, clock=None):
        """``out = [relu](conv(x) + bias [+ out])`` in place: gather, product, epilogue per chunk of images.

        Parameters
        ----------
        conv : FusedConv or WinogradConv
            A Winograd convolution runs by its im2col fallback.
        x : array, shape (N, H, W, C), C-contiguous
        out : array, shape (N, out_h, out_w, O), C-contiguous
            Holds the shortcut on entry when ``residual``.
        residual, relu : bool
        workspace : callable
            ``workspace(n_elements, slot)``, as for :class:`npresnet.fast.conv.FusedConv`.
        workspace_bytes : int
            The bound on one chunk's columns plus output.
        clock : callable, optional
            The profiling hook, called after the ``"gather"``, ``"gemm"`` and ``"epilogue"`` of each chunk.
        """
        if isinstance(conv, WinogradConv):
            conv = conv.fallback
        N, H, W, C = x.shape
        _, out_h, out_w, O = out.shape
        kh, kw = conv.kernel_size
        G = conv.groups
        direct = pointwise(conv)
        Kg = kh * kw * C // G
        image_bytes = out_h * out_w * ((C if direct else G * Kg) + (2 if residual else 1) * O) * x.dtype.itemsize
        images = max(1, workspace_bytes // max(image_bytes, 1))  # whole images per chunk, at least one
        for n0 in range(0, N, images):
            n1 = min(n0 + images, N)
            m = (n1 - n0) * out_h * out_w  # output pixels of the chunk
            o = out[n0:n1].reshape(m, O)
            acc = workspace(m * O, 1).reshape(m, O) if residual else o  # the product, before the epilogue
            if direct:
                cols = x[n0:n1].reshape(1, m, C)  # the activation is the operand: no copy
            else:
                cols = workspace(G * m * Kg, 0).reshape(G, m, Kg)
                self.kernels.im2col_nhwc(
                    x[n0:n1], conv.kernel_size, conv.stride, conv.padding, conv.dilation, G, out=cols
                )
            if clock is not None:
                clock("gather")
            grouped_gemm(self.xp, cols, conv.weight, acc, self.compute)  # (m, O)
            if clock is not None:
                clock("gemm")
            self.kernels.bias_residual_relu(acc, conv.bias, o if residual else None, relu, out=o)
            if clock is not None:
                clock("epilogue")
        return out

    def max_pool(self, x, pool, out):
        """``max_pool(x)`` on NHWC ``x`` into ``out`` (N, out_h, out_w, C): one launch.

        ``pool`` is ``(kernel_size, stride, padding, dilation, ceil_mode)``."""
        kernel_size, stride, padding, dilation, ceil_mode = pool
        return self.kernels.max_pool_nhwc(x, kernel_size, stride, padding, dilation, ceil_mode, out=out)

    def head(self, x, fc_weight, fc_bias):
        """Logits ``mean over pixels of x @ fc_weight + fc_bias``: average pool, product, bias.

        Parameters
        ----------
        x : array, shape (N, H, W, C), C-contiguous
        fc_weight : array, shape (C, classes), C-contiguous
        fc_bias : array, shape (classes,)

        Returns
        -------
        array, shape (N, classes), fresh
        """
        N, _, _, C = x.shape
        pooled = self.kernels.global_avg_pool_nhwc(x)  # (N, C)
        logits = self.xp.empty((N, fc_weight.shape[1]), dtype=x.dtype)
        grouped_gemm(self.xp, pooled.reshape(1, N, C), fc_weight.reshape(1, *fc_weight.shape), logits, self.compute)
        return self.kernels.bias_residual_relu(logits, fc_bias, None, relu=False, out=logits)


def pointwise(conv) -> bool:
    """Whether ``conv`` needs no columns on the device: 1×1, stride 1, no padding, one group."""
    if isinstance(conv, WinogradConv):
        conv = conv.fallback
    return conv.pointwise and conv.stride == (1, 1)
