"""Convolution by im2col: conv2d, its output shape and its backward, one matrix product per group.

The columns come from :mod:`.columns` (the textbook im2col: one strided slice of the padded
input per kernel offset, into an ``(N, C, kh, kw, out_h, out_w)`` array; col2im is its adjoint).
A convolution is then one matrix product per group, ``W @ cols``. :func:`conv2d` computes it
in chunks of images (and of output rows when one image is too large), so one chunk's columns
plus its output stay within ``workspace_bytes`` (:mod:`npresnet.workspace`); the chunking is a
loop around im2col, which itself always sees a whole padded block (the chunk's band of rows,
padded when the chunk is taken).

Naming: ``kh, kw`` kernel, ``sy, sx`` stride, ``ph, pw`` padding, ``dy, dx`` dilation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backend import get_array_module
from ..workspace import resolve_workspace_bytes, workspace_chunks
from ._checks import (
    _batch_shape,
    _check_chunks,
    _check_elements,
    _check_float,
    _check_groups,
    _check_same_dtype,
    _out_size,
    _positive_pair,
    _shape,
)

# im2col and col2im are public here too.
from .columns import _col2im, _extent, _im2col, _pad, _padded_shape, col2im, im2col  # noqa: F401

if TYPE_CHECKING:
    import types
    from collections.abc import Callable

    from .._typing import Array, IntPair, Shape, Shaped

    Pair = tuple[int, int]
    # (batch_shape, unbatched, stride, dilation, (top, left), padded_shape, (out_h, out_w))
    Plan = tuple[tuple[int, int, int, int], bool, Pair, Pair, Pair, tuple[int, ...], Pair]

__all__ = ["im2col", "col2im", "conv2d_output_shape", "conv2d", "conv2d_backward"]


# --------------------------------------------------------------------------- conv2d
def _conv_padding(padding: IntPair | str, kernel: Pair, dilation: Pair, stride: Pair) -> tuple[Pair, Pair]:
    """Resolve conv2d's ``padding`` into ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' is not supported for strided convolutions (stride={stride})")
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return (total[0] // 2, total[0] - total[0] // 2), (total[1] // 2, total[1] - total[1] // 2)
        raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    ph, pw = _positive_pair(padding, "padding", low=0)
    return (ph, ph), (pw, pw)


def _conv2d_plan(
    func: str,
    input: Shaped,
    weight: Shaped,
    bias: Shaped | None,
    stride: IntPair,
    padding: IntPair | str,
    dilation: IntPair,
    groups: object,
) -> Plan:
    """conv2d's argument checks and geometry, from shapes and dtypes alone (arrays or TensorSpecs).

    Returns ``(batch_shape, unbatched, stride, dilation, (top, left), padded_shape, (out_h, out_w))``,
    ``padded_shape`` being the (N, C, Hp, Wp) of the padded input. The size limits are checked by
    the callers that allocate (:func:`_check_conv_sizes`): a shape-only pass allocates nothing.
    """
    (N, C, H, W), unbatched = _batch_shape("input", input)
    _check_float("weight", weight)
    _check_same_dtype("weight", weight, input)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (O, C/groups, kh, kw), got shape {_shape(weight)}")
    n_groups = _check_groups(groups)
    O, Cg, kh, kw = _shape(weight)
    if C % n_groups or O % n_groups:
        raise ValueError(
            f"groups={n_groups} must divide both the input channels ({C}, input shape {_shape(input)}) "
            f"and the output channels ({O}, weight shape {_shape(weight)})"
        )
    if Cg * n_groups != C:
        raise ValueError(
            f"input has {C} channels (shape {_shape(input)}) but weight of shape {_shape(weight)} "
            f"with groups={n_groups} expects {Cg * n_groups}"
        )
    if bias is not None:
        _check_float("bias", bias)
        _check_same_dtype("bias", bias, input)
        if _shape(bias) != (O,):
            raise ValueError(f"bias must have shape ({O},) to match weight {_shape(weight)}, got {_shape(bias)}")
    strides = _positive_pair(stride, "stride")
    dilations = _positive_pair(dilation, "dilation")
    (pt, pb), (pl, pr) = _conv_padding(padding, (kh, kw), dilations, strides)
    # 'same' padding may put one more row/column at the bottom/right: count it in the size.
    out_h = _out_size(func, input, "height", H + pb - pt, kh, strides[0], pt, dilations[0])
    out_w = _out_size(func, input, "width", W + pr - pl, kw, strides[1], pl, dilations[1])
    padded = _padded_shape((N, C, H, W), (pt, pl), (out_h, out_w), (kh, kw), strides, dilations)
    return (N, C, H, W), unbatched, strides, dilations, (pt, pl), padded, (out_h, out_w)


def _check_conv_sizes(func: str, input: Shaped, weight: Shaped, plan: Plan, padding: IntPair | str) -> None:
    """Refuse, before allocating, an output or padded input of more than MAX_ELEMENTS elements."""
    (N, _, _, _), _, stride, dilation, _, padded, (out_h, out_w) = plan
    because = f"input {_shape(input)} with padding={padding!r}, stride={stride}, dilation={dilation}"
    _check_elements(func, "an output", (N, _shape(weight)[0], out_h, out_w), because)
    _check_elements(func, "a padded input", padded, because)


def conv2d_output_shape(
    input: Shaped,
    weight: Shaped,
    bias: Shaped | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Shape:
    """Return the shape :func:`conv2d` returns for these arguments, with the same checks and errors, computing nothing.

    ``input``, ``weight`` and ``bias`` need only ``shape``, ``ndim`` and ``dtype`` (arrays or
    :class:`npresnet.nn.TensorSpec`). Returns (N, O, out_h, out_w), or (O, out_h, out_w) for a 3-D input.
    It allocates nothing, so the size limit :data:`~npresnet.functional.MAX_ELEMENTS` is not applied.
    """
    plan = _conv2d_plan("conv2d", input, weight, bias, stride, padding, dilation, groups)
    unbatched, (out_h, out_w) = plan[1], plan[-1]
    O = _shape(weight)[0]
    return (O, out_h, out_w) if unbatched else (_shape(input)[0], O, out_h, out_w)


def _conv_chunks(
    func: str,
    N: int,
    out_h: int,
    row_bytes: int,
    workspace_bytes: int | None,
    xp: types.ModuleType,
    column_shape: Callable[[int, int], tuple[int, ...]],
) -> list[tuple[int, int, int, int]]:
    """Return the workspace chunks of a convolution, refused up front when too many or too large.

    ``column_shape(n, rows)`` is the shape of the columns of ``n`` images' ``rows`` output rows.
    """
    budget = resolve_workspace_bytes(workspace_bytes, xp)
    _check_chunks(func, N, out_h, row_bytes, budget)
    chunks = workspace_chunks(N, out_h, row_bytes, budget)
    if chunks:  # the first chunk is the largest
        n0, n1, r0, r1 = chunks[0]
        _check_elements(func, "one chunk's columns", column_shape(n1 - n0, r1 - r0), f"workspace_bytes={budget}")
    return chunks


def _band_rows(r0: int, r1: int, kernel: Pair, stride: Pair, dilation: Pair) -> tuple[int, int]:
    """Return the padded input rows ``(a, b)`` that output rows ``r0:r1`` read."""
    a = r0 * stride[0]
    return a, a + _extent(r1 - r0, kernel[0], stride[0], dilation[0])


def _columns(xband: Array, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> Array:
    """im2col of a padded band into a buffer laid out for the matrix product.

    Returns
    -------
    array, shape (C, kh, kw, n, out_h, out_w)
        So that ``reshape(C*kh*kw, n*out_h*out_w)`` is free; filled through its
        (n, C, kh, kw, out_h, out_w) transposed view.
    """
    xp = get_array_module(xband)
    n, C = xband.shape[:2]
    cols: Array = xp.empty((C, *kernel, n, *out_hw), dtype=xband.dtype)
    _im2col(xband, kernel, stride, dilation, out_hw, out=cols.transpose(3, 0, 1, 2, 4, 5))
    return cols


def conv2d(
    input: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    workspace_bytes: int | None = None,
) -> Array:
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``, computed as im2col + matrix products.

    Parameters
    ----------
    input : array, shape (N, C, H, W) or (C, H, W)
    weight : array, shape (O, C // groups, kh, kw)
    bias : array, shape (O,), optional
    stride, dilation : int or (int, int)
    padding : int, (int, int), 'valid' or 'same'
        'same' pads ``dilation*(k-1)`` in total per axis, the extra one on the bottom/right, as PyTorch.
    groups : int
        Channels are split into ``groups`` independent convolutions, computed as one batched product.
    workspace_bytes : int, optional, keyword-only
        Bound on one chunk's im2col columns plus its output, in bytes (:mod:`npresnet.workspace`);
        larger convolutions are computed in chunks (images, then bands of output rows) with identical
        results. None: the backend's default, :func:`npresnet.workspace.default_workspace_bytes`.

    Returns
    -------
    array, shape (N, O, out_h, out_w)
        Same dtype as ``input``; may be a non-contiguous view.

    Raises
    ------
    ValueError
        Also, before allocating, when the output, the padded input or one chunk's columns would
        have more than :data:`~npresnet.functional.MAX_ELEMENTS` elements, or ``workspace_bytes``
        would split the call into more than :data:`~npresnet.functional.MAX_CHUNKS` chunks.
    """
    plan = _conv2d_plan("conv2d", input, weight, bias, stride, padding, dilation, groups)
    _check_conv_sizes("conv2d", input, weight, plan, padding)
    (N, C, H, W), unbatched, stride, dilation, before, padded, (out_h, out_w) = plan
    x = input[None] if unbatched else input
    xp = get_array_module(x)
    O, Cg, kh, kw = weight.shape
    kernel, K = (kh, kw), Cg * kh * kw
    chunks = _conv_chunks(
        "conv2d",
        N,
        out_h,
        (C * kh * kw + O) * out_w * x.dtype.itemsize,
        workspace_bytes,
        xp,
        lambda n, rows: (C * kh * kw, n * rows * out_w),
    )
    w = weight.reshape(groups, O // groups, K)  # (groups, O/groups, K)
    out: Array | None = None if len(chunks) == 1 else xp.empty((O, N, out_h, out_w), dtype=x.dtype)
    for n0, n1, r0, r1 in chunks:
        n, rows = n1 - n0, r1 - r0
        band = _pad(x[n0:n1], padded[-2:], before, rows=_band_rows(r0, r1, kernel, stride, dilation))
        cols = _columns(band, kernel, stride, dilation, (rows, out_w))  # (C, kh, kw, n, rows, out_w)
        cols = cols.reshape(groups, K, n * rows * out_w)  # free: C splits as (groups, C/groups)
        product = (w @ cols).reshape(O, n, rows, out_w)  # one GEMM per group, batched
        del cols, band  # freed before the next chunk's are built
        if out is None:  # one chunk: the product is the output
            out = product
        else:
            out[:, n0:n1, r0:r1] = product
    assert out is not None  # set in the loop when there is one chunk, allocated above otherwise
    out = out.transpose(1, 0, 2, 3)  # (N, O, out_h, out_w) view
    if bias is not None:
        out = out + bias.reshape(O, 1, 1)
    return out[0] if unbatched else out


def conv2d_backward(
    grad_output: Array,
    input: Array,
    weight: Array,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    workspace_bytes: int | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    With ``cols = im2col(x)`` the forward is ``out = W @ cols`` per group, so

    * ``grad_weight = grad_out @ cols.T`` (every output pixel's gradient times the window it saw),
    * ``grad_bias = grad_out`` summed over the batch and the pixels,
    * ``grad_input = col2im(W.T @ grad_out)``: each window's gradient goes back to the pixels it
      read, and where windows overlap the contributions add up (col2im is the adjoint of im2col).

    Computed in the forward's chunks: each chunk's columns, their gradient and the chunk's
    ``grad_out`` stay within ``workspace_bytes``; ``grad_weight`` sums the chunks' products.

    Parameters
    ----------
    grad_output : array, shape (N, O, out_h, out_w) or (O, out_h, out_w)
    input : array, shape (N, C, H, W) or (C, H, W)
        The input of the forward call.
    weight : array, shape (O, C // groups, kh, kw)
    stride, padding, dilation, groups
        As given to :func:`conv2d` (``padding`` may be ``'same'``/``'valid'``).
    workspace_bytes : int, optional, keyword-only
        As for :func:`conv2d`.

    Returns
    -------
    (grad_input, grad_weight, grad_bias) : arrays of shapes input.shape, weight.shape, (O,)

    Raises
    ------
    ValueError, TypeError
        The forward's, for the same arguments, and when ``grad_output`` is not the forward output's shape.
    """
    plan = _conv2d_plan("conv2d_backward", input, weight, None, stride, padding, dilation, groups)
    _check_conv_sizes("conv2d_backward", input, weight, plan, padding)
    (N, C, H, W), unbatched, stride, dilation, (pt, pl), padded, (out_h, out_w) = plan
    _check_float("grad_output", grad_output)
    _check_same_dtype("grad_output", grad_output, input)
    O, Cg, kh, kw = _shape(weight)
    want = (O, out_h, out_w) if unbatched else (N, O, out_h, out_w)
    if _shape(grad_output) != want:
        raise ValueError(
            f"conv2d_backward: grad_output must have the forward output's shape {want}, "
            f"got {_shape(grad_output)} (input {_shape(input)}, weight {_shape(weight)})"
        )
    x, g = (input[None], grad_output[None]) if unbatched else (input, grad_output)
    xp = get_array_module(x, weight, g)
    kernel, K, Og = (kh, kw), Cg * kh * kw, O // groups
    chunks = _conv_chunks(
        "conv2d_backward",
        N,
        out_h,
        (2 * C * kh * kw + O) * out_w * x.dtype.itemsize,  # columns, their gradient, grad_out
        workspace_bytes,
        xp,
        lambda n, rows: (C * kh * kw, n * rows * out_w),
    )
    w = weight.reshape(groups, Og, K)
    gpad = xp.zeros(padded, dtype=x.dtype)  # gradient of the padded input
    grad_weight = xp.zeros((groups, Og, K), dtype=x.dtype)
    for n0, n1, r0, r1 in chunks:
        n, rows = n1 - n0, r1 - r0
        L = n * rows * out_w
        a, b = _band_rows(r0, r1, kernel, stride, dilation)
        band = _pad(x[n0:n1], padded[-2:], (pt, pl), rows=(a, b))  # (n, C, b - a, Wp)
        cols = _columns(band, kernel, stride, dilation, (rows, out_w)).reshape(groups, K, L)
        g_ol = g[n0:n1, :, r0:r1].transpose(1, 0, 2, 3).reshape(groups, Og, L)  # (groups, O/groups, L)
        # grad_weight += g_ol @ cols.T per group, computed as (cols @ g_ol.T).T: the same product, but
        # OpenBLAS is ~10x slower with the long L axis as the inner axis of a 64-row left operand
        grad_weight += (cols @ g_ol.transpose(0, 2, 1)).transpose(0, 2, 1)  # (groups, O/groups, K)
        del cols
        grad_cols = (w.transpose(0, 2, 1) @ g_ol).reshape(C, kh, kw, n, rows, out_w)  # C = groups*Cg
        _col2im(grad_cols.transpose(3, 0, 1, 2, 4, 5), stride, dilation, gpad[n0:n1, :, a:b])  # adds land in gpad
        del band, g_ol, grad_cols  # freed before the next chunk's are built
    grad_bias = g.sum(axis=(0, 2, 3))
    grad_input = xp.ascontiguousarray(gpad[:, :, pt : pt + H, pl : pl + W])  # what reached the padding is dropped
    return (grad_input[0] if unbatched else grad_input), grad_weight.reshape(weight.shape), grad_bias
