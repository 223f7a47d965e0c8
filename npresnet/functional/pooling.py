"""Pooling: max, average and adaptive average, each with its output shape and backward.

Max and average pooling reduce the same strided window slices im2col copies (:mod:`.conv`),
of an input padded once (with −∞ for max, 0 for average). Both reductions are separable, so
they run in two passes over the slices: along each row first (the ``kw`` column offsets, giving
every padded row's reduction over each output's columns), then down the columns of that (the
``kh`` row offsets). That is ``kh + kw`` vectorised slice operations instead of ``kh*kw``, and
no ``kh*kw`` times larger column array: a huge kernel costs passes proportional to its side.

Adaptive average pooling (two small matrix products with PyTorch's bins) lives in :mod:`.adaptive_pool`
and is re-exported here.

Naming: ``kh, kw`` kernel, ``sy, sx`` stride, ``ph, pw`` padding, ``dy, dx`` dilation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, overload

from .._args import is_int
from ..backend import get_array_module
from ._checks import (
    _as_batch,
    _batch_shape,
    _check_elements,
    _check_float,
    _input_shape,
    _out_size,
    _positive_pair,
    _shape,
    _Shaped,
)
from .adaptive_pool import adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_avg_pool2d_output_shape
from .columns import _pad, _padded_shape, _window

if TYPE_CHECKING:
    import types
    from collections.abc import Callable
    from typing import Any

    import numpy

    from .._typing import Array, IntPair, Shape, Shaped

    Pair = tuple[int, int]
    # (kernel, stride, padding, dilation, (out_h, out_w))
    Geometry = tuple[Pair, Pair, Pair, Pair, Pair]

__all__ = [
    "max_pool2d_output_shape",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d_output_shape",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_output_shape",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
]


# --------------------------------------------------------------------------- window geometry
def _pool_geometry(
    func: str,
    input: Shaped | _Shaped,
    kernel_size: IntPair,
    stride: IntPair | list[int] | None,
    padding: IntPair,
    dilation: IntPair,
    ceil_mode: bool,
) -> Geometry:
    """Pooling's argument checks and geometry from shapes alone: (kernel, stride, padding, dilation, out_hw)."""
    kernel = _positive_pair(kernel_size, "kernel_size")
    strides = (
        kernel
        if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
        else _positive_pair(stride, "stride")
    )
    dilations = _positive_pair(dilation, "dilation")
    pads = _positive_pair(padding, "padding", low=0)
    if pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
        raise ValueError(
            f"{func}: padding={pads} must be at most half of kernel_size={kernel} (padding <= kernel_size // 2)"
        )
    H, W = _shape(input)[-2:]
    out_h = _out_size(func, input, "height", H, kernel[0], strides[0], pads[0], dilations[0], bool(ceil_mode))
    out_w = _out_size(func, input, "width", W, kernel[1], strides[1], pads[1], dilations[1], bool(ceil_mode))
    return kernel, strides, pads, dilations, (out_h, out_w)


def _check_pool_sizes(func: str, input: Shaped | _Shaped, geometry: Geometry) -> tuple[int, ...]:
    """Refuse, before allocating, an output or padded input over MAX_ELEMENTS elements; return the padded shape."""
    kernel, stride, padding, dilation, out_hw = geometry
    because = f"input {_shape(input)} with kernel_size={kernel}, padding={padding}, stride={stride}"
    _check_elements(func, "an output", (*_shape(input)[:-2], *out_hw), because)
    padded = _padded_shape(_shape(input), padding, out_hw, kernel, stride, dilation)
    _check_elements(func, "a padded input", padded, because)
    return padded


def _pool_output_shape(
    func: str,
    input: Shaped,
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: IntPair,
    dilation: IntPair,
    ceil_mode: bool,
) -> Shape:
    _batch_shape("input", input)
    *_, (out_h, out_w) = _pool_geometry(func, input, kernel_size, stride, padding, dilation, ceil_mode)
    return (*_shape(input)[:-2], out_h, out_w)


def _row_pass(xpad: Array, j: int, geometry: Geometry) -> Array:
    """Column offset ``j``'s slice of ``xpad`` (N, C, Hp, Wp) for every padded row: (N, C, Hp, out_w)."""
    _, (sy, sx), _, (dy, dx), (out_h, out_w) = geometry
    return _window(xpad, 0, j, (1, sx), (1, dx), (xpad.shape[-2], out_w))


def _column_pass(rows: Array, i: int, geometry: Geometry) -> Array:
    """Row offset ``i``'s slice of a row-reduced ``rows`` (N, C, Hp, out_w): (N, C, out_h, out_w)."""
    _, (sy, sx), _, (dy, dx), (out_h, out_w) = geometry
    return _window(rows, i, 0, (sy, 1), (dy, 1), (out_h, out_w))


def _separable_reduce(xpad: Array, geometry: Geometry, reduce: Callable[[Array, Array], object]) -> Array:
    """Reduce every window of ``xpad`` (N, C, Hp, Wp): over the ``kw`` column offsets, then the ``kh`` row offsets.

    ``reduce(acc, slice)`` combines in place; returns (N, C, out_h, out_w).
    """
    (kh, kw) = geometry[0]
    rows: Array = _row_pass(xpad, 0, geometry).copy()  # (N, C, Hp, out_w)
    for j in range(1, kw):
        reduce(rows, _row_pass(xpad, j, geometry))
    out: Array = _column_pass(rows, 0, geometry).copy()  # (N, C, out_h, out_w)
    for i in range(1, kh):
        reduce(out, _column_pass(rows, i, geometry))
    return out


# --------------------------------------------------------------------------- max pooling
def max_pool2d_output_shape(
    input: Shaped,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> Shape:
    """Return the shape :func:`max_pool2d` returns, with the same checks and errors, computing nothing.

    It allocates nothing, so the size limit :data:`~npresnet.functional.MAX_ELEMENTS` is not applied.
    """
    return _pool_output_shape("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)


# For the type checker: the output alone, or (output, indices) when return_indices=True is passed.
@overload
def max_pool2d(
    input: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: Literal[False] = False,
) -> Array: ...
@overload
def max_pool2d(
    input: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    *,
    return_indices: Literal[True],
) -> tuple[Array, Array]: ...
@overload
def max_pool2d(
    input: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Array | tuple[Array, Array]: ...
def max_pool2d(
    input: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Array | tuple[Array, Array]:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Padding behaves as −∞, so it never wins the max; NaN propagates as in PyTorch.

    Parameters
    ----------
    input : array, shape (N, C, H, W) or (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        At most ``kernel_size // 2``.
    dilation : int or (int, int)
    ceil_mode : bool
    return_indices : bool
        Also return, for each output, the flat index ``row * W + col`` of its max within the
        input's (n, c) plane, as torch (the first max in scan order on ties); see
        :func:`max_pool2d_backward`.

    Returns
    -------
    array, shape (N, C, out_h, out_w)
        With ``return_indices``, the pair ``(output, indices)``, indices int64 of the same shape.

    Raises
    ------
    ValueError
        Also when the output or padded input would have more than
        :data:`~npresnet.functional.MAX_ELEMENTS` elements (checked before allocating).
    """
    x, unbatched = _as_batch("input", input)
    xp = get_array_module(x)
    geometry = _pool_geometry("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    padded = _check_pool_sizes("max_pool2d", x, geometry)
    xpad = _pad(x, padded[-2:], geometry[2], value=-math.inf)  # (N, C, Hp, Wp): padding never wins
    if return_indices:
        out, indices = _max_pool2d_with_indices(xpad, x.shape[-2:], geometry)
        return (out[0], indices[0]) if unbatched else (out, indices)
    out = _separable_reduce(xpad, geometry, lambda acc, v: xp.maximum(acc, v, out=acc))  # NaN-propagating
    return out[0] if unbatched else out


def _first_valid(xp: types.ModuleType, out: int, stride: int, pad: int, dilation: int) -> Array:
    """Return the first in-input position of each window along one axis, shape (out,).

    That is the window's start ``o*stride - pad``, moved past the padding in steps of ``dilation``
    (torch's starting index).
    """
    start = xp.arange(out) * stride - pad
    skip = (xp.maximum(-start, 0) + dilation - 1) // dilation  # dilated steps spent in the padding
    first: Array = start + skip * dilation
    return first


def _max_pool2d_with_indices(xpad: Array, hw: tuple[int, ...], geometry: Geometry) -> tuple[Array, Array]:
    """Max pooling of the −∞-padded ``xpad`` (N, C, Hp, Wp) and torch's indices: ``row * W + col`` of each max.

    Torch scans a window's offsets row by row and a value wins when it is greater than the best so
    far or NaN: ties keep the first maximum in that order, and NaN the last NaN. The two passes
    keep the same order: along each row the first maximum (last NaN) column offset ``j``, then down
    the rows the first row offset ``i`` whose row maximum is greatest (the last whose is NaN).
    A window whose maximum is −∞ reports its first input element, as torch.
    """
    xp = get_array_module(xpad)
    (kh, kw), (sy, sx), (ph, pw), (dy, dx), (out_h, out_w) = geometry
    W = hw[1]

    def scan(best: Array, at: Array, value: Array, offset: int, carry: tuple[Array, Array] | None = None) -> None:
        better = (value > best) | xp.isnan(value)  # torch's rule: greater, or NaN
        xp.copyto(best, value, where=better)
        xp.copyto(at, offset, where=better)
        if carry is not None:
            xp.copyto(carry[0], carry[1], where=better)

    rows = _row_pass(xpad, 0, geometry).copy()  # (N, C, Hp, out_w): each row's max over the column offsets
    row_j = xp.zeros(rows.shape, dtype=xp.int64)  # the column offset j of that max
    for j in range(1, kw):
        scan(rows, row_j, _row_pass(xpad, j, geometry), j)
    out = _column_pass(rows, 0, geometry).copy()  # (N, C, out_h, out_w)
    at_i = xp.zeros(out.shape, dtype=xp.int64)
    at_j = _column_pass(row_j, 0, geometry).copy()
    for i in range(1, kh):
        scan(out, at_i, _column_pass(rows, i, geometry), i, carry=(at_j, _column_pass(row_j, i, geometry)))
    iy = (xp.arange(out_h) * sy - ph)[:, None] + at_i * dy  # input row of the max, (N, C, out_h, out_w)
    ix = (xp.arange(out_w) * sx - pw)[None, :] + at_j * dx
    first = _first_valid(xp, out_h, sy, ph, dy)[:, None] * W + _first_valid(xp, out_w, sx, pw, dx)[None, :]
    indices: Array = xp.where(out == -math.inf, first, iy * W + ix)  # an all −∞ window: its first input element
    return out, indices


def max_pool2d_backward(grad_output: Array, indices: Array, input_shape: Shape) -> Array:
    """Gradient of :func:`max_pool2d`: each output's gradient goes to the input element that won its max.

    An input element that is the max of several overlapping windows collects all their gradients:
    a scatter-add, ``grad.flat[index] += grad_output``, written ``xp.add.at`` (NumPy's and CuPy's
    ``ufunc.at``), which adds in the gradient's own dtype, so a float32 backward stays float32.
    NumPy adds each element's contributions in the outputs' scan order; CuPy adds them with atomics,
    in an order that may differ between runs (by rounding only: at most ``ceil(kh/sy)*ceil(kw/sx)``
    windows can share an element).

    Parameters
    ----------
    grad_output : array, shape (N, C, out_h, out_w) or (C, out_h, out_w)
    indices : integer array, same shape
        From ``max_pool2d(..., return_indices=True)``: ``row * W + col`` within each (n, c) plane.
    input_shape : tuple
        ``(N, C, H, W)`` or ``(C, H, W)`` of the forward input, at most
        :data:`~npresnet.functional.MAX_ELEMENTS` elements.

    Returns
    -------
    array, shape ``input_shape``
    """
    _check_float("grad_output", grad_output)
    input_shape = _input_shape("max_pool2d_backward", input_shape)
    xp = get_array_module(grad_output, indices)
    if (
        _shape(indices) != _shape(grad_output)
        or len(input_shape) != grad_output.ndim
        or input_shape[:-2] != _shape(grad_output)[:-2]
    ):
        raise ValueError(
            f"max_pool2d_backward: grad_output {_shape(grad_output)}, indices {_shape(indices)} and "
            f"input_shape {input_shape} must agree on every axis but the last two"
        )
    planes, HW = math.prod(input_shape[:-2]), input_shape[-2] * input_shape[-1]
    indices = indices.reshape(planes, -1)
    # A dilated window can fall wholly in the padding: it saw no input, its index points past the
    # plane, and its gradient goes nowhere (torch writes it out of bounds).
    inside = (indices >= 0) & (indices < HW)
    flat = xp.where(inside, indices, 0) + (xp.arange(planes) * HW)[:, None]  # index into the whole input
    weights = xp.where(inside, grad_output.reshape(planes, -1), grad_output.dtype.type(0))
    grad: Array = xp.zeros(planes * HW, dtype=grad_output.dtype)
    xp.add.at(grad, flat.ravel(), weights.ravel())  # scatter-add; repeated indices accumulate
    return grad.reshape(input_shape)


# --------------------------------------------------------------------------- average pooling
def avg_pool2d_output_shape(
    input: Shaped, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0, ceil_mode: bool = False
) -> Shape:
    """Return the shape :func:`avg_pool2d` returns, with the same checks and errors, computing nothing."""
    return _pool_output_shape("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)


def _check_divisor(divisor_override: object) -> None:
    if divisor_override is not None and (not is_int(divisor_override) or divisor_override == 0):
        raise ValueError(f"divisor_override must be a non-zero int, got {divisor_override!r}")


def _avg_divisor(
    xp: types.ModuleType,
    size: int,
    kernel: int,
    stride: int,
    pad: int,
    out: int,
    count_include_pad: bool,
    dtype: numpy.dtype[Any],
) -> Array:
    """Per-position window size along one axis, PyTorch's rule, shape (out,)."""
    start = xp.arange(out) * stride - pad
    end = xp.minimum(start + kernel, size + pad)  # a ceil-mode window stops at the right padding
    if not count_include_pad:
        start, end = xp.maximum(start, 0), xp.minimum(end, size)
    divisor: Array = (end - start).astype(dtype)
    return divisor


def _avg_divisors(
    xp: types.ModuleType,
    hw: tuple[int, ...],
    geometry: Geometry,
    count_include_pad: bool,
    divisor_override: int | None,
    dtype: numpy.dtype[Any],
) -> Array | numpy.generic:
    """Return what each output's window sum is divided by.

    An array of shape (out_h, out_w), the window areas by PyTorch's rule; or a scalar with ``divisor_override``.
    """
    if divisor_override is not None:
        override: numpy.generic = dtype.type(divisor_override)
        return override
    kernel, stride, padding, _, out_hw = geometry
    div_h, div_w = (
        _avg_divisor(xp, n, k, s, p, o, count_include_pad, dtype)
        for n, k, s, p, o in zip(hw, kernel, stride, padding, out_hw)
    )
    return div_h[:, None] * div_w[None, :]


def avg_pool2d(
    input: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Array:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Padding contributes zeros to the sum; the divisor is the window area, counting padded
    positions when ``count_include_pad`` (never the ceil-mode overhang beyond the padding),
    or ``divisor_override`` when given.

    Parameters
    ----------
    input : array, shape (N, C, H, W) or (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        At most ``kernel_size // 2``.
    ceil_mode, count_include_pad : bool
    divisor_override : int, optional

    Returns
    -------
    array, shape (N, C, out_h, out_w)

    Raises
    ------
    ValueError
        Also when the output or padded input would have more than
        :data:`~npresnet.functional.MAX_ELEMENTS` elements (checked before allocating).
    """
    x, unbatched = _as_batch("input", input)
    xp = get_array_module(x)
    _check_divisor(divisor_override)
    geometry = _pool_geometry("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    padded = _check_pool_sizes("avg_pool2d", x, geometry)
    xpad = _pad(x, padded[-2:], geometry[2])  # (N, C, Hp, Wp); padding adds 0
    out = _separable_reduce(xpad, geometry, lambda acc, v: xp.add(acc, v, out=acc))  # window sums
    out /= _avg_divisors(xp, x.shape[-2:], geometry, count_include_pad, divisor_override, x.dtype)
    return out[0] if unbatched else out


def avg_pool2d_backward(
    grad_output: Array,
    input_shape: Shape,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Array:
    """Gradient of :func:`avg_pool2d` with respect to its input.

    Each output's gradient, divided by its window's divisor, is spread over every input element
    of that window (overlaps add; the padding's share is dropped).

    The adjoint of the forward's two passes, in reverse: each row offset's slice of a
    (N, C, Hp, out_w) buffer collects the output gradient, then each column offset's slice
    of the padded input gradient collects that buffer; ``kh + kw`` slice additions.

    Parameters
    ----------
    grad_output : array, shape (N, C, out_h, out_w) or (C, out_h, out_w)
    input_shape : tuple
        ``(N, C, H, W)`` or ``(C, H, W)`` of the forward input, at most
        :data:`~npresnet.functional.MAX_ELEMENTS` elements.
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        As given to :func:`avg_pool2d`.

    Returns
    -------
    array, shape ``input_shape``
    """
    _check_float("grad_output", grad_output)
    _check_divisor(divisor_override)
    shape = _input_shape("avg_pool2d_backward", input_shape)
    xp = get_array_module(grad_output)
    unbatched = len(shape) == 3
    x = _Shaped((1, *shape) if unbatched else shape)
    g = grad_output[None] if unbatched else grad_output
    geometry = _pool_geometry("avg_pool2d_backward", x, kernel_size, stride, padding, 1, ceil_mode)
    (kh, kw), _, (ph, pw), _, out_hw = geometry
    if _shape(g) != x.shape[:2] + out_hw:
        raise ValueError(
            f"avg_pool2d_backward: grad_output must have shape {x.shape[:2] + out_hw} for "
            f"input_shape {shape}, got {_shape(grad_output)}"
        )
    H, W = x.shape[2:]
    g = g / _avg_divisors(xp, (H, W), geometry, count_include_pad, divisor_override, g.dtype)  # each mean's gradient
    padded = _check_pool_sizes("avg_pool2d_backward", x, geometry)
    rows: Array = xp.zeros(padded[:-1] + (out_hw[1],), dtype=g.dtype)  # (N, C, Hp, out_w)
    for i in range(kh):
        _column_pass(rows, i, geometry)[...] += g  # one row offset's slice never repeats an element
    gpad: Array = xp.zeros(padded, dtype=g.dtype)  # (N, C, Hp, Wp)
    for j in range(kw):
        _row_pass(gpad, j, geometry)[...] += rows
    grad: Array = xp.ascontiguousarray(gpad[:, :, ph : ph + H, pw : pw + W])  # the padding's share is dropped
    return grad[0] if unbatched else grad
