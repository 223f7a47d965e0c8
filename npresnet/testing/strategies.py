"""Hypothesis strategies that draw whole cases: hyper-parameters in torch's forms and the arrays.

Hypothesis searches and shrinks the values as well as the shapes, so a failure comes down to a
small case with simple numbers. Every strategy takes the same keywords:

dtypes : sequence of NumPy floating dtypes
    Drawn per case (float16, float32, float64).
allow_nan, allow_infinity : bool
    Let the *input* hold NaN / ±inf (weights, bias and grad_output stay finite).
noncontiguous : bool
    Let arrays be transposed or strided views (positive, nonzero strides).
max_batch, max_channels, max_size : int
    Upper bounds of the batch, the channel counts and the spatial sizes.
forms : sequence of str
    Argument forms to draw hyper-parameters in, from ``"int"``, ``"1-tuple"``, ``"pair"``,
    ``"string"`` (conv2d padding) and ``"pair-with-None"`` (adaptive output_size); all by default.
unbatched : bool
    Sometimes draw a ``(C, H, W)`` input.
**pins
    Any keyword named after a hyper-parameter fixes it, None included (``divisor_override=None``);
    ``bias=False``/``True`` fixes whether a convolution has a bias. Pinned to torch's default, the
    parameter is not passed at all.

Finite values lie in ``[-M, M]``, ``M`` the largest power of two for which no sum the kit checks
can overflow in the dtype (:func:`npresnet.testing.bounds.safe_magnitude`); zeros and subnormals
are drawn too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy
from hypothesis import strategies as st

from .bounds import safe_magnitude
from .cases import FORMS, Case, Pins, as_pair, check_forms, conv_args, draw_array, draw_ints, keep_kwargs
from .oracles import adaptive_output_size, conv_pads, conv_transpose2d_output_size, window_starts

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hypothesis.strategies import DrawFn, SearchStrategy
    from numpy.typing import DTypeLike

    from .._typing import Array
    from .cases import Kwargs
    from .oracles import Ints, OutputSize, Padding

__all__ = [
    "conv2d_cases",
    "conv_transpose2d_cases",
    "pool2d_cases",
    "adaptive_pool2d_cases",
    "invalid_conv2d_cases",
]

_LIMITS = {"max_batch": 8, "max_channels": 16, "max_size": 32}  # the oracles are Python loops
_MAX_KERNEL, _MAX_STRIDE, _MAX_DILATION, _MAX_PADDING = 4, 3, 3, 2
_CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_TRANSPOSE_DEFAULTS = {"stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "dilation": 1}
_POOL_DEFAULTS = {
    "stride": None,
    "padding": 0,
    "dilation": 1,
    "ceil_mode": False,
    "count_include_pad": True,
    "divisor_override": None,
    "return_indices": False,
}


class _Options:
    """The shared keywords, checked once when the strategy is built."""

    def __init__(
        self,
        dtypes: Iterable[DTypeLike],
        allow_nan: bool,
        allow_infinity: bool,
        noncontiguous: bool,
        max_batch: int,
        max_channels: int,
        max_size: int,
        forms: Iterable[str],
        unbatched: bool,
    ) -> None:
        self.dtypes = tuple(numpy.dtype(d) for d in dtypes)
        if not self.dtypes or any(d.name not in ("float16", "float32", "float64") for d in self.dtypes):
            raise ValueError(f"dtypes must be a non-empty sequence of float16/float32/float64, got {dtypes!r}")
        for name, value in (("max_batch", max_batch), ("max_channels", max_channels), ("max_size", max_size)):
            if not isinstance(value, int) or not 1 <= value <= _LIMITS[name]:
                raise ValueError(f"{name} must be an int in [1, {_LIMITS[name]}], got {value!r}")
        self.allow_nan, self.allow_infinity, self.noncontiguous = (
            bool(allow_nan),
            bool(allow_infinity),
            bool(noncontiguous),
        )
        self.max_batch, self.max_channels, self.max_size = max_batch, max_channels, max_size
        self.forms, self.unbatched = check_forms(forms), bool(unbatched)
        # the longest sum any check takes: a conv's K, a backward's N*out_h*out_w, a pool's window
        n_terms = max(max_channels * _MAX_KERNEL**2, max_batch * (max_size + 2 * _MAX_PADDING) ** 2, max_size**2)
        self.magnitude = {d.name: safe_magnitude(n_terms, d.name) for d in self.dtypes}

    def array(self, draw: DrawFn, shape: tuple[int, ...], dtype: numpy.dtype[Any], *, special: bool = False) -> Array:
        return draw_array(
            draw,
            shape,
            dtype,
            self.magnitude[dtype.name],
            allow_nan=special and self.allow_nan,
            allow_infinity=special and self.allow_infinity,
            noncontiguous=self.noncontiguous,
        )

    def lead(self, draw: DrawFn, channels: int) -> tuple[int, ...]:
        if self.unbatched and draw(st.booleans()):
            return (channels,)
        return (draw(st.integers(1, self.max_batch)), channels)


def _options(kw: dict[str, Any]) -> _Options:
    return _Options(**kw)  # the user's keywords, Any to the checker: _Options checks them


_SHARED = dict(
    dtypes=(numpy.float64,),
    allow_nan=False,
    allow_infinity=False,
    noncontiguous=False,
    max_batch=2,
    max_channels=4,
    max_size=9,
    forms=FORMS,
    unbatched=True,
)


def _split(kw: dict[str, object]) -> tuple[_Options, dict[str, object]]:
    shared = {k: kw.pop(k, v) for k, v in _SHARED.items()}
    return _options(shared), kw


def _param(
    draw: DrawFn, pins: Pins, name: str, forms: tuple[str, ...], low: int, high: int | tuple[int, ...]
) -> tuple[object, tuple[int, int]]:
    """Return a pinned or drawn int hyper-parameter: ``(as passed, (h, w))``."""
    if name in pins:
        return pins.get(name), as_pair(pins.get(name), name)
    return draw_ints(draw, forms, low, high)


def _groups_and_channels(draw: DrawFn, opt: _Options, pins: Pins) -> tuple[int, int, int]:
    groups = pins.get("groups") if "groups" in pins else draw(st.integers(1, min(opt.max_channels, 3)))
    if not isinstance(groups, int) or not 1 <= groups <= opt.max_channels:
        raise ValueError(f"groups must be pinned to an int in [1, max_channels={opt.max_channels}], got {groups!r}")
    per_group = max(1, opt.max_channels // groups)
    return groups, groups * draw(st.integers(1, per_group)), groups * draw(st.integers(1, per_group))


def _kernel_limit(max_size: int, pads: Iterable[tuple[int, int]], dilation: Iterable[int]) -> tuple[int, ...]:
    """Largest kernel per axis whose dilated window fits in a padded input of max_size."""
    return tuple(max(1, min(_MAX_KERNEL, (max_size + p0 + p1 - 1) // d + 1)) for (p0, p1), d in zip(pads, dilation))


def _sizes(draw: DrawFn, low: Iterable[int], max_size: int) -> tuple[int, ...]:
    return tuple(draw(st.integers(lo, max(lo, max_size))) for lo in low)


@st.composite
def _conv2d_case(draw: DrawFn, opt: _Options, pins: Pins) -> Case:
    dtype = draw(st.sampled_from(opt.dtypes))
    groups, C, O = _groups_and_channels(draw, opt, pins)
    same_pinned = "padding" in pins and pins.get("padding") == "same"
    stride, (sy, sx) = _param(draw, pins, "stride", opt.forms, 1, 1 if same_pinned else _MAX_STRIDE)
    dilation, dil = _param(draw, pins, "dilation", opt.forms, 1, _MAX_DILATION)
    padding: Padding
    if "padding" in pins:
        padding = cast("Padding", pins.get("padding"))  # the user's pin, passed on as given; conv_pads checks it
    else:
        strings = ["valid"] + (["same"] if (sy, sx) == (1, 1) else []) if "string" in opt.forms else []
        if strings and draw(st.integers(0, 3)) == 0:
            padding = draw(st.sampled_from(strings))
        else:
            padding, _ = draw_ints(draw, opt.forms, 0, _MAX_PADDING)
    if padding == "same" and (sy, sx) != (1, 1):
        raise ValueError(f"padding='same' needs stride 1 (torch refuses other strides), got stride={stride!r}")
    if padding == "same":
        kernel = tuple(draw(st.integers(1, _MAX_KERNEL)) for _ in range(2))
    else:
        limit = _kernel_limit(opt.max_size, conv_pads(padding, (1, 1), (1, 1)), dil)
        kernel = tuple(draw(st.integers(1, k)) for k in limit)
    pads = conv_pads(padding, kernel, dil)
    # the dilated window d*(k-1)+1 must fit in the padded input n + p0 + p1 (and n >= 1)
    low = [max(1, d * (k - 1) + 1 - p0 - p1) for k, d, (p0, p1) in zip(kernel, dil, pads)]
    H, W = _sizes(draw, low, opt.max_size)
    lead = opt.lead(draw, C)
    with_bias = pins.get("bias") if "bias" in pins else draw(st.booleans())
    x = opt.array(draw, (*lead, H, W), dtype, special=True)
    w = opt.array(draw, (O, C // groups, *kernel), dtype)
    b = opt.array(draw, (O,), dtype) if with_bias else None
    out_hw = [
        len(window_starts(n, k, s, p0, p1, d)) for n, k, s, (p0, p1), d in zip((H, W), kernel, (sy, sx), pads, dil)
    ]
    g = opt.array(draw, (*lead[:-1], O, *out_hw), dtype)
    kwargs = keep_kwargs(dict(stride=stride, padding=padding, dilation=dilation, groups=groups), pins, _CONV_DEFAULTS)
    return Case("conv2d", (x, w, b), kwargs, grad_output=g)


def conv2d_cases(**kw: object) -> SearchStrategy[Case]:
    """Hypothesis strategy of valid ``conv2d`` :class:`Case` s (with a ``grad_output`` for backward).

    Draws groups, then channel counts that are multiples of it; stride, dilation and padding in
    each of torch's forms (padding also ``'valid'``, and ``'same'`` with stride 1); a kernel that
    fits; an input size that the dilated window fits in, up to ``max_size``; then the arrays.
    Pins: ``stride``, ``padding``, ``dilation``, ``groups``, ``bias``. Other keywords: see the
    module docstring.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from npresnet.functional import conv2d
    >>> @settings(max_examples=10)
    ... @given(conv2d_cases(forms=("int", "pair", "string")))
    ... def test_shape(case):
    ...     assert conv2d(*case.args, **case.kwargs).shape == case.grad_output.shape
    >>> test_shape()
    """
    opt, pinned = _split(kw)
    pins = Pins(pinned, ("stride", "padding", "dilation", "groups", "bias"), "conv2d_cases")
    _check_same_stride(pins)
    return _conv2d_case(opt, pins)


def _check_same_stride(pins: Pins) -> None:
    if "padding" in pins and pins.get("padding") == "same" and "stride" in pins:
        if as_pair(pins.get("stride"), "stride") != (1, 1):
            raise ValueError(f"padding='same' needs stride 1 (torch refuses others), got stride={pins.get('stride')!r}")


@st.composite
def _conv_transpose2d_case(draw: DrawFn, opt: _Options, pins: Pins) -> Case:
    dtype = draw(st.sampled_from(opt.dtypes))
    groups, C, O = _groups_and_channels(draw, opt, pins)
    stride, (sy, sx) = _param(draw, pins, "stride", opt.forms, 1, _MAX_STRIDE)
    dilation, (dy, dx) = _param(draw, pins, "dilation", opt.forms, 1, _MAX_DILATION)
    padding, (ph, pw) = _param(draw, pins, "padding", opt.forms, 0, _MAX_PADDING)
    # torch: output_padding must be smaller than the stride or the dilation
    output_padding, (oph, opw) = _param(draw, pins, "output_padding", opt.forms, 0, (max(sy, dy) - 1, max(sx, dx) - 1))
    kernel = tuple(draw(st.integers(1, _MAX_KERNEL)) for _ in range(2))
    # the output size (n-1)*s - 2p + d*(k-1) + op + 1 must be at least 1
    low = [
        max(1, -(-(2 * p - d * (k - 1) - op) // s) + 1)
        for s, p, d, k, op in zip((sy, sx), (ph, pw), (dy, dx), kernel, (oph, opw))
    ]
    H, W = _sizes(draw, low, opt.max_size)
    lead = opt.lead(draw, C)
    with_bias = pins.get("bias") if "bias" in pins else draw(st.booleans())
    x = opt.array(draw, (*lead, H, W), dtype, special=True)
    w = opt.array(draw, (C, O // groups, *kernel), dtype)
    b = opt.array(draw, (O,), dtype) if with_bias else None
    out_hw = [
        conv_transpose2d_output_size(n, k, s, p, op, d)
        for n, k, s, p, op, d in zip((H, W), kernel, (sy, sx), (ph, pw), (oph, opw), (dy, dx))
    ]
    g = opt.array(draw, (*lead[:-1], O, *out_hw), dtype)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    return Case("conv_transpose2d", (x, w, b), keep_kwargs(kwargs, pins, _TRANSPOSE_DEFAULTS), grad_output=g)


def conv_transpose2d_cases(**kw: object) -> SearchStrategy[Case]:
    """Hypothesis strategy of valid ``conv_transpose2d`` :class:`Case` s.

    weight is ``(C, O // groups, kh, kw)``; ``output_padding`` is drawn below ``max(stride, dilation)``
    per axis (torch's rule); the input is large enough for a non-empty output. Pins: ``stride``,
    ``padding``, ``output_padding``, ``groups``, ``dilation``, ``bias``.
    """
    opt, pins = _split(kw)
    allowed = ("stride", "padding", "output_padding", "groups", "dilation", "bias")
    return _conv_transpose2d_case(opt, Pins(pins, allowed, "conv_transpose2d_cases"))


def _choose_kind(draw: DrawFn, kind: str | None, strategy: str) -> str:
    if kind not in (None, "max", "avg"):
        raise ValueError(f"{strategy}: kind must be None, 'max' or 'avg', got {kind!r}")
    return kind or draw(st.sampled_from(["max", "avg"]))


@st.composite
def _pool2d_case(draw: DrawFn, kind: str | None, opt: _Options, pins: Pins) -> Case:
    kind = _choose_kind(draw, kind, "pool2d_cases")
    dtype = draw(st.sampled_from(opt.dtypes))
    kernel_size, kernel = _param(draw, pins, "kernel_size", opt.forms, 1, min(_MAX_KERNEL, opt.max_size))
    if "stride" in pins:
        stride = pins.get("stride")
    elif draw(st.integers(0, 3)) == 0:
        stride = None  # torch's default: the kernel size
    else:
        stride, _ = draw_ints(draw, opt.forms, 1, _MAX_STRIDE)
    # torch: padding at most half the kernel
    padding, pads = _param(draw, pins, "padding", opt.forms, 0, (kernel[0] // 2, kernel[1] // 2))
    if kind == "max":
        limit = tuple(max(1, (opt.max_size + 2 * p - 1) // max(1, k - 1)) for k, p in zip(kernel, pads))
        dilation, dil = _param(draw, pins, "dilation", opt.forms, 1, tuple(min(_MAX_DILATION, d) for d in limit))
    else:
        dilation, dil = 1, (1, 1)
    low = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in zip(kernel, dil, pads)]
    H, W = _sizes(draw, low, opt.max_size)
    lead = opt.lead(draw, draw(st.integers(1, opt.max_channels)))
    kwargs = dict(kernel_size=kernel_size, stride=stride, padding=padding)
    if kind == "max":
        kwargs["dilation"] = dilation
    kwargs["ceil_mode"] = pins.draw(draw, "ceil_mode", st.booleans())
    if kind == "avg":
        kwargs["count_include_pad"] = pins.draw(draw, "count_include_pad", st.booleans())
        divisors = st.one_of(st.none(), st.integers(1, 9), st.integers(-9, -1))  # torch refuses 0
        kwargs["divisor_override"] = pins.draw(draw, "divisor_override", divisors)
    else:
        kwargs["return_indices"] = pins.draw(draw, "return_indices", st.booleans())
    x = opt.array(draw, (*lead, H, W), dtype, special=True)
    return Case(f"{kind}_pool2d", (x,), keep_kwargs(kwargs, pins, _POOL_DEFAULTS))


def pool2d_cases(kind: str | None = None, **kw: object) -> SearchStrategy[Case]:
    """Hypothesis strategy of valid ``max_pool2d`` / ``avg_pool2d`` :class:`Case` s (``kind`` None: either).

    Draws kernel_size, stride (None sometimes, torch's default), padding (at most half the kernel),
    ``ceil_mode``; for max, ``dilation`` and ``return_indices``; for avg, ``count_include_pad`` and
    ``divisor_override`` (None or a nonzero int, negative too). Each is a pin: ``kernel_size``,
    ``stride``, ``padding``, ``dilation``, ``ceil_mode``, ``count_include_pad``, ``divisor_override``,
    ``return_indices``; a pin that does not apply to the drawn kind is ignored.
    """
    opt, pins = _split(kw)
    allowed = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "count_include_pad", "divisor_override")
    return _pool2d_case(kind, opt, Pins(pins, allowed + ("return_indices",), "pool2d_cases"))


@st.composite
def _adaptive_case(draw: DrawFn, kind: str | None, opt: _Options, pins: Pins) -> Case:
    kind = _choose_kind(draw, kind, "adaptive_pool2d_cases")
    dtype = draw(st.sampled_from(opt.dtypes))
    H, W = _sizes(draw, (1, 1), opt.max_size)
    output_size: OutputSize
    if "output_size" in pins:
        output_size = cast("OutputSize", pins.get("output_size"))  # the user's pin, passed on as given
    else:
        sizes = st.integers(1, opt.max_size)
        choices = [f for f in ("int", "pair", "pair-with-None") if f in opt.forms]
        if not choices:
            raise ValueError(
                f"forms {opt.forms!r} leave no form for output_size; add 'int', 'pair' or 'pair-with-None'"
            )
        form = draw(st.sampled_from(choices))
        if form == "int":
            output_size = draw(sizes)
        elif form == "pair":
            output_size = (draw(sizes), draw(sizes))
        else:
            keep_h, keep_w = draw(st.sampled_from([(True, False), (False, True), (True, True)]))  # which are None
            output_size = (None if keep_h else draw(sizes), None if keep_w else draw(sizes))
    adaptive_output_size((H, W), output_size)
    lead = opt.lead(draw, draw(st.integers(1, opt.max_channels)))
    kwargs: Kwargs = {"output_size": output_size}
    if kind == "max":
        kwargs["return_indices"] = pins.draw(draw, "return_indices", st.booleans())
    x = opt.array(draw, (*lead, H, W), dtype, special=True)
    return Case(f"adaptive_{kind}_pool2d", (x,), keep_kwargs(kwargs, pins, {"return_indices": False}))


def adaptive_pool2d_cases(kind: str | None = None, **kw: object) -> SearchStrategy[Case]:
    """Hypothesis strategy of ``adaptive_max_pool2d`` / ``adaptive_avg_pool2d`` :class:`Case` s.

    Any input size up to ``max_size``; ``output_size`` an int, a pair, or a pair with None ("keep
    that input size"), up to ``max_size`` (larger than the input too); ``return_indices`` for max.
    Pins: ``output_size``, ``return_indices``.
    """
    opt, pins = _split(kw)
    return _adaptive_case(kind, opt, Pins(pins, ("output_size", "return_indices"), "adaptive_pool2d_cases"))


_MUTATIONS = (
    "negative padding",
    "zero stride",
    "negative stride",
    "zero dilation",
    "groups not dividing the channels",
    "zero groups",
    "input channels not weight channels times groups",
    "kernel larger than the padded input",
    "padding='same' with stride 2",
    "unknown padding string",
    "bias of the wrong length",
    "weight not 4-D",
    "input not 3-D or 4-D",
    "weight dtype not the input's",
)


@st.composite
def _invalid_conv2d_case(draw: DrawFn, opt: _Options, pins: Pins) -> Case:
    case = draw(_conv2d_case(opt, pins))
    x, w, b = conv_args(case)
    kw = dict(case.kwargs)
    reason = draw(st.sampled_from(_MUTATIONS))

    def numeric(v: int) -> Ints:
        forms: list[Ints] = [v, (v, v), (v, 1) if v != 1 else (v, 2)]
        return draw(st.sampled_from(forms))

    if reason == "negative padding":
        kw["padding"] = numeric(-1)
    elif reason in ("zero stride", "negative stride"):
        kw["stride"] = numeric(0 if reason == "zero stride" else -1)
        kw["padding"] = 0 if isinstance(kw.get("padding"), str) else kw.get("padding", 0)
    elif reason == "zero dilation":
        kw["dilation"] = numeric(0)
    elif reason == "groups not dividing the channels":
        kw["groups"] = x.shape[-3] + 1
    elif reason == "zero groups":
        kw["groups"] = 0
    elif reason == "input channels not weight channels times groups":
        x = numpy.concatenate([x, x[..., :1, :, :]], axis=-3)
    elif reason == "kernel larger than the padded input":
        kw["padding"] = 0
        w = numpy.zeros((*w.shape[:2], x.shape[-2] + 1, w.shape[-1]), dtype=w.dtype)
    elif reason == "padding='same' with stride 2":
        kw["padding"], kw["stride"] = "same", 2
    elif reason == "unknown padding string":
        kw["padding"] = "full"
    elif reason == "bias of the wrong length":
        b = numpy.zeros(w.shape[0] + 1, dtype=w.dtype)
    elif reason == "weight not 4-D":
        w = w[..., 0]
    elif reason == "input not 3-D or 4-D":
        x = x.reshape(-1)
    else:
        with numpy.errstate(over="ignore"):  # only the dtype matters here
            w = w.astype(numpy.float32 if w.dtype != numpy.float32 else numpy.float64)
        b = None if b is None else b.astype(w.dtype)
    return Case("conv2d", (x, w, b), kw, reason=reason)


def invalid_conv2d_cases(**kw: object) -> SearchStrategy[Case]:
    """Hypothesis strategy of ``conv2d`` argument sets that torch refuses, each with a ``.reason``.

    Draws a valid case (same keywords as :func:`conv2d_cases`) and breaks one thing: negative
    padding, zero or negative stride, zero dilation, groups that do not divide the channels or
    are zero, mismatched channels, a kernel larger than the padded input, ``'same'`` with stride 2,
    an unknown padding string, a bias of the wrong length, a weight or input of the wrong rank,
    or a weight of another dtype. Check with :func:`assert_conv2d_rejects`.
    """
    opt, pins = _split(kw)
    return _invalid_conv2d_case(
        opt, Pins(pins, ("stride", "padding", "dilation", "groups", "bias"), "invalid_conv2d_cases")
    )
