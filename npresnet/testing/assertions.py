"""Assertions that check a user's function on a :class:`~npresnet.testing.cases.Case` against the oracle.

Each calls ``fn(*args, **case.kwargs)`` (``args`` after ``convert``), reads the output on the host,
and compares it with the float64 oracle run on the case's own arrays. An element passes when

    |got - expected| <= slack · bound + atol + rtol · |expected|

``bound`` being the rounding bound of the direct algorithm (``npresnet.testing.bounds``) and
``atol``/``rtol`` numpy.testing.assert_allclose's, for fast algorithms with other error terms.
A NaN must meet a NaN and an infinity the same infinity. With ``check_dtype`` the output's dtype
must be the converted input's (torch's semantics). A failure is one AssertionError paragraph with
the case; every frame of the kit sets ``__tracebackhide__`` so pytest shows the caller's line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias, overload

import numpy

from . import oracles
from .arrays import dtype_name, to_host
from .bounds import sum_bound
from .cases import Case, conv_args
from .configs import ConvConfig, PoolConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import ArrayLike, DTypeLike, NDArray

    from .._typing import Array
    from .cases import Kwargs
    from .oracles import Float64Array, Window

__all__ = [
    "assert_conv2d_matches",
    "assert_conv_transpose2d_matches",
    "assert_pool2d_matches",
    "assert_adaptive_pool2d_matches",
    "assert_conv2d_backward_matches",
    "assert_conv2d_rejects",
]

#: The function under test: any library's, called with the (converted) arrays and the case's keywords.
Function: TypeAlias = "Callable[..., object]"
#: ``convert``: each NumPy array of a case to the array type the function takes (or None: as they are).
Convert: TypeAlias = "Callable[[Array], object] | None"
#: The rounding bound allowed for an output of the given dtype name: a float or one per element.
BoundOf: TypeAlias = "Callable[[str], float | Array]"

_REFERENCE: dict[str, Callable[..., Float64Array]] = {
    "conv2d": oracles.reference_conv2d,
    "conv_transpose2d": oracles.reference_conv_transpose2d,
    "max_pool2d": oracles.reference_max_pool2d,
    "avg_pool2d": oracles.reference_avg_pool2d,
    "adaptive_max_pool2d": oracles.reference_adaptive_max_pool2d,
    "adaptive_avg_pool2d": oracles.reference_adaptive_avg_pool2d,
}


def _legacy(config: object, dtype: DTypeLike | None, seed: int | None, ops: tuple[str, ...]) -> Case:
    """Return a :class:`Case` for a :class:`ConvConfig` / :class:`PoolConfig` of the first kit: seeded values."""
    __tracebackhide__ = True
    if isinstance(config, Case):
        if dtype is not None or seed is not None:
            raise TypeError("dtype= and seed= apply only to a ConvConfig or PoolConfig; a Case carries its arrays")
        if config.op not in ops or config.reason is not None:
            raise TypeError(f"expected a valid case of {' or '.join(ops)}, got a {config.op} case")
        return config
    dtype = numpy.float64 if dtype is None else dtype
    seed = 0 if seed is None else seed
    if isinstance(config, ConvConfig) and "conv2d" in ops:
        return Case("conv2d", config.arrays(seed, dtype), config.kwargs())
    if isinstance(config, PoolConfig) and f"{config.kind}_pool2d" in ops:
        x = numpy.random.default_rng(seed).uniform(-1, 1, config.input_shape).astype(dtype)
        return Case(f"{config.kind}_pool2d", (x,), config.kwargs())
    raise TypeError(f"expected a Case of {' or '.join(ops)}, got {type(config).__name__}")


def _call(
    fn: Function,
    case: Case,
    convert: Convert,
    args: tuple[Array | None, ...] | None = None,
    kwargs: Kwargs | None = None,
) -> tuple[object, tuple[object, ...]]:
    """Call ``fn`` on the (converted) arrays; an exception becomes an AssertionError naming the case."""
    __tracebackhide__ = True
    args = case.args if args is None else args
    converted = tuple(a if a is None or convert is None else convert(a) for a in args)
    try:
        return fn(*converted, **(case.kwargs if kwargs is None else kwargs)), converted
    except Exception as exc:
        raise AssertionError(f"{case.op} raised {type(exc).__name__}: {exc}; case: {case!r}") from exc


@overload
def _abs(a: ArrayLike) -> Float64Array: ...
@overload
def _abs(a: None) -> None: ...
def _abs(a: ArrayLike | None) -> Float64Array | None:
    return None if a is None else numpy.abs(numpy.asarray(a, dtype=numpy.float64))


def compare(
    what: str,
    out: NDArray[Any],
    want: Float64Array,
    bound: float | Array,
    case: Case,
    *,
    atol: float,
    rtol: float,
    slack: float,
) -> None:
    """Assert ``out`` (host array) equals ``want`` within ``slack·bound + atol + rtol·|want|`` elementwise."""
    __tracebackhide__ = True
    if out.shape != want.shape:
        raise AssertionError(f"{what} has shape {out.shape}, the oracle's is {want.shape}; case: {case!r}")
    with numpy.errstate(invalid="ignore", over="ignore"):
        allowed = slack * bound + atol + rtol * numpy.abs(want)
        err = numpy.abs(out - want)
        finite = numpy.isfinite(want)
        ok = numpy.where(
            finite, numpy.isfinite(out) & (err <= allowed), (out == want) | (numpy.isnan(out) & numpy.isnan(want))
        )
        ratio = numpy.where(
            finite & numpy.isfinite(err), err / numpy.maximum(allowed, numpy.finfo(float).tiny), numpy.inf
        )
    if ok.all():
        return
    bad = ~ok
    worst = numpy.unravel_index(numpy.argmax(numpy.where(bad, ratio, -1.0)), out.shape)
    got_w, want_w = float(out[worst]), float(want[worst])
    if numpy.isfinite(got_w) and numpy.isfinite(want_w):
        detail = (
            f"|error| {err[worst]:.3g} > allowed {allowed[worst]:.3g} (slack {slack:g} × rounding bound "
            f"{numpy.broadcast_to(bound, out.shape)[worst]:.3g} + atol {atol:g} + rtol {rtol:g} × |expected|)"
        )
    else:
        detail = "a NaN or infinity where the oracle has another value"
    raise AssertionError(
        f"{what} differs from the float64 oracle at {int(bad.sum())} of {bad.size} elements; worst at index "
        f"{tuple(int(i) for i in worst)}: got {got_w!r}, expected {want_w!r}, {detail}; case: {case!r}"
    )


def _check_dtype(what: str, out_dtype: str, converted_input: object, case: Case) -> None:
    __tracebackhide__ = True
    want = dtype_name(converted_input)
    if out_dtype != want:
        raise AssertionError(f"{what} has dtype {out_dtype}, the input's is {want} (torch keeps it); case: {case!r}")


def _float_output(out: object, what: str, case: Case) -> tuple[NDArray[Any], str]:
    __tracebackhide__ = True
    host, name = to_host(out, what, case)
    if host.dtype.kind != "f":
        raise AssertionError(f"{what} has dtype {name}, which is not floating; case: {case!r}")
    return host, name


def _check_forward(
    fn: Function,
    case: Case,
    convert: Convert,
    bound_of: BoundOf,
    *,
    atol: float,
    rtol: float,
    slack: float,
    check_dtype: bool,
    indices: list[list[Window]] | None = None,
) -> None:
    """Run ``fn`` on ``case`` and compare with the oracle; ``bound_of(out_dtype)`` gives the rounding bound."""
    __tracebackhide__ = True
    out, converted = _call(fn, case, convert)
    kwargs = {k: v for k, v in case.kwargs.items() if k != "return_indices"}
    want = _REFERENCE[case.op](*case.args, **kwargs)
    if case.kwargs.get("return_indices"):
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise AssertionError(
                f"{case.op} with return_indices=True returned a {type(out).__name__}, not (output, indices); "
                f"case: {case!r}"
            )
        out, index = out
    host, name = _float_output(out, f"{case.op}'s output", case)
    if check_dtype:
        _check_dtype(f"{case.op}'s output", name, converted[0], case)
    compare(f"{case.op}'s output", host, want, bound_of(name), case, atol=atol, rtol=rtol, slack=slack)
    if case.kwargs.get("return_indices"):
        assert indices is not None  # the pooling assertions, the only ones with return_indices, pass their windows
        _check_indices(index, want, indices, case)


def _conv_bound(case: Case, reference: Callable[..., Float64Array], terms: int) -> BoundOf:
    x, w, b = conv_args(case)
    kwargs = case.kwargs
    return lambda out_dtype: sum_bound(
        terms + 1, reference(_abs(x), _abs(w), _abs(b), **kwargs), case.dtype.name, out_dtype
    )


def assert_conv2d_matches(
    fn: Function,
    case: Case | ConvConfig,
    *,
    convert: Convert = None,
    atol: float = 0.0,
    rtol: float = 0.0,
    slack: float = 1.0,
    check_dtype: bool = True,
    dtype: DTypeLike | None = None,
    seed: int | None = None,
) -> None:
    """Assert that ``fn`` (``torch.nn.functional.conv2d``'s signature) computes ``case`` as the oracle does.

    Parameters
    ----------
    fn : callable
        ``fn(input, weight, bias, stride=, padding=, dilation=, groups=)``.
    case : Case
        From :func:`conv2d_cases`. A :class:`ConvConfig` of the first kit is accepted too, filled with
        seeded uniform values of ``dtype`` (float64 by default) and ``seed`` (0).
    convert : callable, optional
        Applied to each array before the call (``torch.from_numpy``, ``cupy.asarray``, ``jnp.asarray``).
    atol, rtol, slack : float
        Allowed error ``slack · bound + atol + rtol · |expected|``; the bound is ``gamma_{K+1}·Σ|w||x|``
        and the rest of ``npresnet.testing.bounds``, ``K = C/groups·kh·kw``.
    check_dtype : bool
        The output's dtype must be the converted input's.

    Raises
    ------
    AssertionError
        On an exception from ``fn``, an unreadable output, a wrong shape or dtype, or an element
        outside the allowed error; the message shows the case.
    """
    __tracebackhide__ = True
    case = _legacy(case, dtype, seed, ("conv2d",))
    K = conv_args(case)[1][0].size  # C/groups * kh * kw
    bound_of = _conv_bound(case, oracles.reference_conv2d, K)
    _check_forward(fn, case, convert, bound_of, atol=atol, rtol=rtol, slack=slack, check_dtype=check_dtype)


def assert_conv_transpose2d_matches(
    fn: Function,
    case: Case,
    *,
    convert: Convert = None,
    atol: float = 0.0,
    rtol: float = 0.0,
    slack: float = 1.0,
    check_dtype: bool = True,
) -> None:
    """Assert that ``fn`` computes ``case`` as the direct scatter oracle does.

    ``fn`` has ``torch.nn.functional.conv_transpose2d``'s signature; an output element sums at most
    ``K = C/groups·kh·kw`` products and the bias. Keywords as in :func:`assert_conv2d_matches`.
    """
    __tracebackhide__ = True
    case = _legacy(case, None, None, ("conv_transpose2d",))
    w = conv_args(case)[1]
    K = w.shape[0] // case.kwargs.get("groups", 1) * w.shape[2] * w.shape[3]
    bound_of = _conv_bound(case, oracles.reference_conv_transpose2d, K)
    _check_forward(fn, case, convert, bound_of, atol=atol, rtol=rtol, slack=slack, check_dtype=check_dtype)


def _pool_fn(fn: Function | dict[str, Function], case: Case) -> Function:
    __tracebackhide__ = True
    if isinstance(fn, dict):
        if case.kind is None or case.kind not in fn:
            raise AssertionError(f"fn has no entry for {case.kind!r} (keys {sorted(fn)}); case: {case!r}")
        return fn[case.kind]
    return fn


def _check_indices(indices: object, want: Float64Array, windows: list[list[Window]], case: Case) -> None:
    """Each index must point, inside its window, at an element equal to the output (NaN at NaN)."""
    __tracebackhide__ = True
    index, name = to_host(indices, f"{case.op}'s indices", case)
    if index.dtype.kind not in "iu" or index.shape != want.shape:
        raise AssertionError(
            f"{case.op}'s indices have dtype {name} and shape {index.shape}; expected integers of shape "
            f"{want.shape}; case: {case!r}"
        )
    x = numpy.asarray(case.args[0], dtype=numpy.float64)
    H, W = x.shape[-2:]
    member = numpy.zeros((len(windows), len(windows[0]), H * W), dtype=bool)  # (out_h, out_w, H*W)
    for oy, row in enumerate(windows):
        for ox, (taps, _) in enumerate(row):
            member[oy, ox, taps] = True
    inside = (index >= 0) & (index < H * W)
    safe = numpy.where(inside, index, 0)
    out_y, out_x = numpy.indices(want.shape[-2:])  # (out_h, out_w) each
    in_window = inside & member[out_y, out_x, safe]
    flat = x.reshape(x.shape[:-2] + (H * W,))
    picked = numpy.take_along_axis(flat, safe.reshape(safe.shape[:-2] + (-1,)), axis=-1).reshape(want.shape)
    empty = ~numpy.any(member, axis=-1)[
        out_y, out_x
    ]  # a window wholly in padding (dilated): -inf, no index to point at
    ok = empty | (in_window & ((picked == want) | (numpy.isnan(picked) & numpy.isnan(want))))
    if not ok.all():
        at = tuple(int(i) for i in numpy.argwhere(~ok)[0])
        raise AssertionError(
            f"{case.op}'s index {int(index[at])} at {at} does not point, inside its window, at the maximum "
            f"{float(want[at])!r} (flat positions iy*W + ix of the input plane); case: {case!r}"
        )


def assert_pool2d_matches(
    fn: Function | dict[str, Function],
    case: Case | PoolConfig,
    *,
    convert: Convert = None,
    atol: float = 0.0,
    rtol: float = 0.0,
    slack: float = 1.0,
    check_dtype: bool = True,
    dtype: DTypeLike | None = None,
    seed: int | None = None,
) -> None:
    """Assert that ``fn`` computes the pooling ``case`` as the oracle does.

    ``fn`` has ``torch.nn.functional.max_pool2d``'s or ``avg_pool2d``'s signature (per ``case.kind``),
    or is a dict ``{"max": ..., "avg": ...}``. Max pooling must match exactly (it selects), and with
    ``return_indices`` each index must point, within its window, at an element equal to the output
    (NaN at NaN; ties may go to any). Average pooling is allowed the rounding of ``kh·kw`` additions
    and a division, ``gamma_{kh·kw+2}·Σ|x|/|divisor|``. Keywords as in :func:`assert_conv2d_matches`;
    a :class:`PoolConfig` of the first kit is accepted with ``dtype`` and ``seed``.
    """
    __tracebackhide__ = True
    case = _legacy(case, dtype, seed, ("max_pool2d", "avg_pool2d"))
    kwargs = {k: v for k, v in case.kwargs.items() if k != "return_indices"}
    x = case.input
    bound_of: BoundOf
    if case.kind == "max":

        def bound_of(out_dtype: str) -> float | Array:
            return 0.0
    else:
        kh, kw = oracles._pair(kwargs["kernel_size"], "kernel_size")
        m = numpy.abs(oracles.reference_avg_pool2d(_abs(x), **kwargs))  # Σ|x| / |divisor|

        def bound_of(out_dtype: str) -> float | Array:
            return sum_bound(kh * kw + 2, m, case.dtype.name, out_dtype)

    windows = None
    if case.kwargs.get("return_indices"):
        geometry: Kwargs = {
            k: kwargs.get(k, d) for k, d in (("stride", None), ("padding", 0), ("dilation", 1), ("ceil_mode", False))
        }
        *_, windows = oracles.pool_windows(x.shape, kwargs["kernel_size"], **geometry)
    _check_forward(
        _pool_fn(fn, case),
        case,
        convert,
        bound_of,
        atol=atol,
        rtol=rtol,
        slack=slack,
        check_dtype=check_dtype,
        indices=windows,
    )


def assert_adaptive_pool2d_matches(
    fn: Function | dict[str, Function],
    case: Case,
    *,
    convert: Convert = None,
    atol: float = 0.0,
    rtol: float = 0.0,
    slack: float = 1.0,
    check_dtype: bool = True,
) -> None:
    """Assert that ``fn`` computes the adaptive pooling ``case`` as the oracle does.

    ``fn`` has ``adaptive_max_pool2d``'s or ``adaptive_avg_pool2d``'s signature, or is a dict
    ``{"max": ..., "avg": ...}``; max exactly (indices as in
    :func:`assert_pool2d_matches`), average within the rounding of a bin's sum and a division,
    ``gamma_{t+2}·mean|x|`` for bins of at most ``t`` elements.
    """
    __tracebackhide__ = True
    case = _legacy(case, None, None, ("adaptive_max_pool2d", "adaptive_avg_pool2d"))
    x = case.input
    windows = oracles.adaptive_windows(x.shape, case.kwargs["output_size"])
    bound_of: BoundOf
    if case.kind == "max":

        def bound_of(out_dtype: str) -> float | Array:
            return 0.0
    else:
        t = max(len(taps) for row in windows for taps, _ in row)
        m = oracles.reference_adaptive_avg_pool2d(_abs(x), case.kwargs["output_size"])

        def bound_of(out_dtype: str) -> float | Array:
            return sum_bound(t + 2, m, case.dtype.name, out_dtype)

    _check_forward(
        _pool_fn(fn, case),
        case,
        convert,
        bound_of,
        atol=atol,
        rtol=rtol,
        slack=slack,
        check_dtype=check_dtype,
        indices=windows,
    )


def assert_conv2d_backward_matches(
    backward_fn: Function,
    case: Case,
    *,
    convert: Convert = None,
    atol: float = 0.0,
    rtol: float = 0.0,
    slack: float = 1.0,
) -> None:
    """Assert that ``backward_fn`` computes conv2d's gradients for ``case`` as the float64 loops do.

    ``backward_fn(grad_output, input, weight, stride=, padding=, dilation=, groups=)`` returns
    ``(grad_input, grad_weight, grad_bias)`` (:func:`npresnet.functional.conv2d_backward`'s
    signature); the oracle is :func:`reference_conv2d_backward`. The bounds: a grad_input element
    sums ``O/groups·kh·kw`` products, a grad_weight element ``N·out_h·out_w``, grad_bias ``N·out_h·out_w``
    values (``gamma_n`` times the same sums of absolute values). grad_bias is always compared.
    """
    __tracebackhide__ = True
    case = _legacy(case, None, None, ("conv2d",))
    if case.grad_output is None:
        raise TypeError("this case has no grad_output; draw it from conv2d_cases()")
    x, w, _ = conv_args(case)
    g = case.grad_output
    kwargs = {k: v for k, v in case.kwargs.items() if k in ("stride", "padding", "dilation", "groups")}
    out, _ = _call(backward_fn, case, convert, args=(g, x, w), kwargs=kwargs)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise AssertionError(
            f"backward returned a {type(out).__name__}, not (grad_input, grad_weight, grad_bias); case: {case!r}"
        )
    want = oracles.reference_conv2d_backward(g, x, w, **kwargs)
    magnitude = oracles.reference_conv2d_backward(_abs(g), _abs(x), _abs(w), **kwargs)
    pixels = g.size // g.shape[-3]  # N * out_h * out_w
    terms = (w.shape[0] // kwargs.get("groups", 1) * w.shape[2] * w.shape[3], pixels, pixels)
    for name, got, exp, m, n in zip(("grad_input", "grad_weight", "grad_bias"), out, want, magnitude, terms):
        host, dtype = _float_output(got, name, case)
        compare(name, host, exp, sum_bound(n, m, case.dtype.name, dtype), case, atol=atol, rtol=rtol, slack=slack)


def assert_conv2d_rejects(fn: Function, case: Case, *, convert: Convert = None) -> None:
    """Assert that ``fn`` raises (any Exception) on ``case``, an argument set torch refuses.

    The cases come from :func:`invalid_conv2d_cases`; the assertion fails if ``fn`` returns.
    """
    __tracebackhide__ = True
    args = tuple(a if a is None or convert is None else convert(a) for a in case.args)
    try:
        out = fn(*args, **case.kwargs)
    except Exception:
        return
    shape = tuple(getattr(out, "shape", ()))
    raise AssertionError(
        f"conv2d returned a {type(out).__name__} of shape {shape} for arguments torch refuses "
        f"({case.reason or 'invalid'}); case: {case!r}"
    )
