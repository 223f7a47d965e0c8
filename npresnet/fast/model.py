"""The fused, channels-last inference path of a ResNet.

:func:`fuse` turns a :class:`npresnet.models.ResNet` into a :class:`FusedResNet`: every
convolution with its batch norm folded in (:mod:`.fold`), run on NHWC activations by
:class:`.conv.FusedConv` (im2col + one product) or, for the stride-1 3×3 ones, by
:class:`.winograd.WinogradConv` (F(4×4,3×3), 4× fewer multiplications, or F(2×2,3×3), 2.25×;
by default each call runs the cheaper of the two; ``winograd=``), with ReLUs and
residual adds done in place in each convolution's epilogue, and activation buffers reused
from call to call. On a CuPy backend the same walk runs GPU-native (:mod:`.device`): per
convolution one gather kernel (none for a stride-1 1×1), one cuBLAS product and one epilogue
kernel, with the precision chosen explicitly (``precision``).

The readable reference remains ``model(x)``; this path computes the same function
(tested against torchvision for every architecture) in a different order of
operations, so results differ only by float rounding.

Dependencies point one way: this module takes a model from outside and reads its
structure only through :meth:`npresnet.models.ResNet.layout` (stem, blocks as
(conv, bn) pairs plus shortcut, head); the models know nothing of fusion.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import TYPE_CHECKING, Any

import numpy

from ..backend import get_array_module, get_backend, to_backend, to_numpy
from ..formulas import conv2d_macs
from ..nn.inputs import check_image_batch
from ..shapes import conv_output_size
from ..workspace import resolve_workspace_bytes
from .conv import FusedConv
from .cuda.gemm import PRECISIONS
from .device import DeviceOps, pointwise
from .fold import fold_batch_norm, gemm_weight
from .pool import max_pool_relu
from .profile import LayerTime, PhaseClock
from .winograd import WinogradConv, is_winograd_eligible, winograd_tiles, winograd_weight

if TYPE_CHECKING:
    import types
    from collections.abc import Callable

    from .._typing import Array, Shape
    from ..models.resnet import BlockLayout, ResNet
    from ..nn import BatchNorm2d, Conv2d
    from .pool import PoolGeometry

__all__ = ["fuse", "FusedResNet"]


def _fused_conv(
    conv: Conv2d, bn: BatchNorm2d | None, backend: str, dtype: numpy.dtype[Any], tiles: tuple[int, ...] = ()
) -> FusedConv | WinogradConv:
    """Fold ``bn`` into ``conv`` (in float64), lay the weight out for NHWC, cast and move it.

    With output ``tiles`` sizes m (largest first, from ``(4, 2)``), an eligible convolution (3×3,
    stride 1, dilation 1, groups 1) becomes a chain of Winograd F(m×m,3×3) :class:`WinogradConv`:
    each hands the calls it would run slower to the next (a smaller tile), the last to the im2col
    :class:`FusedConv` (:meth:`WinogradConv.uses_winograd`).
    """
    if isinstance(conv.padding, str):
        raise ValueError(f"fuse: string padding {conv.padding!r} is not supported ({conv})")
    weight, bias = fold_batch_norm(conv, bn)
    bias = to_backend(bias.astype(dtype), backend)
    gemm = gemm_weight(weight, conv.groups).astype(dtype)  # (groups, kh*kw*C/groups, O/groups)
    fused: FusedConv | WinogradConv = FusedConv(
        to_backend(gemm, backend), bias, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups
    )
    if not is_winograd_eligible(conv):
        return fused
    for m in reversed(tiles):  # the smallest tile wraps the im2col fallback, the largest is outermost
        U = winograd_weight(weight, m=m).astype(dtype)  # ((m+2)², C, O), transformed in float64
        fused = WinogradConv(to_backend(U, backend), bias, conv.padding, fallback=fused)
    return fused


class _FusedBlock:
    """One residual block, from its :class:`npresnet.models.BlockLayout`, as a list of fused convolutions."""

    def __init__(self, layout: BlockLayout, backend: str, dtype: numpy.dtype[Any], tiles: tuple[int, ...]) -> None:
        self.names = [pair.name for pair in layout.main]
        self.convs = [_fused_conv(pair.conv, pair.bn, backend, dtype, tiles) for pair in layout.main]
        ds = layout.downsample
        self.downsample = None if ds is None else _fused_conv(ds.conv, ds.bn, backend, dtype)
        self.downsample_name = "" if ds is None else ds.name  # "": no downsample


class _Buffers:
    """Activation buffers kept between calls (one set per thread), handed out by liveness.

    ``take(shape)`` returns a view of a free flat buffer, growing it if needed;
    ``give(array)`` frees it again. A forward pass takes and gives in the same order
    every time, so after the first call at a given input size nothing is allocated.
    """

    def __init__(self, xp: types.ModuleType, dtype: numpy.dtype[Any]) -> None:
        self.xp, self.dtype = xp, dtype
        self.free: list[Array] = []
        self.busy: dict[int, Array] = {}  # id(view handed out) -> its flat buffer
        self.scratch: dict[int, Array] = {}  # slot -> flat scratch array

    def take(self, shape: Shape) -> Array:
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
        view: Array = buf[:size].reshape(shape)
        self.busy[id(view)] = buf
        return view

    def give(self, view: Array) -> None:
        self.free.append(self.busy.pop(id(view)))

    def workspace(self, size: int, slot: int = 0) -> Array:
        """Return flat scratch array ``slot``, at least ``size`` long.

        Slot 0: im2col columns or Winograd tiles; 1: a residual chunk's product or Winograd's second
        buffer.
        """
        scratch: Array | None = self.scratch.get(slot)
        if scratch is None or scratch.size < size:
            scratch = self.scratch[slot] = self.xp.empty(size, dtype=self.dtype)
        return scratch[:size]

    def nbytes(self) -> int:
        arrays = self.free + list(self.busy.values()) + list(self.scratch.values())
        return sum(a.nbytes for a in arrays)


class FusedResNet:
    """A ResNet's inference path with batch norm folded and channels-last activations.

    Build it with :func:`fuse`. Call it like the model:
    ``fused(x)`` with ``x`` of shape (N, C, H, W) returns logits (N, num_classes).
    It is a snapshot: later changes to the model's parameters are not seen.

    Parameters
    ----------
    model : npresnet.models.ResNet
        Anything with a ``layout()`` returning :class:`npresnet.models.ResNetLayout`, and
        ``dtype`` and ``backend`` attributes.
    workspace_bytes : int, optional
        Bound on one chunk's im2col columns (or Winograd tiles) plus its output, for every
        convolution (:mod:`npresnet.workspace`); None: the backend's default, read at each call.
        Peak memory is about this plus a few activation-sized buffers (see ``benchmarks/RESULTS.md``).
    winograd : {True, "F4", "F2", "auto", False}
        How the stride-1 3×3 convolutions run; see :func:`fuse`. Kept, resolved, as the
        attribute ``winograd`` ("F4" for True, "F4", "F2", "F4+F2" for "auto", or False).
    precision : {None, "float32", "tf32", "float16"}
        See :func:`fuse`.

    Notes
    -----
    Buffers are cached per thread and reused across calls; the returned logits are a
    fresh array and never alias them.
    """

    def __init__(
        self,
        model: ResNet,
        workspace_bytes: int | None = None,
        winograd: bool | str = True,
        precision: str | None = None,
    ) -> None:
        if workspace_bytes is not None:
            resolve_workspace_bytes(workspace_bytes)  # refuse a bad value now
        tiles = winograd_tiles(winograd)  # refuse a bad value now
        self.workspace_bytes = workspace_bytes
        self.dtype, self.backend = numpy.dtype(model.dtype), model.backend
        xp = get_backend(self.backend)
        on_device = getattr(xp, "__name__", "") == "cupy"
        self.precision = _check_precision(precision, self.dtype, self.backend, on_device)
        self._device = DeviceOps(xp, self.dtype, self.precision) if on_device else None
        layout = model.layout()
        if layout.avgpool.output_size not in (1, (1, 1), [1, 1]):
            raise ValueError(f"fuse: the head must pool to 1x1, got {layout.avgpool}")
        self.in_channels = layout.stem.conv.in_channels
        self.stem = _fused_conv(layout.stem.conv, layout.stem.bn, self.backend, self.dtype)
        self.stem_name = layout.stem.name
        pool = layout.maxpool
        self.pool: PoolGeometry = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
        self.winograd = "+".join(f"F{m}" for m in tiles) or False
        on_host = self._device is None  # on a device every convolution runs by im2col: no Winograd weights
        self.blocks = [_FusedBlock(b, self.backend, self.dtype, tiles if on_host else ()) for b in layout.blocks]
        fc = layout.fc
        fc_weight = numpy.ascontiguousarray(to_numpy(fc.weight).T)  # (in, out)
        self.fc_weight = to_backend(fc_weight, self.backend)
        fc_bias = numpy.zeros(fc.out_features, fc_weight.dtype) if fc.bias is None else to_numpy(fc.bias).copy()
        self.fc_bias = to_backend(fc_bias, self.backend)
        self.num_classes = fc.out_features
        self._local = threading.local()

    def check_input(self, x: Array) -> None:
        """Raise a clear error unless ``x`` is an (N, C, H, W) floating array of the fused model's dtype and backend."""
        check_image_batch(x, self.in_channels, self.dtype, self.backend, owner="the fused model")

    def _buffers(self, xp: types.ModuleType) -> _Buffers:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            storage = self.dtype if self._device is None else self._device.storage  # float16 in float16 mode
            buffers = self._local.buffers = _Buffers(xp, storage)
        return buffers

    def buffer_bytes(self) -> int:
        """Bytes held by this thread's cached buffers: activations, workspace, float16 mode's float32 accumulator."""
        buffers = getattr(self._local, "buffers", None)
        held = 0 if buffers is None else buffers.nbytes()
        return held + (0 if self._device is None else self._device.accumulator_bytes())

    def clear_buffers(self) -> None:
        """Release this thread's cached buffers, the float16 mode's accumulator included."""
        self._local.buffers = None
        if self._device is not None:
            self._device.clear_accumulator()

    def _conv(
        self,
        conv: FusedConv | WinogradConv,
        x: Array,
        buffers: _Buffers,
        run: _Run,
        name: str,
        relu: bool = True,
        out: Array | None = None,
    ) -> Array:
        """Run ``conv`` on NHWC ``x`` into a fresh buffer, or with ``out`` given, add into it (the residual).

        On a CuPy backend the convolution runs GPU-native (:meth:`.device.DeviceOps.conv`).
        """
        try:
            shape = conv.output_shape(x.shape)
        except ValueError as exc:
            raise ValueError(
                f"input is too small for this network: at a {conv.kernel_size} convolution "
                f"the activation has spatial size {x.shape[1:3]}: {exc}"
            ) from None
        residual = out is not None
        if out is None:
            out = buffers.take(shape)
        execute: Callable[..., Array] = conv if self._device is None else functools.partial(self._device.conv, conv)
        if run.clock is None or run.records is None:
            return execute(x, out, residual, relu, buffers.workspace, run.workspace_bytes)
        run.clock.start()
        execute(x, out, residual, relu, buffers.workspace, run.workspace_bytes, run.clock)
        N, out_h, out_w, O = out.shape
        macs = conv2d_macs((N, O, out_h, out_w), x.shape[3], conv.kernel_size, conv.groups)
        run.records.append(
            LayerTime(
                name,
                _kind(conv, x, out.shape, self._device is not None),
                tuple(x.shape),
                tuple(out.shape),
                run.clock.elapsed(),
                dict(run.clock.phases),
                macs,
            )
        )
        return out

    def _max_pool_relu(self, x: Array, buffers: _Buffers, workspace_bytes: int) -> Array:
        """Compute ``relu(max_pool(x))`` on NHWC ``x`` into a fresh buffer (:func:`.pool.max_pool_relu`)."""
        return max_pool_relu(x, buffers.take(self._pool_shape(x.shape)), self.pool, buffers.workspace, workspace_bytes)

    def _pool_shape(self, shape: Shape) -> tuple[int, int, int, int]:
        """Return the max pool's NHWC output shape for an NHWC input ``shape``.

        A ValueError names the size if it is too small.
        """
        (kh, kw), (sy, sx), (ph, pw), (dy, dx), ceil_mode = self.pool
        N, H, W, C = shape
        try:
            out_h = conv_output_size(H, kh, sy, ph, dy, ceil_mode)
            out_w = conv_output_size(W, kw, sx, pw, dx, ceil_mode)
        except ValueError as exc:
            raise ValueError(
                f"input is too small for this network: at the max pool the activation has spatial size {(H, W)}: {exc}"
            ) from None
        return N, out_h, out_w, C

    def __call__(self, x: Array) -> Array:
        """Logits for a batch.

        Parameters
        ----------
        x : array, shape (N, C, H, W), the model's dtype and backend

        Returns
        -------
        array, shape (N, num_classes)
        """
        return self._forward(x, _Run(self._workspace_bytes(x), None, None))

    def profile(self, x: Array) -> list[LayerTime]:
        """Run one forward pass and return where its time went.

        One :class:`npresnet.fast.profile.LayerTime`
        per step (the stem, the max pool, every convolution in order, the head), with the seconds of each
        convolution's phases (gather, gemm, epilogue). The logits are computed and dropped.

        Parameters
        ----------
        x : array, shape (N, C, H, W), the model's dtype and backend

        Returns
        -------
        list of LayerTime
        """
        xp = get_array_module(x)
        sync = xp.cuda.Device().synchronize if getattr(xp, "__name__", "") == "cupy" else None
        records: list[LayerTime] = []
        self._forward(x, _Run(self._workspace_bytes(x), PhaseClock(sync), records))
        return records

    def _workspace_bytes(self, x: Array) -> int:
        return resolve_workspace_bytes(self.workspace_bytes, get_array_module(x))

    def _forward(self, x: Array, run: _Run) -> Array:
        if self._device is not None:
            return self._device_forward(self._device, x, run)
        self.check_input(x)
        xp = get_array_module(x)
        buffers = self._buffers(xp)
        # The stem reads the NCHW input through a transposed view; its ReLU is left to the pool.
        x_nhwc = x.transpose(0, 2, 3, 1)  # a view
        h = self._conv(self.stem, x_nhwc, buffers, run, self.stem_name, relu=False)  # (N, H/2, W/2, 64)
        with run.step("maxpool", "maxpool", h.shape) as step:
            x = step.done(self._max_pool_relu(h, buffers, run.workspace_bytes))  # (N, H/4, W/4, 64)
        buffers.give(h)
        for block in self.blocks:
            x = self._block(block, x, buffers, run)
        with run.step("avgpool+fc", "head", x.shape) as step:
            N, H, W, C = x.shape
            pooled = x.reshape(N, H * W, C).mean(axis=1)  # (N, C): adaptive average pool to 1×1
            buffers.give(x)
            logits: Array = pooled @ self.fc_weight  # (N, num_classes)
            logits += self.fc_bias
            step.done(logits)
        return logits

    def _device_forward(self, device: DeviceOps, x: Array, run: _Run) -> Array:
        """Run the forward pass on a CuPy device: the same walk, each step a constant number of launches."""
        self.check_input(x)
        xp = get_array_module(x)
        buffers = self._buffers(xp)
        N, C, H, W = x.shape
        x_nhwc = buffers.take((N, H, W, C))
        x_nhwc[...] = x.transpose(0, 2, 3, 1)  # one copy: the gather kernel reads contiguous NHWC
        # ReLU in the stem's epilogue, before the pool: the two commute.
        h = self._conv(self.stem, x_nhwc, buffers, run, self.stem_name, relu=True)  # (N, H/2, W/2, 64)
        buffers.give(x_nhwc)
        with run.step("maxpool", "maxpool", h.shape) as step:
            x = step.done(device.max_pool(h, self.pool, buffers.take(self._pool_shape(h.shape))))
        buffers.give(h)
        for block in self.blocks:
            x = self._block(block, x, buffers, run)
        with run.step("avgpool+fc", "head", x.shape) as step:
            logits = step.done(device.head(x, self.fc_weight, self.fc_bias))  # (N, num_classes)
        buffers.give(x)
        return logits

    def _block(self, block: _FusedBlock, x: Array, buffers: _Buffers, run: _Run) -> Array:
        """``relu(convs(x) + shortcut(x))``; the output is written over the shortcut's buffer."""
        identity = x
        if block.downsample is not None:
            identity = self._conv(block.downsample, x, buffers, run, block.downsample_name, relu=False)
        h = self._conv(block.convs[0], x, buffers, run, block.names[0])
        if identity is not x:
            buffers.give(x)  # x's last reader was conv1
        for conv, name in zip(block.convs[1:-1], block.names[1:-1]):
            h_next = self._conv(conv, h, buffers, run, name)
            buffers.give(h)
            h = h_next
        # identity += conv(h); relu
        out = self._conv(block.convs[-1], h, buffers, run, block.names[-1], relu=True, out=identity)
        buffers.give(h)
        return out


def _check_precision(precision: str | None, dtype: numpy.dtype[Any], backend: str, on_device: bool) -> str:
    """Return the precision mode for a model of ``dtype`` on ``backend``.

    The dtype's name when None; a clear error for a mode the model cannot run.
    """
    if precision is None:
        return str(dtype.name)
    if precision not in PRECISIONS:
        raise ValueError(f"fuse: precision={precision!r}, expected None or one of {PRECISIONS}")
    if dtype != numpy.float32:
        raise ValueError(f"fuse: precision={precision!r} needs a float32 model, got {dtype}")
    if precision != "float32" and not on_device:
        raise ValueError(f"fuse: precision={precision!r} needs a CuPy backend (cuBLAS); the model is on {backend!r}")
    return precision


def _kind(conv: FusedConv | WinogradConv, x: Array, out_shape: Shape, on_device: bool = False) -> str:
    """How a call of ``conv`` on ``x`` runs: "winograd", "pointwise" (no columns) or "im2col"."""
    if on_device:
        return "pointwise" if pointwise(conv) else "im2col"
    while isinstance(conv, WinogradConv):
        if conv.fallback is None or conv.uses_winograd(out_shape):
            return "winograd"
        conv = conv.fallback
    if conv.pointwise and conv.stride == (1, 1) and x.flags.c_contiguous:
        return "pointwise"
    return "im2col"


class _Run:
    """One forward pass's settings: the resolved workspace bound, and when profiling, the clock and the records."""

    def __init__(self, workspace_bytes: int, clock: PhaseClock | None, records: list[LayerTime] | None) -> None:
        self.workspace_bytes, self.clock, self.records = workspace_bytes, clock, records

    def step(self, name: str, kind: str, in_shape: Shape) -> _Step:
        return _Step(self, name, kind, in_shape)


class _Step:
    """A timed non-convolution step (pooling, head) of a profiled pass; a no-op otherwise."""

    def __init__(self, run: _Run, name: str, kind: str, in_shape: Shape) -> None:
        self.run, self.name, self.kind, self.in_shape = run, name, kind, tuple(in_shape)
        self.out: Array | None = None

    def __enter__(self) -> _Step:
        if self.run.clock is not None:
            self.run.clock.start()
        return self

    def done(self, out: Array) -> Array:
        self.out = out
        return out

    def __exit__(self, *exc: object) -> None:
        clock, records = self.run.clock, self.run.records
        if clock is not None and records is not None and self.out is not None and exc[0] is None:
            clock(self.kind)
            out_shape = tuple(self.out.shape)
            records.append(LayerTime(self.name, self.kind, self.in_shape, out_shape, clock.elapsed(), {}, 0))


def fuse(
    model: ResNet, workspace_bytes: int | None = None, winograd: bool | str = True, precision: str | None = None
) -> FusedResNet:
    """Return the fused inference path of a ResNet (batch norm folded, channels-last, buffers reused).

    Parameters
    ----------
    model : npresnet.models.ResNet
        Its current parameters and running statistics are folded; training mode is ignored
        (the fused path always normalises with the running statistics, as ``model.eval()``).
        Read through ``model.layout()`` only.
    workspace_bytes : int, optional
        Bound on one chunk's im2col columns (or Winograd tiles) plus its output, in bytes
        (:mod:`npresnet.workspace`); None: the backend's default.
    winograd : {True, "F4", "F2", "auto", False}
        How the stride-1 3×3 convolutions run: ``"F4"`` (and ``True``, the default), Winograd F(4×4,3×3) (4× fewer
        multiplications; its transformed weights take 4× the memory of those convolutions'
        weights, held beside them: ResNet-18 +144 MiB, ResNet-50 +125 MiB); ``"F2"``, F(2×2,3×3)
        (2.25× fewer, 16/9× the memory: +64 MiB, +56 MiB, and a logit error bound 4–5× smaller);
        ``"auto"``: both held (+208 MiB, +181 MiB), and each call runs the cheaper by
        ``npresnet.fast.winograd.winograd_cost()`` (F(4×4) unless the call has few tiles for its
        channels, as 14×14 at batch 1: 4–7 % less CPU time at batch 1, the same at batch 8);
        ``False``: im2col everywhere. Calls with few tiles (batch 1 at 7×7) run by im2col
        whatever the choice (``npresnet.fast.winograd.MIN_TILES``). The float32 error bound
        of each is derived in ``npresnet.fast.winograd``. NumPy only: on a CuPy backend every
        convolution runs by im2col and one cuBLAS product.
    precision : {None, "float32", "tf32", "float16"}
        How the products are computed. None (default): in the model's dtype, float32 or float64,
        exactly as asked (on CuPy, cuBLAS's ``CUBLAS_COMPUTE_32F`` / ``_64F``: never TF32 silently,
        whatever ``CUPY_TF32`` says). ``"float32"``: the same, for a float32 model, stated.
        ``"tf32"``: a float32 model on CuPy, its products on TF32 tensor cores
        (``CUBLAS_COMPUTE_32F_FAST_TF32``: inputs rounded to 10 mantissa bits, float32
        accumulation); its error against float64 is measured on a GPU only
        (``benchmarks/gpu_check.py``). ``"float16"``: a float32 model on CuPy, activations and
        convolution weights stored in float16, products accumulated in float32, each epilogue
        computed in float32 and rounded once; float32 logits (``device``).

    Returns
    -------
    FusedResNet
    """
    return FusedResNet(model, workspace_bytes, winograd, precision)
