"""Configuration strategies of the first kit: shapes and hyper-parameters only, values from a seed.

:class:`ConvConfig`, :class:`PoolConfig`, :class:`AdaptivePoolConfig` and the ``*_configs()``
strategies draw valid calls (hyper-parameters as pairs), and :meth:`ConvConfig.arrays` fills them
with seeded uniform values. They stay for existing tests; new tests should draw whole *cases*
(:mod:`npresnet.testing.strategies`), whose values hypothesis searches and shrinks too.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy
from hypothesis import strategies as st

from ..shapes import conv_output_size
from .bounds import gamma, unit_roundoff
from .oracles import conv_pads as _conv_pads
from .oracles import reference_avg_pool2d, reference_conv2d, reference_max_pool2d

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn
    from numpy.typing import ArrayLike, DTypeLike

    from .._typing import Array
    from .cases import Kwargs
    from .oracles import Float64Array, OutputSize

__all__ = [
    "ConvConfig",
    "PoolConfig",
    "AdaptivePoolConfig",
    "conv2d_configs",
    "pool2d_configs",
    "adaptive_pool_configs",
    "conv2d_error_bound",
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

    input_shape: tuple[int, ...]
    weight_shape: tuple[int, int, int, int]
    bias: bool
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    groups: int

    def kwargs(self) -> Kwargs:
        """Keyword arguments for ``conv2d(input, weight, bias, **kwargs)``."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def output_shape(self) -> tuple[int, ...]:
        """Return the output shape, from :func:`npresnet.shapes.conv_output_size`."""
        *lead, H, W = self.input_shape
        O, _, kh, kw = self.weight_shape
        (pt, pb), (pl, pr) = _conv_pads(self.padding, (kh, kw), self.dilation)
        # 'same' pads asymmetrically; the formula's symmetric padding p covers p + p rows.
        out_h = conv_output_size(H + pb - pt, kh, self.stride[0], pt, self.dilation[0])
        out_w = conv_output_size(W + pr - pl, kw, self.stride[1], pl, self.dilation[1])
        return (*lead[:-1], O, out_h, out_w)

    def arrays(self, seed: int = 0, dtype: DTypeLike = numpy.float64) -> tuple[Array, Array, Array | None]:
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
    input_shape: tuple[int, ...]
    kernel_size: tuple[int, int]
    stride: tuple[int, int] | None
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool
    count_include_pad: bool = True
    divisor_override: int | None = None

    def kwargs(self) -> Kwargs:
        """Keyword arguments for ``max_pool2d(input, **kwargs)`` or ``avg_pool2d(input, **kwargs)``."""
        kw: Kwargs = dict(
            kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode
        )
        if self.kind == "max":
            kw["dilation"] = self.dilation
        else:
            kw.update(count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)
        return kw

    def output_shape(self) -> tuple[int, ...]:
        """Return the output shape, from :func:`npresnet.shapes.conv_output_size`."""
        *lead, H, W = self.input_shape
        stride = self.kernel_size if self.stride is None else self.stride
        out = [
            conv_output_size(n, k, s, p, d, self.ceil_mode)
            for n, k, s, p, d in zip((H, W), self.kernel_size, stride, self.padding, self.dilation)
        ]
        return (*lead, *out)

    def reference(self, x: ArrayLike) -> Float64Array:
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

    input_shape: tuple[int, ...]
    output_size: OutputSize


def _sizes(draw: DrawFn, low: int, high: int, asymmetric: bool) -> tuple[int, int]:
    """Draw an (h, w) pair in [low, high], equal unless ``asymmetric`` draws them separately."""
    a = draw(st.integers(low, high))
    return (a, draw(st.integers(low, high))) if asymmetric else (a, a)


def _lead_shape(draw: DrawFn, max_batch: int, channels: int, unbatched: bool) -> tuple[int, ...]:
    if unbatched and draw(st.booleans()):
        return (channels,)
    return (draw(st.integers(1, max_batch)), channels)


@st.composite
def conv2d_configs(
    draw: DrawFn,
    *,
    max_batch: int = 2,
    max_channels_per_group: int = 3,
    max_groups: int = 3,
    max_kernel: int = 4,
    max_stride: int = 3,
    max_dilation: int = 3,
    max_padding: int = 3,
    max_extra: int = 5,
    unbatched: bool = True,
    same_and_valid: bool = True,
) -> ConvConfig:
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

    Examples
    --------
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
    padding: tuple[int, int] | str
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
    draw: DrawFn,
    kind: str | None = None,
    *,
    max_batch: int = 2,
    max_channels: int = 3,
    max_kernel: int = 4,
    max_stride: int = 4,
    max_dilation: int = 3,
    max_extra: int = 5,
    unbatched: bool = True,
) -> PoolConfig:
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
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    stride = None if draw(st.integers(0, 4)) == 0 else _sizes(draw, 1, max_stride, draw(st.booleans()))
    low = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in zip(kernel, dilation, padding)]
    H = draw(st.integers(low[0], low[0] + max_extra))
    W = draw(st.integers(low[1], low[1] + max_extra))
    lead = _lead_shape(draw, max_batch, draw(st.integers(1, max_channels)), unbatched)
    count_include_pad, divisor_override = True, None  # PoolConfig's defaults, which max pooling keeps
    if kind == "avg":
        count_include_pad = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            divisor_override = draw(st.integers(1, 10) | st.integers(-10, -1))
    return PoolConfig(
        kind=kind,
        input_shape=(*lead, H, W),
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=draw(st.booleans()),
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )


@st.composite
def adaptive_pool_configs(
    draw: DrawFn,
    *,
    max_batch: int = 2,
    max_channels: int = 3,
    max_size: int = 9,
    max_output: int = 9,
    unbatched: bool = True,
) -> AdaptivePoolConfig:
    """Hypothesis strategy for :class:`AdaptivePoolConfig` s.

    Any input size 1..``max_size``, any output size 1..``max_output`` (larger than the input too),
    as an int, a pair or a pair with None.
    """
    H, W = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    lead = _lead_shape(draw, max_batch, draw(st.integers(1, max_channels)), unbatched)
    out = st.integers(1, max_output)
    output_size = draw(st.one_of(out, st.tuples(out, out), st.tuples(out | st.none(), out | st.none())))
    return AdaptivePoolConfig(input_shape=(*lead, H, W), output_size=output_size)


# --------------------------------------------------------------------------- the legacy bound
def conv2d_error_bound(
    config: ConvConfig, x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None, dtype: DTypeLike
) -> Float64Array:
    """Return the per-element bound on ``|conv2d(x, w, b) - exact|`` in ``dtype``, any summation order.

    The float64 oracle's own error is included.

    The classic bound for a ``K``-term dot product plus a bias computed in floating point
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1) is
    ``gamma_{K+1} * (|x| (*) |w| + |b|)``, where ``(*)`` is the convolution and
    ``gamma_n = n*u/(1 - n*u)``. It holds for any order of the sums (GEMM blocking, FMA).
    """
    K = config.weight_shape[1] * config.weight_shape[2] * config.weight_shape[3]
    magnitude = reference_conv2d(
        numpy.abs(x), numpy.abs(weight), None if bias is None else numpy.abs(bias), **config.kwargs()
    )
    name = numpy.dtype(dtype).name
    bound: Float64Array = (
        gamma(K + 1, unit_roundoff(name)) + gamma(K + 1, unit_roundoff("float64"))
    ) * magnitude + numpy.finfo(dtype).tiny
    return bound
