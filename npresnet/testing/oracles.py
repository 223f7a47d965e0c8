"""Naive float64 oracles written straight from the definitions: the kit's source of truth.

Each loops over output pixels (or, for ``conv_transpose2d``, input pixels) and kernel offsets and
reads the input at ``iy = oy*sy - pad_top + ky*dy``; positions outside the input are padding. Window
positions are counted by walking them, not with the output-size formula, so the oracles are an
independent check of :func:`npresnet.shapes.conv_output_size` too. Products are taken elementwise
(never through BLAS, which may skip zero operands), so IEEE arithmetic applies to the definition:

- convolutions: ``0 · inf`` is NaN, ``inf + (-inf)`` is NaN, NaN propagates; padding contributes
  nothing (torch multiplies a padded 0 by a finite weight, which is the same);
- max pooling: NaN wins (torch's rule); padding is −∞ and never wins;
- average pooling: the window sum follows IEEE (``inf`` and ``-inf`` in one window give NaN), then
  one division;
- adaptive pooling: the same per bin.

They are slow; keep inputs small (the strategies do). All return float64 NumPy arrays.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeAlias

import numpy

from ..shapes import pair

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from numpy.typing import ArrayLike, NDArray

__all__ = [
    "reference_conv2d",
    "reference_conv2d_backward",
    "reference_conv_transpose2d",
    "reference_max_pool2d",
    "reference_avg_pool2d",
    "reference_adaptive_avg_pool2d",
    "reference_adaptive_max_pool2d",
]

#: An int hyper-parameter in one of torch's forms: ``2``, ``(2,)`` or ``(2, 3)`` (a list reads as a tuple).
Ints: TypeAlias = "int | tuple[int] | tuple[int, int] | list[int]"
#: conv2d's ``padding``: :data:`Ints`, ``"same"`` or ``"valid"``.
Padding: TypeAlias = "Ints | str"
#: Adaptive pooling's ``output_size``: an int, or a pair whose None entries keep that input size.
OutputSize: TypeAlias = "int | tuple[int | None, int | None] | list[int | None]"
#: One pooling window: the flat indices ``iy*W + ix`` of its taps inside the input, and how many
#: of its taps lie inside the input or its padding.
Window: TypeAlias = "tuple[list[int], int]"
#: A float64 NumPy array, what every oracle returns.
Float64Array: TypeAlias = "NDArray[numpy.float64]"


def _pair(value: Ints, name: str) -> tuple[int, int]:
    """``(h, w)`` from an int, a 1-tuple or a pair (torch's forms)."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    return pair(value, name)


def conv_pads(padding: Padding, kernel: Sequence[int], dilation: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """((top, bottom), (left, right)) for conv2d's padding argument; 'same' puts the odd one last."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in total)
        raise ValueError(f"padding must be 'same', 'valid' or ints, got {padding!r}")
    ph, pw = _pair(padding, "padding")
    return (ph, ph), (pw, pw)


def window_starts(
    size: int, kernel: int, stride: int, pad_before: int, pad_after: int, dilation: int, ceil_mode: bool = False
) -> list[int]:
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


def _as_batch(array: ArrayLike) -> tuple[Float64Array, bool]:
    x = numpy.asarray(array, dtype=numpy.float64)
    return (x[None], True) if x.ndim == 3 else (x, False)


def _conv_windows(
    x_shape: tuple[int, ...], weight_shape: tuple[int, ...], stride: Ints, padding: Padding, dilation: Ints
) -> tuple[list[tuple[int, int, int, int, int, int]], tuple[int, int]]:
    """Yield ``(oy, ox, ky, kx, iy, ix)`` for every tap of every window that lies inside the input.

    The output size comes back through ``window_starts``; used by the forward and backward oracles.
    """
    H, W = x_shape[-2:]
    kh, kw = weight_shape[-2:]
    sy, sx = _pair(stride, "stride")
    dy, dx = _pair(dilation, "dilation")
    (pt, pb), (pl, pr) = conv_pads(padding, (kh, kw), (dy, dx))
    rows = window_starts(H, kh, sy, pt, pb, dy)
    cols = window_starts(W, kw, sx, pl, pr, dx)
    taps = [
        (oy, ox, ky, kx, y0 + ky * dy, x0 + kx * dx)
        for oy, y0 in enumerate(rows)
        for ox, x0 in enumerate(cols)
        for ky in range(kh)
        for kx in range(kw)
        if 0 <= y0 + ky * dy < H and 0 <= x0 + kx * dx < W  # zero padding adds nothing
    ]
    return taps, (len(rows), len(cols))


def reference_conv2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: Ints = 1,
    padding: Padding = 0,
    dilation: Ints = 1,
    groups: int = 1,
) -> Float64Array:
    """Naive float64 ``conv2d`` (cross-correlation), the oracle. Small inputs only.

    ``out[n, o, oy, ox] = bias[o] + sum over c, ky, kx of
    input[n, g*Cg + c, oy*sy - pt + ky*dy, ox*sx - pl + kx*dx] * weight[o, c, ky, kx]``,
    where ``g = o // (O // groups)`` and positions outside the input are zero padding.

    Parameters and shapes are those of ``torch.nn.functional.conv2d``; inputs may be any
    array the NumPy ``asarray`` accepts. Returns a float64 NumPy array.
    """
    x, unbatched = _as_batch(input)
    w = numpy.asarray(weight, dtype=numpy.float64)
    N, C = x.shape[:2]
    O, Cg = w.shape[:2]
    taps, (out_h, out_w) = _conv_windows(x.shape, w.shape, stride, padding, dilation)
    out = numpy.zeros((N, O, out_h, out_w))
    for oy, ox, ky, kx, iy, ix in taps:
        xs = x[:, :, iy, ix].reshape(N, groups, 1, Cg)  # (N, groups, 1, Cg)
        ws = w[:, :, ky, kx].reshape(groups, O // groups, Cg)  # (groups, Og, Cg)
        with numpy.errstate(invalid="ignore"):  # 0·inf and inf - inf are NaN, as IEEE says
            out[:, :, oy, ox] += (xs * ws).sum(axis=-1).reshape(N, O)
    if bias is not None:
        out += numpy.asarray(bias, dtype=numpy.float64)[None, :, None, None]
    return out[0] if unbatched else out


def reference_conv2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    weight: ArrayLike,
    stride: Ints = 1,
    padding: Padding = 0,
    dilation: Ints = 1,
    groups: int = 1,
) -> tuple[Float64Array, Float64Array, Float64Array]:
    """Naive float64 gradients of ``conv2d``: ``(grad_input, grad_weight, grad_bias)``. Small inputs only.

    Written from the forward's definition, not as its adjoint by other code: every tap
    ``out[n, o, oy, ox] += x[n, c, iy, ix] · w[o, c', ky, kx]`` sends ``g[n, o, oy, ox] · w`` to
    ``grad_input[n, c, iy, ix]`` and ``g · x`` to ``grad_weight[o, c', ky, kx]``; ``grad_bias[o]``
    sums ``g[:, o]``. Shapes: ``input.shape``, ``weight.shape``, ``(O,)``.
    """
    x, unbatched = _as_batch(input)
    g = numpy.asarray(grad_output, dtype=numpy.float64)
    g = g[None] if unbatched else g
    w = numpy.asarray(weight, dtype=numpy.float64)
    N, C = x.shape[:2]
    O, Cg = w.shape[:2]
    Og = O // groups
    taps, _ = _conv_windows(x.shape, w.shape, stride, padding, dilation)
    grad_input = numpy.zeros_like(x)
    grad_weight = numpy.zeros_like(w)
    for oy, ox, ky, kx, iy, ix in taps:
        go = g[:, :, oy, ox].reshape(N, groups, Og, 1)  # (N, groups, Og, 1)
        ws = w[:, :, ky, kx].reshape(groups, Og, Cg)  # (groups, Og, Cg)
        xs = x[:, :, iy, ix].reshape(N, groups, 1, Cg)  # (N, groups, 1, Cg)
        with numpy.errstate(invalid="ignore"):  # IEEE: NaN where 0·inf or inf - inf
            grad_input[:, :, iy, ix] += (go * ws).sum(axis=2).reshape(N, C)
            grad_weight[:, :, ky, kx] += (go * xs).sum(axis=0).reshape(O, Cg)
    grad_bias = g.sum(axis=(0, 2, 3))
    return (grad_input[0] if unbatched else grad_input), grad_weight, grad_bias


def conv_transpose2d_output_size(
    size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    """``(size - 1)·stride - 2·padding + dilation·(kernel - 1) + output_padding + 1``, torch's definition."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def reference_conv_transpose2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: Ints = 1,
    padding: Ints = 0,
    output_padding: Ints = 0,
    groups: int = 1,
    dilation: Ints = 1,
) -> Float64Array:
    """Naive float64 ``conv_transpose2d``, the oracle: a direct scatter loop. Small inputs only.

    Every input pixel ``x[n, g*Cg + c, iy, ix]`` adds ``x · weight[g*Cg + c, o, ky, kx]`` to
    ``out[n, g*Og + o, iy*sy - ph + ky*dy, ix*sx - pw + kx*dx]`` where that lies inside the output
    (whose size is ``conv_transpose2d_output_size()``). Arguments in torch's order and shapes:
    weight ``(C, O // groups, kh, kw)``. Returns a float64 NumPy array.
    """
    x, unbatched = _as_batch(input)
    w = numpy.asarray(weight, dtype=numpy.float64)
    N, C, H, W = x.shape
    _, Og, kh, kw = w.shape
    Cg, O = C // groups, Og * groups
    (sy, sx), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    (oph, opw), (dy, dx) = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
    out_h = conv_transpose2d_output_size(H, kh, sy, ph, oph, dy)
    out_w = conv_transpose2d_output_size(W, kw, sx, pw, opw, dx)
    out = numpy.zeros((N, O, out_h, out_w))
    for iy in range(H):
        for ix in range(W):
            xs = x[:, :, iy, ix].reshape(N, groups, Cg, 1)  # (N, groups, Cg, 1)
            for ky in range(kh):
                for kx in range(kw):
                    y, z = iy * sy - ph + ky * dy, ix * sx - pw + kx * dx
                    if 0 <= y < out_h and 0 <= z < out_w:
                        ws = w[:, :, ky, kx].reshape(groups, Cg, Og)  # (groups, Cg, Og)
                        with numpy.errstate(invalid="ignore"):  # IEEE: NaN where 0·inf or inf - inf
                            out[:, :, y, z] += (xs * ws).sum(axis=2).reshape(N, O)
    if bias is not None:
        out += numpy.asarray(bias, dtype=numpy.float64)[None, :, None, None]
    return out[0] if unbatched else out


def pool_windows(
    shape: tuple[int, ...], kernel_size: Ints, stride: Ints | None, padding: Ints, dilation: Ints, ceil_mode: bool
) -> tuple[int, int, list[list[Window]]]:
    """Every window of a 2-D pooling over an input of ``shape`` (..., H, W), in output order.

    Returns ``(out_h, out_w, windows)``: ``windows[oy][ox] = (taps, n_padded)``, the flat indices
    ``iy*W + ix`` of its taps inside the input, and how many of its taps lie inside the input or
    its padding (not in a ceil-mode overhang).
    """
    H, W = shape[-2:]
    (kh, kw), (ph, pw), (dy, dx) = (
        _pair(kernel_size, "kernel_size"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
    )
    sy, sx = (kh, kw) if stride is None else _pair(stride, "stride")
    rows = window_starts(H, kh, sy, ph, ph, dy, ceil_mode)
    cols = window_starts(W, kw, sx, pw, pw, dx, ceil_mode)
    windows = []
    for y0 in rows:
        row = []
        for x0 in cols:
            taps, n_padded = [], 0
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = y0 + ky * dy, x0 + kx * dx
                    n_padded += (-ph <= iy < H + ph) and (-pw <= ix < W + pw)
                    if 0 <= iy < H and 0 <= ix < W:
                        taps.append(iy * W + ix)
            row.append((taps, n_padded))
        windows.append(row)
    return len(rows), len(cols), windows


def _pool(
    input: ArrayLike, reduce: Callable[[Float64Array, Window], float | Float64Array], windows: list[list[Window]]
) -> Float64Array:
    """Apply ``reduce(values (..., taps), window)`` to each window; ``windows`` from :func:`pool_windows`."""
    x = numpy.asarray(input, dtype=numpy.float64)
    flat = x.reshape(x.shape[:-2] + (-1,))  # (..., H*W)
    out = numpy.empty(x.shape[:-2] + (len(windows), len(windows[0]) if windows else 0))
    with numpy.errstate(invalid="ignore"):  # inf - inf in a window sum is NaN, as IEEE says
        for oy, row in enumerate(windows):
            for ox, window in enumerate(row):
                out[..., oy, ox] = reduce(flat[..., window[0]], window)
    return out


def _max(values: Float64Array) -> float | Float64Array:
    if values.shape[-1] == 0:
        return -math.inf
    largest: float | Float64Array = values.max(axis=-1)  # NaN-propagating; a float64 scalar for 1-D values
    return largest


def reference_max_pool2d(
    input: ArrayLike,
    kernel_size: Ints,
    stride: Ints | None = None,
    padding: Ints = 0,
    dilation: Ints = 1,
    ceil_mode: bool = False,
) -> Float64Array:
    """Naive float64 ``max_pool2d``, the oracle: the max over each window's taps inside the input.

    Padding never wins (it is −∞); a window with no tap inside the input gives −∞; NaN propagates.
    Small inputs only. Returns a float64 NumPy array.
    """
    *_, windows = pool_windows(numpy.shape(input), kernel_size, stride, padding, dilation, ceil_mode)
    return _pool(input, lambda v, _: _max(v), windows)


def reference_avg_pool2d(
    input: ArrayLike,
    kernel_size: Ints,
    stride: Ints | None = None,
    padding: Ints = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Float64Array:
    """Compute ``avg_pool2d`` naively in float64: the oracle.

    The sum of each window's taps inside the input, divided by ``divisor_override``, or by the
    number of taps inside the input and its zero padding
    (``count_include_pad``; a ceil-mode overhang past the padding is not counted), or by the number
    inside the input alone. Small inputs only. Returns a float64 NumPy array.
    """

    def reduce(values: Float64Array, window: Window) -> float | Float64Array:
        taps, n_padded = window
        if divisor_override is not None:
            divisor = divisor_override
        else:
            divisor = n_padded if count_include_pad else len(taps)
        average: float | Float64Array = values.sum(axis=-1) / divisor
        return average

    *_, windows = pool_windows(numpy.shape(input), kernel_size, stride, padding, 1, ceil_mode)
    return _pool(input, reduce, windows)


def adaptive_output_size(shape: tuple[int, ...], output_size: OutputSize) -> tuple[int, int]:
    """``(out_h, out_w)`` from an int, a pair, or a pair with None ("keep that input size")."""
    H, W = shape[-2:]
    if isinstance(output_size, (tuple, list)):
        out_h, out_w = output_size
        return (H if out_h is None else out_h), (W if out_w is None else out_w)
    return output_size, output_size


def adaptive_windows(shape: tuple[int, ...], output_size: OutputSize) -> list[list[Window]]:
    """Return the windows of adaptive pooling, as :func:`pool_windows` gives them.

    Bin ``(i, j)`` holds input rows ``floor(i*H/out_h) to ceil((i+1)*H/out_h) - 1`` and the
    columns likewise (PyTorch's bins).
    """
    H, W = shape[-2:]
    out_h, out_w = adaptive_output_size(shape, output_size)

    def bins(i: int, n: int, out: int) -> range:
        return range((i * n) // out, -((-(i + 1) * n) // out))  # floor .. ceil, exact integers

    return [
        [([r * W + c for r in bins(i, H, out_h) for c in bins(j, W, out_w)], 0) for j in range(out_w)]
        for i in range(out_h)
    ]


def reference_adaptive_avg_pool2d(input: ArrayLike, output_size: OutputSize) -> Float64Array:
    """Compute ``adaptive_avg_pool2d`` naively in float64: the oracle.

    Output ``(i, j)`` is the mean of input rows ``floor(i*H/out_h) to ceil((i+1)*H/out_h) - 1``
    and the columns likewise (PyTorch's bins).
    Small inputs only. Returns a float64 NumPy array.
    """
    windows = adaptive_windows(numpy.shape(input), output_size)
    return _pool(input, lambda v, w: v.sum(axis=-1) / len(w[0]), windows)


def reference_adaptive_max_pool2d(input: ArrayLike, output_size: OutputSize) -> Float64Array:
    """Compute ``adaptive_max_pool2d`` naively in float64: the oracle.

    The max of each of PyTorch's bins (as in :func:`reference_adaptive_avg_pool2d`); NaN
    propagates. Returns a float64 NumPy array.
    """
    windows = adaptive_windows(numpy.shape(input), output_size)
    return _pool(input, lambda v, _: _max(v), windows)
