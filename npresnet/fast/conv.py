"""Channels-last convolution with a folded bias, computed chunk by chunk into a bounded workspace.

Activations here are ``(N, H, W, C)`` ("NHWC"). A convolution becomes one matrix
product ``(M, K) @ (K, O)`` with ``M = N*out_h*out_w`` output pixels and
``K = kh*kw*C`` taps, the columns built Chainer-style, one strided copy per kernel
offset; in NHWC each copy moves whole runs of ``C`` contiguous channels.

- A stride-1 1×1 convolution needs no columns: the activation *is* the ``(M, C)`` matrix.
- A strided 1×1 convolution copies the subsampled pixels, then multiplies.
- Padding is never materialised: each offset copies only the output pixels whose input
  lies inside the image and writes zeros into the thin border strips of the columns.
- Few input channels (the stem's 3): runs of ``C`` floats are too short for fast copies,
  so the input is padded once and each kernel *row* is copied as one strided window
  view of ``kw*C`` contiguous floats (``as_strided``; 7 copies instead of 49 for 7×7), each run
  one item of a void dtype on NumPy, so that the copy loops over pixels, not over 21 floats.

The output pixels are processed in chunks (groups of whole images, or bands of rows of
one image) so that a chunk's columns plus its output stay within ``workspace_bytes``
(:mod:`npresnet.workspace`); each chunk's epilogue (bias, residual add, ReLU) runs in
place while the chunk is still in cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from ..backend import get_array_module
from ..shapes import conv_output_size
from ..workspace import resolve_workspace_bytes, workspace_chunks
from .taps import kernel_taps

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._typing import Array, Shape

__all__ = ["FusedConv"]


class FusedConv:
    """A convolution with its batch norm folded in, on channels-last activations.

    Parameters
    ----------
    weight : array, shape (groups, kh*kw*C/groups, O/groups)
        From :func:`npresnet.fast.fold.gemm_weight`, on the model's backend and dtype.
    bias : array, shape (O,)
    kernel_size, stride, padding, dilation : (int, int)
    groups : int
    """

    def __init__(
        self,
        weight: Array,
        bias: Array,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
    ) -> None:
        self.weight, self.bias = weight, bias
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.groups = groups
        G, K, Og = weight.shape
        kh, kw = kernel_size
        self.in_channels, self.out_channels = K // (kh * kw) * G, Og * G
        self.pointwise = kernel_size == (1, 1) and padding == (0, 0) and groups == 1
        self.weight2d: Array | None = weight[0] if groups == 1 else None  # (K, O)
        self.row_window_max = 64  # use the row-window copies when kw*C is at most this many floats

    def uses_row_windows(self, in_channels: int) -> bool:
        """Whether the columns are copied by kernel rows (few channels, as the stem) rather than by offsets."""
        return self.groups == 1 and in_channels * self.kernel_size[1] <= self.row_window_max and self.dilation[1] == 1

    def output_shape(self, shape: Shape) -> tuple[int, int, int, int]:
        """NHWC output shape for an NHWC input ``shape`` (ValueError if the window does not fit)."""
        N, H, W, _ = shape
        args = zip((H, W), self.kernel_size, self.stride, self.padding, self.dilation)
        out_h, out_w = (conv_output_size(*a) for a in args)
        return N, out_h, out_w, self.out_channels

    def __call__(
        self,
        x: Array,
        out: Array,
        residual: bool = False,
        relu: bool = False,
        workspace: Callable[[int, int], Array] | None = None,
        workspace_bytes: int | None = None,
        clock: Callable[[str], object] | None = None,
    ) -> Array:
        """``out = [relu](conv(x) + bias [+ out])``, in place.

        Parameters
        ----------
        x : array, shape (N, H, W, C)
            May be a non-contiguous view (the stem reads the NCHW input through a transpose).
        out : array, shape (N, out_h, out_w, O), C-contiguous
            With ``residual``, it holds the shortcut on entry and the block's output on return
            (the in-place residual add: no separate buffer for the sum).
        residual : bool
            Add the convolution to what ``out`` holds instead of overwriting it.
        relu : bool
        workspace : callable, optional
            ``workspace(n_elements, slot)`` returns a flat scratch array of at least that size;
            slot 0 holds the columns, slot 1 a residual chunk's product.
        workspace_bytes : int, optional
            Bound in bytes on one chunk's columns plus output (:mod:`npresnet.workspace`);
            None: the backend's default.
        clock : callable, optional
            The profiling hook: ``clock(phase)`` is called as each phase of each chunk ends
            (``"gather"``: the columns, ``"gemm"``: the product, ``"epilogue"``: bias, residual, ReLU);
            see :class:`npresnet.fast.profile.PhaseClock`.
        """
        xp = get_array_module(x, out)
        N, H, W, C = x.shape
        _, out_h, out_w, O = out.shape
        kh, kw = self.kernel_size
        sy, sx = self.stride
        direct = self.pointwise and (sy, sx) == (1, 1) and x.flags.c_contiguous
        K = kh * kw * C
        # A chunk's working set, its columns (or input) plus its output, fits in the budget, so the
        # epilogue's passes over the output hit the cache the product has just written.
        row_bytes = out_w * ((C if direct else K) + (2 if residual else 1) * O) * x.dtype.itemsize
        if workspace is None:
            workspace = lambda size, slot=0: xp.empty(size, dtype=x.dtype)  # noqa: E731
        rows = not direct and self.uses_row_windows(C)
        if rows:  # pad once: (N, H + 2ph, W + 2pw, C), contiguous, for the row-window copies
            xpad = self._pad(x)
        budget = resolve_workspace_bytes(workspace_bytes, xp)
        for n0, n1, y0, y1 in workspace_chunks(N, out_h, row_bytes, budget):
            m = (n1 - n0) * (y1 - y0) * out_w  # output pixels in this chunk
            o = out[n0:n1, y0:y1].reshape(m, O)  # contiguous: whole images, or rows of one image
            shortcut = None
            if residual:  # the product goes to scratch, then is added to the shortcut held in o
                shortcut, o = o, workspace(m * O, 1).reshape(m, O)
            if direct:
                xp.matmul(x[n0:n1, y0:y1].reshape(m, C), self.weight2d, out=o)
            else:
                cols = workspace(m * K, 0).reshape(self.groups, n1 - n0, y1 - y0, out_w, kh, kw, C // self.groups)
                if rows:
                    self._im2col_rows(xpad[n0:n1], cols[0], y0, y1, out_w)
                else:
                    self._im2col(x[n0:n1], cols, y0, y1, out_w)
                cols = cols.reshape(self.groups, m, K // self.groups)
                if clock is not None:
                    clock("gather")
                if self.groups == 1:
                    xp.matmul(cols[0], self.weight2d, out=o)
                else:  # (groups, m, K/groups) @ (groups, K/groups, O/groups), one batched product
                    o.reshape(m, self.groups, O // self.groups).transpose(1, 0, 2)[...] = xp.matmul(cols, self.weight)
            if clock is not None:
                clock("gemm")
            o += self.bias
            if shortcut is not None:
                shortcut += o
                o = shortcut
            if relu:
                xp.maximum(o, 0, out=o)
            if clock is not None:
                clock("epilogue")
        return out

    def _im2col(self, x: Array, cols: Array, y0: int, y1: int, out_w: int) -> None:
        """Fill ``cols`` (groups, n, y1-y0, out_w, kh, kw, C/groups) for output rows ``y0:y1`` of images ``x``.

        ``cols[g, n, oy, ox, i, j, c]`` is ``x[n, iy, ix, g*Cg + c]`` with
        ``iy = (y0+oy)*sy - ph + i*dy`` and ``ix = ox*sx - pw + j*dx``, or 0 in the padding.
        """
        n, H, W, C = x.shape
        G = self.groups
        taps = kernel_taps((H, W), (y0, y1), (0, out_w), self.kernel_size, self.stride, self.padding, self.dilation)
        for i, j, t in taps:
            dst = cols[:, :, :, :, i, j]  # (G, n, rows, out_w, Cg)
            if t.dst is not None and t.src is not None:
                src = x[:, t.src[0], t.src[1]]  # (n, rows', cols', C)
                dst[:, :, t.dst[0], t.dst[1]] = src.reshape(*src.shape[:3], G, C // G).transpose(3, 0, 1, 2, 4)
            for r, c in t.strips:  # the implicit padding this offset reads
                dst[:, :, r, c] = 0

    def _pad(self, x: Array) -> Array:
        """Return ``x`` (N, H, W, C) copied into a new ``(N, H + 2ph, W + 2pw, C)`` array with zero borders.

        A temporary, not a workspace slot: held across calls it would raise the fused path's resident
        memory by the stem's padded input (5 MB at batch 8, 224×224). Only the four border strips
        are zeroed. When ``x`` is a transposed NCHW array (the stem's input), each channel is a
        contiguous (N, H, W) plane and is copied as one: C strided copies instead of one copy whose
        innermost run is C floats (at 3 channels, 4× faster measured).
        """
        N, H, W, C = x.shape
        ph, pw = self.padding
        xpad: Array = get_array_module(x).empty((N, H + 2 * ph, W + 2 * pw, C), dtype=x.dtype)
        xpad[:, :ph] = 0
        xpad[:, ph + H :] = 0
        xpad[:, ph : ph + H, :pw] = 0
        xpad[:, ph : ph + H, pw + W :] = 0
        inner = xpad[:, ph : ph + H, pw : pw + W]  # (N, H, W, C)
        if x.strides[3] > x.strides[2]:  # channels outermost in memory: copy plane by plane
            for c in range(C):
                inner[..., c] = x[..., c]
        else:
            inner[...] = x
        return xpad

    def _im2col_rows(self, xpad: Array, cols: Array, y0: int, y1: int, out_w: int) -> None:
        """Fill ``cols`` (n, y1-y0, out_w, kh, kw, C) from the padded contiguous ``xpad`` (n, Hp, Wp, C).

        For kernel row ``i`` the ``kw*C`` taps of output pixel ``(oy, ox)`` are the contiguous run
        ``xpad[n, oy*sy + i*dy, ox*sx : ox*sx + kw, :]``. On NumPy each run is copied as one item
        (:meth:`_copy_row_runs`), elsewhere element by element through a strided view
        (:meth:`_copy_row_windows`); the two fill the same columns.
        """
        if get_array_module(xpad) is numpy and xpad.flags.c_contiguous and cols.flags.c_contiguous:
            self._copy_row_runs(xpad, cols, y0, y1, out_w)
        else:
            self._copy_row_windows(xpad, cols, y0, y1, out_w)

    def _copy_row_windows(self, xpad: Array, cols: Array, y0: int, y1: int, out_w: int) -> None:
        """:meth:`_im2col_rows` by a strided window view ``(n, rows, out_w, kw*C)`` per kernel row (any backend)."""
        xp = get_array_module(xpad)
        n, _, _, C = xpad.shape
        kh, kw = self.kernel_size
        (sy, sx), dy = self.stride, self.dilation[0]
        sN, sH, sW, sC = xpad.strides
        cols = cols.reshape(n, y1 - y0, out_w, kh, kw * C)
        for i in range(kh):
            start = xpad[:, y0 * sy + i * dy :]  # row of the first output row's tap i
            windows = xp.lib.stride_tricks.as_strided(
                start, shape=(n, y1 - y0, out_w, kw * C), strides=(sN, sy * sH, sx * sW, sC)
            )
            cols[:, :, :, i] = windows

    def _copy_row_runs(self, xpad: Array, cols: Array, y0: int, y1: int, out_w: int) -> None:
        """:meth:`_im2col_rows` on NumPy, each run of ``kw*C`` floats read as one item of a void dtype.

        The copy's innermost loop then runs over the ``out_w`` pixels rather than over one run's
        floats (21 for the stem's 7×3), which made the element copy as slow as the stem's product.
        Measured on AMD EPYC Zen 3 (``python benchmarks/stem_gather.py``, benchmarks/RESULTS.md): the
        gather 1.8–1.9× faster, the stem convolution 1.3–1.4×. Both arrays must be C-contiguous NumPy
        arrays: the views are built on their buffers, and NumPy checks that they stay inside them.
        """
        n, _, _, C = xpad.shape
        kh, kw = self.kernel_size
        (sy, sx), dy = self.stride, self.dilation[0]
        sN, sH, sW, _ = xpad.strides
        run = numpy.dtype((numpy.void, kw * C * xpad.itemsize))  # one kernel row's taps of one pixel
        shape, steps = (n, y1 - y0, out_w), (sN, sy * sH, sx * sW)
        cols = cols.reshape(n, y1 - y0, out_w, kh * kw * C)
        for i in range(kh):
            src = numpy.ndarray(shape, run, xpad, offset=(y0 * sy + i * dy) * sH, strides=steps)
            dst = numpy.ndarray(shape, run, cols, offset=i * kw * C * cols.itemsize, strides=cols.strides[:3])
            dst[...] = src
