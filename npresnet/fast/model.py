"""The fused, channels-last inference path of a ResNet.

:func:`fuse` turns a :class:`npresnet.models.ResNet` into a :class:`FusedResNet`: every
convolution with its batch norm folded in (:mod:`.fold`), run on NHWC activations by
:class:`.conv.FusedConv` (im2col + one product) or, for the stride-1 3×3 ones, by
:class:`.winograd.WinogradConv` (F(2×2,3×3): 2.25× fewer multiplications), with ReLUs and
residual adds done in place in each convolution's epilogue, and activation buffers reused
from call to call.

The readable reference remains ``model(x)``; this path computes the same function
(tested against torchvision for every architecture) in a different order of
operations, so results differ only by float rounding.
"""
from __future__ import annotations

import math
import threading

import numpy

from ..backend import get_array_module, to_backend, to_numpy
from ..models.resnet import check_image_batch
from ..shapes import conv_output_size
from .conv import DEFAULT_WORKSPACE_BYTES, FusedConv
from .fold import fold_batch_norm, gemm_weight
from .winograd import WinogradConv, is_winograd_eligible, winograd_weight

__all__ = ["fuse", "FusedResNet"]


def _fused_conv(conv, bn, backend, dtype, winograd=False):
    """Fold ``bn`` into ``conv`` (in float64), lay the weight out for NHWC, cast and move it.

    With ``winograd``, an eligible convolution (3×3, stride 1, dilation 1, groups 1) becomes a
    Winograd F(2×2,3×3) :class:`WinogradConv` that hands calls with few tiles to the im2col
    :class:`FusedConv`."""
    if isinstance(conv.padding, str):
        raise ValueError(f"fuse: string padding {conv.padding!r} is not supported ({conv})")
    weight, bias = fold_batch_norm(conv, bn)
    bias = to_backend(bias.astype(dtype), backend)
    gemm = gemm_weight(weight, conv.groups).astype(dtype)  # (groups, kh*kw*C/groups, O/groups)
    fused = FusedConv(to_backend(gemm, backend), bias,
                      conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups)
    if not (winograd and is_winograd_eligible(conv)):
        return fused
    U = winograd_weight(weight, m=2).astype(dtype)  # (16, C, O), transformed in float64
    return WinogradConv(to_backend(U, backend), bias, conv.padding, fallback=fused)


class _FusedBlock:
    """One residual block (BasicBlock or Bottleneck) as a list of fused convolutions."""

    def __init__(self, block, backend, dtype, winograd):
        names = ["conv1", "conv2"] + (["conv3"] if hasattr(block, "conv3") else [])
        self.convs = [_fused_conv(getattr(block, c), getattr(block, "bn" + c[-1]), backend, dtype, winograd)
                      for c in names]
        ds = block.downsample
        self.downsample = None if ds is None else _fused_conv(ds[0], ds[1], backend, dtype)


class _Buffers:
    """Activation buffers kept between calls (one set per thread), handed out by liveness.

    ``take(shape)`` returns a view of a free flat buffer, growing it if needed;
    ``give(array)`` frees it again. A forward pass takes and gives in the same order
    every time, so after the first call at a given input size nothing is allocated.
    """

    def __init__(self, xp, dtype):
        self.xp, self.dtype = xp, dtype
        self.free, self.busy = [], {}
        self.scratch = {}

    def take(self, shape):
        size = math.prod(shape)
        fits = [b for b in self.free if b.size >= size]
        if fits:
            buf = min(fits, key=lambda b: b.size)
            self.free = [b for b in self.free if b is not buf]
        else:
            if self.free:  # replace the largest free buffer by a bigger one
                largest = max(self.free, key=lambda b: b.size)
                self.free = [b for b in self.free if b is not largest]
            buf = self.xp.empty(size, dtype=self.dtype)
        view = buf[:size].reshape(shape)
        self.busy[id(view)] = buf
        return view

    def give(self, view):
        self.free.append(self.busy.pop(id(view)))

    def workspace(self, size, slot=0):
        """Flat scratch array ``slot`` (0: im2col columns, 1: a residual chunk's product), at least ``size`` long."""
        scratch = self.scratch.get(slot)
        if scratch is None or scratch.size < size:
            scratch = self.scratch[slot] = self.xp.empty(size, dtype=self.dtype)
        return scratch[:size]

    def nbytes(self) -> int:
        arrays = self.free + list(self.busy.values()) + list(self.scratch.values())
        return sum(a.nbytes for a in arrays)


class FusedResNet:
    """A ResNet's inference path with batch norm folded and channels-last activations.

    Build it with :func:`fuse` (or ``model.fuse()``). Call it like the model:
    ``fused(x)`` with ``x`` of shape (N, C, H, W) returns logits (N, num_classes).
    It is a snapshot: later changes to the model's parameters are not seen.

    Parameters
    ----------
    model : npresnet.models.ResNet
    workspace_bytes : int
        Bound on the im2col columns (or Winograd tiles) of any one convolution (chunks over
        images, then rows). Peak memory is about this plus a few activation-sized buffers
        (see ``benchmarks/RESULTS.md``).
    winograd : bool
        Run the stride-1 3×3 convolutions by Winograd F(2×2,3×3) (default) rather than im2col.

    Notes
    -----
    Buffers are cached per thread and reused across calls; the returned logits are a
    fresh array and never alias them.
    """

    def __init__(self, model, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, winograd: bool = True):
        if not (isinstance(workspace_bytes, int) and workspace_bytes > 0):
            raise ValueError(f"workspace_bytes must be a positive int, got {workspace_bytes!r}")
        self.workspace_bytes = workspace_bytes
        self.dtype, self.backend = numpy.dtype(model.dtype), model.backend
        self.in_channels = model.conv1.in_channels
        self.stem = _fused_conv(model.conv1, model.bn1, self.backend, self.dtype)
        pool = model.maxpool
        self.pool = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
        self.winograd = bool(winograd)
        self.blocks = [_FusedBlock(b, self.backend, self.dtype, self.winograd)
                       for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]
        fc_weight = numpy.ascontiguousarray(to_numpy(model.fc.weight).T)  # (in, out)
        self.fc_weight = to_backend(fc_weight, self.backend)
        self.fc_bias = to_backend(to_numpy(model.fc.bias).copy(), self.backend)
        self.num_classes = model.fc.out_features
        self._local = threading.local()

    def check_input(self, x):
        """Raise a clear error unless ``x`` is an (N, C, H, W) floating array of the fused model's dtype and backend."""
        check_image_batch(x, self.in_channels, self.dtype, self.backend, owner="the fused model")

    def _buffers(self, xp) -> _Buffers:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = _Buffers(xp, self.dtype)
        return buffers

    def buffer_bytes(self) -> int:
        """Bytes held by this thread's cached buffers (activations and workspace)."""
        buffers = getattr(self._local, "buffers", None)
        return 0 if buffers is None else buffers.nbytes()

    def clear_buffers(self) -> None:
        """Release this thread's cached buffers."""
        self._local.buffers = None

    def _conv(self, conv: FusedConv, x, buffers, relu=True, out=None):
        """Run ``conv`` on NHWC ``x`` into a fresh buffer, or with ``out`` given, add into it (the residual)."""
        try:
            shape = conv.output_shape(x.shape)
        except ValueError as exc:
            raise ValueError(f"input is too small for this network: at a {conv.kernel_size} convolution "
                             f"the activation has spatial size {x.shape[1:3]}: {exc}") from None
        residual = out is not None
        if not residual:
            out = buffers.take(shape)
        return conv(x, out, residual, relu, buffers.workspace, self.workspace_bytes)

    def _max_pool_relu(self, x, buffers):
        """``relu(max_pool(x))`` on NHWC ``x``. ReLU is monotone, so it commutes with the max;
        this lets the padding be 0 instead of -inf and the border windows be clipped slices."""
        xp = get_array_module(x)
        (kh, kw), (sy, sx), (ph, pw), (dy, dx), ceil_mode = self.pool
        N, H, W, C = x.shape
        try:
            out_h = conv_output_size(H, kh, sy, ph, dy, ceil_mode)
            out_w = conv_output_size(W, kw, sx, pw, dx, ceil_mode)
        except ValueError as exc:
            raise ValueError(f"input is too small for this network: at the max pool the activation "
                             f"has spatial size {(H, W)}: {exc}") from None
        out = buffers.take((N, out_h, out_w, C))
        out[...] = 0  # = relu's floor; also stands for the padding
        for i in range(kh):
            oy0 = max(0, -((i * dy - ph) // sy))
            oy1 = min(out_h, (H - 1 - i * dy + ph) // sy + 1)
            for j in range(kw):
                ox0 = max(0, -((j * dx - pw) // sx))
                ox1 = min(out_w, (W - 1 - j * dx + pw) // sx + 1)
                if oy0 >= oy1 or ox0 >= ox1:
                    continue
                iy, ix = oy0 * sy + i * dy - ph, ox0 * sx + j * dx - pw
                src = x[:, iy : iy + (oy1 - oy0 - 1) * sy + 1 : sy, ix : ix + (ox1 - ox0 - 1) * sx + 1 : sx]
                dst = out[:, oy0:oy1, ox0:ox1]
                xp.maximum(dst, src, out=dst)
        return out

    def __call__(self, x):
        """Logits for a batch.

        Parameters
        ----------
        x : array, shape (N, C, H, W), the model's dtype and backend

        Returns
        -------
        array, shape (N, num_classes)
        """
        self.check_input(x)
        xp = get_array_module(x)
        buffers = self._buffers(xp)
        # The stem reads the NCHW input through a transposed view; its ReLU is left to the pool.
        h = self._conv(self.stem, x.transpose(0, 2, 3, 1), buffers, relu=False)  # (N, H/2, W/2, 64)
        x = self._max_pool_relu(h, buffers)  # (N, H/4, W/4, 64)
        buffers.give(h)
        for block in self.blocks:
            x = self._block(block, x, buffers)
        N, H, W, C = x.shape
        pooled = x.reshape(N, H * W, C).mean(axis=1)  # (N, C): adaptive average pool to 1×1
        buffers.give(x)
        logits = pooled @ self.fc_weight  # (N, num_classes)
        logits += self.fc_bias
        return logits

    def _block(self, block: _FusedBlock, x, buffers):
        """``relu(convs(x) + shortcut(x))``; the output is written over the shortcut's buffer."""
        identity = x
        if block.downsample is not None:
            identity = self._conv(block.downsample, x, buffers, relu=False)
        h = self._conv(block.convs[0], x, buffers)
        if identity is not x:
            buffers.give(x)  # x's last reader was conv1
        for conv in block.convs[1:-1]:
            h_next = self._conv(conv, h, buffers)
            buffers.give(h)
            h = h_next
        out = self._conv(block.convs[-1], h, buffers, relu=True, out=identity)  # identity += conv(h); relu
        buffers.give(h)
        return out


def fuse(model, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, winograd: bool = True) -> FusedResNet:
    """Return the fused inference path of a ResNet (batch norm folded, channels-last, buffers reused).

    Parameters
    ----------
    model : npresnet.models.ResNet
        Its current parameters and running statistics are folded; training mode is ignored
        (the fused path always normalises with the running statistics, as ``model.eval()``).
    workspace_bytes : int
        Bound on the im2col workspace of any one convolution, in bytes.
    winograd : bool
        Winograd F(2×2,3×3) for the stride-1 3×3 convolutions (default); ``False``: im2col everywhere.

    Returns
    -------
    FusedResNet
    """
    return FusedResNet(model, workspace_bytes, winograd)
