"""A property-testing kit for convolution and pooling arithmetic.

npresnet's own tests use it, and other projects can use it to property-test their own
``conv2d``: hypothesis strategies that draw only *valid* layer configurations, a naive
float64 oracle written straight from the definitions, and an assertion helper that checks
any function with ``torch.nn.functional.conv2d``'s signature against that oracle.

The oracle (``reference_*``) loops over output pixels and kernel offsets and reads the
input at ``iy = oy*sy - pad_top + ky*dy``; positions outside the input are padding. It
counts window positions by walking them, not with the output-size formula, so it is an
independent check of :func:`npresnet.shapes.conv_output_size` as well. It is slow: keep
inputs small (the strategies do).

Example
-------
>>> from hypothesis import given
>>> from npresnet.functional import conv2d
>>> from npresnet.testing import assert_conv2d_matches, conv2d_configs
>>> @given(conv2d_configs())
... def test_my_conv2d(config):
...     assert_conv2d_matches(conv2d, config)
>>> test_my_conv2d()

Requires ``hypothesis`` (``pip install hypothesis``, or ``pip install "npresnet[test]"``).
"""

from __future__ import annotations

import dataclasses
import math

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - exercised only without hypothesis
    raise ImportError(
        'npresnet.testing needs hypothesis: pip install hypothesis (or pip install "npresnet[test]")'
    ) from exc

import numpy

from .backend import to_numpy
from .shapes import conv_output_size, pair

__all__ = [
    "ConvConfig",
    "PoolConfig",
    "AdaptivePoolConfig",
    "conv2d_configs",
    "pool2d_configs",
    "adaptive_pool_configs",
    "reference_conv2d",
    "reference_max_pool2d",
    "reference_avg_pool2d",
    "reference_adaptive_avg_pool2d",
    "conv2d_error_bound",
    "assert_conv2d_matches",
    "assert_pool2d_matches",
]


# --------------------------------------------------------------------------- configurations
@dataclasses.dataclass(frozen=True)
class ConvConfig:
    """One valid ``conv2d`` call: shapes plus the keyword arguments.

    Attributes
    ----------
    input_shape : tuple
        ``(N, C, H, W)``, or ``(C, H, W)`` for an unbatched image.
    weight_shape : tuple
        ``(O, C // groups, kh, kw)``.
    bias : bool
        Whether the call passes a bias of shape ``(O,)``.
    stride, dilation : (int, int)
    padding : (int, int), 'same' or 'valid'
    groups : int
    """

    input_shape: tuple
    weight_shape: tuple
    bias: bool
    stride: tuple
    padding: object
    dilation: tuple
    groups: int

    def kwargs(self) -> dict:
        """Keyword arguments for ``conv2d(input, weight, bias, **kwargs)``."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def output_shape(self) -> tuple:
        """The output shape, from :func:`npresnet.shapes.conv_output_size`."""
        *lead, H, W = self.input_shape
        O, _, kh, kw = self.weight_shape
        (pt, pb), (pl, pr) = _conv_pads(self.padding, (kh, kw), self.dilation)
        # 'same' pads asymmetrically; the formula's symmetric padding p covers p + p rows.
        out_h = conv_output_size(H + pb - pt, kh, self.stride[0], pt, self.dilation[0])
        out_w = conv_output_size(W + pr - pl, kw, self.stride[1], pl, self.dilation[1])
        return (*lead[:-1], O, out_h, out_w)

    def arrays(self, seed: int = 0, dtype=numpy.float64):
        """Random NumPy ``(input, weight, bias or None)`` for this call, values in [-1, 1)."""
        rng = numpy.random.default_rng(seed)
        x = rng.uniform(-1, 1, self.input_shape).astype(dtype)
        w = rng.uniform(-1, 1, self.weight_shape).astype(dtype)
        b = rng.uniform(-1, 1, self.weight_shape[:1]).astype(dtype) if self.bias else None
        return x, w, b


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """One valid ``max_pool2d`` or ``avg_pool2d`` call.

    Attributes
    ----------
    kind : {"max", "avg"}
    input_shape : tuple
        ``(N, C, H, W)`` or ``(C, H, W)``.
    kernel_size : (int, int)
    stride : (int, int) or None
        None means "equal to kernel_size", the torch default.
    padding : (int, int)
        At most ``kernel_size // 2`` per axis.
    dilation : (int, int)
        Always ``(1, 1)`` for ``"avg"``.
    ceil_mode, count_include_pad : bool
    divisor_override : int or None
        ``count_include_pad`` and ``divisor_override`` only apply to ``"avg"``.
    """

    kind: str
    input_shape: tuple
    kernel_size: tuple
    stride: object
    padding: tuple
    dilation: tuple
    ceil_mode: bool
    count_include_pad: bool = True
    divisor_override: object = None

    def kwargs(self) -> dict:
        """Keyword arguments for ``max_pool2d(input, **kwargs)`` or ``avg_pool2d(input, **kwargs)``."""
        kw = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode)
        if self.kind == "max":
            kw["dilation"] = self.dilation
        else:
            kw.update(count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)
        return kw

    def output_shape(self) -> tuple:
        """The output shape, from :func:`npresnet.shapes.conv_output_size`."""
        *lead, H, W = self.input_shape
        stride = self.kernel_size if self.stride is None else self.stride
        out = [
            conv_output_size(n, k, s, p, d, self.ceil_mode)
            for n, k, s, p, d in zip((H, W), self.kernel_size, stride, self.padding, self.dilation)
        ]
        return (*lead, *out)

    def reference(self, x):
        """Run the matching ``reference_*`` oracle on ``x``."""
        if self.kind == "max":
            return reference_max_pool2d(x, **self.kwargs())
        return reference_avg_pool2d(x, **self.kwargs())


@dataclasses.dataclass(frozen=True)
class AdaptivePoolConfig:
    """One ``adaptive_avg_pool2d(input, output_size)`` call.

    ``output_size`` is an int, a pair, or a pair with None ("keep that input size"), and may
    exceed the input size.
    """

    input_shape: tuple
    output_size: object


def _sizes(draw, low: int, high: int, asymmetric: bool):
    """Draw an (h, w) pair in [low, high], equal unless ``asymmetric`` draws them separately."""
    a = draw(st.integers(low, high))
    return (a, draw(st.integers(low, high))) if asymmetric else (a, a)


def _lead_shape(draw, max_batch: int, channels: int, unbatched: bool) -> tuple:
    if unbatched and draw(st.booleans()):
        return (channels,)
    return (draw(st.integers(1, max_batch)), channels)


@st.composite
def conv2d_configs(
    draw,
    *,
    max_batch=2,
    max_channels_per_group=3,
    max_groups=3,
    max_kernel=4,
    max_stride=3,
    max_dilation=3,
    max_padding=3,
    max_extra=5,
    unbatched=True,
    same_and_valid=True,
):
    """Hypothesis strategy for valid :class:`ConvConfig` s.

    Draws groups first, then channel counts that are multiples of it; kernels (square or
    not), strides, dilations and paddings per axis (an int pair with ``ph != pw`` is common);
    ``'valid'``, and ``'same'`` with stride 1; then an input size no smaller than the dilated
    window needs, plus ``0..max_extra`` so strides often do not divide the span.

    Parameters
    ----------
    max_batch, max_channels_per_group, max_groups, max_kernel, max_stride, max_dilation, max_padding : int
        Upper bounds of the drawn values (lower bounds are 1, or 0 for padding).
    max_extra : int
        How far past the smallest valid size the spatial size may go.
    unbatched : bool
        Sometimes draw a ``(C, H, W)`` input.
    same_and_valid : bool
        Sometimes draw ``padding='same'`` or ``'valid'``.

    Example
    -------
    >>> from hypothesis import given
    >>> from npresnet.functional import conv2d
    >>> @given(conv2d_configs(max_groups=1))
    ... def test_shape(config):
    ...     assert conv2d(*config.arrays(), **config.kwargs()).shape == config.output_shape()
    >>> test_shape()
    """
    groups = draw(st.integers(1, max_groups))
    C = groups * draw(st.integers(1, max_channels_per_group))
    O = groups * draw(st.integers(1, max_channels_per_group))
    asym = draw(st.booleans())
    kernel = _sizes(draw, 1, max_kernel, asym)
    dilation = _sizes(draw, 1, max_dilation, draw(st.booleans()))
    mode = draw(st.sampled_from(["ints", "ints", "ints", "same", "valid"])) if same_and_valid else "ints"
    if mode == "same":
        padding, stride = "same", (1, 1)
    else:
        padding = (0, 0) if mode == "valid" else _sizes(draw, 0, max_padding, draw(st.booleans()))
        stride = _sizes(draw, 1, max_stride, draw(st.booleans()))
        if mode == "valid" and draw(st.booleans()):
            padding = "valid"
    pads = (0, 0) if isinstance(padding, str) else padding
    # The dilated window d*(k-1)+1 must fit in the padded input n + 2p (and n >= 1).
    low = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in zip(kernel, dilation, pads)]
    H = draw(st.integers(low[0], low[0] + max_extra))
    W = draw(st.integers(low[1], low[1] + max_extra))
    lead = _lead_shape(draw, max_batch, C, unbatched)
    return ConvConfig(
        input_shape=(*lead, H, W),
        weight_shape=(O, C // groups, *kernel),
        bias=draw(st.booleans()),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


@st.composite
def pool2d_configs(
    draw,
    kind=None,
    *,
    max_batch=2,
    max_channels=3,
    max_kernel=4,
    max_stride=4,
    max_dilation=3,
    max_extra=5,
    unbatched=True,
):
    """Hypothesis strategy for valid :class:`PoolConfig` s (max or average pooling).

    Padding is at most ``kernel_size // 2`` (PyTorch's limit); the input is at least as large
    as the dilated window needs; ``stride=None`` (the default, equal to the kernel) is drawn
    sometimes; ``ceil_mode`` both ways, which with strides that do not divide the span and
    small inputs exercises the "last window must start inside the input or left padding" rule.
    For ``"avg"``: ``count_include_pad`` both ways and sometimes a ``divisor_override``.

    Parameters
    ----------
    kind : {"max", "avg", None}
        None draws either.
    max_batch, max_channels, max_kernel, max_stride, max_dilation, max_extra : int
        Upper bounds, as in :func:`conv2d_configs`.
    unbatched : bool
        Sometimes draw a ``(C, H, W)`` input.
    """
    kind = kind or draw(st.sampled_from(["max", "avg"]))
    asym = draw(st.booleans())
    kernel = _sizes(draw, 1, max_kernel, asym)
    dilation = (1, 1) if kind == "avg" else _sizes(draw, 1, max_dilation, draw(st.booleans()))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    stride = None if draw(st.integers(0, 4)) == 0 else _sizes(draw, 1, max_stride, draw(st.booleans()))
    low = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in zip(kernel, dilation, padding)]
    H = draw(st.integers(low[0], low[0] + max_extra))
    W = draw(st.integers(low[1], low[1] + max_extra))
    lead = _lead_shape(draw, max_batch, draw(st.integers(1, max_channels)), unbatched)
    extra = {}
    if kind == "avg":
        extra["count_include_pad"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            extra["divisor_override"] = draw(st.integers(1, 10) | st.integers(-10, -1))
    return PoolConfig(
        kind=kind,
        input_shape=(*lead, H, W),
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=draw(st.booleans()),
        **extra,
    )


@st.composite
def adaptive_pool_configs(draw, *, max_batch=2, max_channels=3, max_size=9, max_output=9, unbatched=True):
    """Hypothesis strategy for :class:`AdaptivePoolConfig` s: any input size 1..``max_size``,
    any output size 1..``max_output`` (larger than the input too), as an int, a pair or a
    pair with None."""
    H, W = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    lead = _lead_shape(draw, max_batch, draw(st.integers(1, max_channels)), unbatched)
    out = st.integers(1, max_output)
    output_size = draw(st.one_of(out, st.tuples(out, out), st.tuples(out | st.none(), out | st.none())))
    return AdaptivePoolConfig(input_shape=(*lead, H, W), output_size=output_size)


# --------------------------------------------------------------------------- the oracle
def _conv_pads(padding, kernel, dilation):
    """((top, bottom), (left, right)) for conv2d's padding argument; 'same' puts the odd one last."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in total)
    ph, pw = pair(padding, "padding")
    return (ph, ph), (pw, pw)


def _window_starts(size, kernel, stride, pad_before, pad_after, dilation, ceil_mode=False):
    """Start of every window along one axis, in input coordinates (negative = left padding).

    Walks the windows instead of using the formula: a window is kept while its last tap
    stays inside the padded input. In ceil mode another window is added while the previous
    one has not reached the end of the padded input, provided it starts inside the input
    or its left padding (PyTorch's rule).
    """
    reach = dilation * (kernel - 1)  # last tap, relative to the window start
    end = size + pad_after  # one past the last padded position
    starts = []
    start = -pad_before
    while start + reach < end:
        starts.append(start)
        start += stride
    if ceil_mode and starts and starts[-1] + reach < end - 1 and start < size:
        starts.append(start)
    return starts


def reference_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Naive float64 ``conv2d`` (cross-correlation), the oracle. Small inputs only.

    ``out[n, o, oy, ox] = bias[o] + sum over c, ky, kx of
    input[n, g*Cg + c, oy*sy - pt + ky*dy, ox*sx - pl + kx*dx] * weight[o, c, ky, kx]``,
    where ``g = o // (O // groups)`` and positions outside the input are zero padding.

    Parameters and shapes are those of ``torch.nn.functional.conv2d``; inputs may be any
    array the NumPy ``asarray`` accepts. Returns a float64 NumPy array.
    """
    x = numpy.asarray(input, dtype=numpy.float64)
    w = numpy.asarray(weight, dtype=numpy.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Og = O // groups
    sy, sx = pair(stride, "stride")
    dy, dx = pair(dilation, "dilation")
    (pt, pb), (pl, pr) = _conv_pads(padding, (kh, kw), (dy, dx))
    rows = _window_starts(H, kh, sy, pt, pb, dy)
    cols = _window_starts(W, kw, sx, pl, pr, dx)
    out = numpy.zeros((N, O, len(rows), len(cols)))
    for oy, y0 in enumerate(rows):
        for ox, x0 in enumerate(cols):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = y0 + ky * dy, x0 + kx * dx
                    if not (0 <= iy < H and 0 <= ix < W):
                        continue  # zero padding adds nothing
                    for g in range(groups):
                        # (N, Cg) @ (Cg, Og) -> (N, Og)
                        out[:, g * Og : (g + 1) * Og, oy, ox] += (
                            x[:, g * Cg : (g + 1) * Cg, iy, ix] @ w[g * Og : (g + 1) * Og, :, ky, kx].T
                        )
    if bias is not None:
        out += numpy.asarray(bias, dtype=numpy.float64)[None, :, None, None]
    return out[0] if unbatched else out


def _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Yield ``(oy, ox, out_h, out_w, taps, n_padded)`` per window: its taps inside the input,
    shape (N, C, taps), and how many of its taps lie in the input or its padding (so not in a
    ceil-mode overhang)."""
    N, C, H, W = x.shape
    (kh, kw), (ph, pw), (dy, dx) = (
        pair(kernel_size, "kernel_size"),
        pair(padding, "padding"),
        pair(dilation, "dilation"),
    )
    sy, sx = (kh, kw) if stride is None else pair(stride, "stride")
    rows = _window_starts(H, kh, sy, ph, ph, dy, ceil_mode)
    cols = _window_starts(W, kw, sx, pw, pw, dx, ceil_mode)
    for oy, y0 in enumerate(rows):
        for ox, x0 in enumerate(cols):
            taps, n_padded = [], 0
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = y0 + ky * dy, x0 + kx * dx
                    n_padded += (-ph <= iy < H + ph) and (-pw <= ix < W + pw)
                    if 0 <= iy < H and 0 <= ix < W:
                        taps.append(x[:, :, iy, ix])
            yield oy, ox, len(rows), len(cols), numpy.stack(taps, axis=-1) if taps else numpy.empty((N, C, 0)), n_padded


def _pool(x, reduce, kernel_size, stride, padding, dilation, ceil_mode):
    x = numpy.asarray(x, dtype=numpy.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    out = None
    for oy, ox, out_h, out_w, taps, n_padded in _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode):
        if out is None:
            out = numpy.empty(x.shape[:2] + (out_h, out_w))
        out[:, :, oy, ox] = reduce(taps, n_padded)
    return out[0] if unbatched else out


def reference_max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Naive float64 ``max_pool2d``, the oracle: the max over each window's taps inside the input.

    Padding never wins (it is −∞); a window with no tap inside the input gives −∞; NaN propagates.
    Small inputs only. Returns a float64 NumPy array.
    """

    def reduce(taps, _):
        if taps.shape[-1] == 0:
            return -math.inf
        return taps.max(axis=-1)  # NaN-propagating

    return _pool(input, reduce, kernel_size, stride, padding, dilation, ceil_mode)


def reference_avg_pool2d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """Naive float64 ``avg_pool2d``, the oracle: the sum of each window's taps inside the input,
    divided by ``divisor_override``, or by the number of taps inside the input and its zero padding
    (``count_include_pad``; a ceil-mode overhang past the padding is not counted), or by the number
    inside the input alone. Small inputs only. Returns a float64 NumPy array.
    """

    def reduce(taps, n_padded):
        if divisor_override is not None:
            divisor = divisor_override
        else:
            divisor = n_padded if count_include_pad else taps.shape[-1]
        return taps.sum(axis=-1) / divisor

    return _pool(input, reduce, kernel_size, stride, padding, 1, ceil_mode)


def reference_adaptive_avg_pool2d(input, output_size):
    """Naive float64 ``adaptive_avg_pool2d``, the oracle: output ``(i, j)`` is the mean of input rows
    ``floor(i*H/out_h) .. ceil((i+1)*H/out_h) - 1`` and the columns likewise (PyTorch's bins).
    Small inputs only. Returns a float64 NumPy array.
    """
    x = numpy.asarray(input, dtype=numpy.float64)
    H, W = x.shape[-2:]
    if isinstance(output_size, (tuple, list)):
        out_h, out_w = (
            (H if output_size[0] is None else output_size[0]),
            (W if output_size[1] is None else output_size[1]),
        )
    else:
        out_h = out_w = output_size
    out = numpy.empty(x.shape[:-2] + (out_h, out_w))
    for i in range(out_h):
        r0, r1 = (i * H) // out_h, -((-(i + 1) * H) // out_h)  # floor, ceil with exact integers
        for j in range(out_w):
            c0, c1 = (j * W) // out_w, -((-(j + 1) * W) // out_w)
            out[..., i, j] = x[..., r0:r1, c0:c1].mean(axis=(-2, -1))
    return out


# --------------------------------------------------------------------------- assertions
def _eps(dtype) -> float:
    return float(numpy.finfo(dtype).eps)


def _gamma(n: int, dtype) -> float:
    """Higham's gamma_n = n*u / (1 - n*u), u = eps/2: the error bound of an n-term dot product."""
    u = _eps(dtype) / 2
    return n * u / (1 - n * u)


def conv2d_error_bound(config: ConvConfig, x, weight, bias, dtype) -> numpy.ndarray:
    """Per-element bound on ``|conv2d(x, w, b) - exact|`` for any summation order, in ``dtype``,
    plus the float64 oracle's own error.

    The classic bound for a ``K``-term dot product plus a bias computed in floating point
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1) is
    ``gamma_{K+1} * (|x| (*) |w| + |b|)``, where ``(*)`` is the convolution and
    ``gamma_n = n*u/(1 - n*u)``. It holds for any order of the sums (GEMM blocking, FMA).
    """
    K = config.weight_shape[1] * config.weight_shape[2] * config.weight_shape[3]
    magnitude = reference_conv2d(
        numpy.abs(x), numpy.abs(weight), None if bias is None else numpy.abs(bias), **config.kwargs()
    )
    return (_gamma(K + 1, dtype) + _gamma(K + 1, numpy.float64)) * magnitude + numpy.finfo(dtype).tiny


def _host(array) -> numpy.ndarray:
    """A NumPy copy of a NumPy, CuPy or torch array."""
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch
        array = array.detach().cpu().numpy()
    return to_numpy(array)


def _fmt(config) -> str:
    return f"{type(config).__name__}{dataclasses.asdict(config)}"


def assert_conv2d_matches(
    conv2d_fn, config: ConvConfig, *, dtype=numpy.float64, convert=None, seed=0, slack=1.0
) -> None:
    """Assert that ``conv2d_fn`` computes ``config`` as the float64 oracle does.

    ``conv2d_fn(input, weight, bias, stride=, padding=, dilation=, groups=)`` is called with
    random inputs in [-1, 1) of ``dtype``; its output must have the oracle's shape and agree
    with :func:`reference_conv2d` (run on the same, upcast values) elementwise within
    ``slack`` times :func:`conv2d_error_bound`: about 1e-14 relative in float64, the float32
    rounding of a ``K``-term dot product in float32.

    Parameters
    ----------
    conv2d_fn : callable
        Anything with the signature of ``torch.nn.functional.conv2d``.
    config : ConvConfig
        Usually drawn from :func:`conv2d_configs`.
    dtype : NumPy floating dtype
        The dtype the inputs are given in.
    convert : callable, optional
        Applied to each input array before the call, e.g. ``torch.from_numpy`` or
        ``cupy.asarray``. The output may be NumPy, CuPy or torch; it is copied to the host.
    seed : int
        Seed of the random inputs.
    slack : float
        Multiplier on the error bound.

    Raises
    ------
    AssertionError
        On a wrong shape, dtype kind, or any element outside the bound; the message gives the
        configuration, the worst element and the bound.

    Example
    -------
    >>> import torch, torch.nn.functional as F
    >>> config = ConvConfig((1, 4, 7, 6), (6, 2, 3, 2), bias=True, stride=(2, 1),
    ...                     padding=(1, 0), dilation=(1, 2), groups=2)
    >>> assert_conv2d_matches(F.conv2d, config, dtype=numpy.float32, convert=torch.from_numpy)
    """
    x, w, b = config.arrays(seed, dtype)
    args = (x, w, b) if convert is None else tuple(None if a is None else convert(a) for a in (x, w, b))
    got = _host(conv2d_fn(*args, **config.kwargs()))
    want = reference_conv2d(x, w, b, **config.kwargs())
    if got.shape != want.shape:
        raise AssertionError(f"conv2d output shape {got.shape} != oracle's {want.shape} for {_fmt(config)}")
    if got.dtype.kind != "f":
        raise AssertionError(f"conv2d output dtype {got.dtype} is not floating for {_fmt(config)}")
    bound = slack * conv2d_error_bound(config, x, w, b, dtype)
    err = numpy.abs(got.astype(numpy.float64) - want)
    bad = ~(err <= bound)  # also catches NaN
    if bad.any():
        worst = numpy.unravel_index(numpy.argmax(numpy.where(bad, err, -1.0)), err.shape)
        raise AssertionError(
            f"conv2d differs from the float64 oracle at {bad.sum()} of {err.size} elements for {_fmt(config)} "
            f"(dtype {numpy.dtype(dtype).name}); worst at index {tuple(int(i) for i in worst)}: "
            f"got {float(got[worst])!r}, expected {float(want[worst])!r}, "
            f"|error| {err[worst]:.3g} > bound {bound[worst]:.3g}"
        )


def assert_pool2d_matches(pool_fn, config: PoolConfig, *, dtype=numpy.float64, convert=None, seed=0, slack=1.0) -> None:
    """Assert that ``pool_fn`` (a ``max_pool2d`` or ``avg_pool2d`` with torch's signature, per
    ``config.kind``) computes ``config`` as the float64 oracle does.

    Max pooling must match exactly (it only selects values). Average pooling must match within
    ``slack * gamma_{taps+1} * (window sum of |x|) / |divisor|``, the rounding of a sum of
    ``kh*kw`` terms and one division. ``convert`` and ``seed`` are as in
    :func:`assert_conv2d_matches`.

    Raises
    ------
    AssertionError
        On a wrong shape or any element outside the bound.
    """
    rng = numpy.random.default_rng(seed)
    x = rng.uniform(-1, 1, config.input_shape).astype(dtype)
    got = _host(pool_fn(x if convert is None else convert(x), **config.kwargs()))
    want = config.reference(x)
    if got.shape != want.shape:
        raise AssertionError(
            f"{config.kind}_pool2d output shape {got.shape} != oracle's {want.shape} for {_fmt(config)}"
        )
    if config.kind == "max":
        bound = numpy.zeros_like(want)
    else:
        taps = config.kernel_size[0] * config.kernel_size[1]
        magnitude = reference_avg_pool2d(
            numpy.abs(x), **{**config.kwargs(), "divisor_override": None, "count_include_pad": False}
        )
        # |sum|/|divisor| <= mean|x| * (taps inside) / |divisor| <= mean|x| * taps
        bound = slack * (_gamma(taps + 1, dtype) + _gamma(taps + 1, numpy.float64)) * magnitude * taps
    with numpy.errstate(invalid="ignore"):  # inf - inf where both are -inf
        err = numpy.abs(got.astype(numpy.float64) - want)
    bad = ~((err <= bound) | (got == want))  # equality admits matching infinities
    if bad.any():
        worst = numpy.unravel_index(
            numpy.argmax(numpy.where(bad, numpy.nan_to_num(err, nan=numpy.inf), -1.0)), err.shape
        )
        raise AssertionError(
            f"{config.kind}_pool2d differs from the float64 oracle at {bad.sum()} of {err.size} elements for "
            f"{_fmt(config)} (dtype {numpy.dtype(dtype).name}); worst at index {tuple(int(i) for i in worst)}: "
            f"got {float(got[worst])!r}, expected {float(want[worst])!r}, bound {bound[worst]:.3g}"
        )
