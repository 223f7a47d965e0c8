"""Stateless layer functions with the signatures and NCHW semantics of ``torch.nn.functional``.

Every function takes NumPy or CuPy arrays and computes with the array module of
its inputs (:func:`npresnet.backend.get_array_module`); none imports NumPy for
array math. Inputs are ``(N, C, H, W)`` batches or, as in PyTorch, unbatched
``(C, H, W)`` images. Output sizes come from :func:`npresnet.shapes.conv_output_size`.

Convolution is im2col followed by one matrix product per group: for each kernel
offset ``(i, j)`` one strided slice of the input is copied into the column buffer
(Chainer's kernel-offset slicing), so there are ``kh*kw`` vectorised copies and no
loops over output pixels. Padding is not materialised: each offset copies only the
outputs whose input lies inside the image, and the border strips left over are
filled with the padding value (:func:`npresnet.shapes.kernel_taps`, the window
geometry shared with the fused path). Pooling walks the same kernel-offset slices
and reduces them in place, never materialising columns.

Each layer's argument checks and output size live in one function that works on
shapes alone (:func:`conv2d_output_shape`, :func:`max_pool2d_output_shape`, ...):
the layer calls it before computing, and the shape-only pass
(:class:`npresnet.nn.TensorSpec`) calls it instead of computing, so both accept
and refuse the same arguments with the same errors.

Naming: ``kh, kw`` kernel, ``sy, sx`` stride, ``ph, pw`` padding,
``dy, dx`` dilation, ``out_h, out_w`` output size.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

from .backend import get_array_module
from .shapes import conv_output_size, kernel_taps, pair
from .workspace import resolve_workspace_bytes, workspace_chunks

if TYPE_CHECKING:
    from ._typing import Array, IntPair, Shape

__all__ = [
    "im2col",
    "col2im",
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_backward",
    # shape-only checks: the output shape each layer would return, with the same errors
    "conv2d_output_shape",
    "max_pool2d_output_shape",
    "avg_pool2d_output_shape",
    "adaptive_avg_pool2d_output_shape",
    "linear_output_shape",
    "batch_norm_output_shape",
    "relu_output_shape",
]


# --------------------------------------------------------------------------- checks
def _shape(array) -> tuple:
    return tuple(getattr(array, "shape", ()))


def _check_float(name: str, array) -> None:
    """Raise TypeError unless ``array`` is a real floating-point array."""
    dtype = getattr(array, "dtype", None)
    if dtype is None or not hasattr(array, "ndim"):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(array).__name__}")
    if dtype.kind != "f":
        hint = " (convert images to float, e.g. x.astype('float32') / 255)" if dtype.kind in "ub" else ""
        raise TypeError(f"{name} must have a real floating dtype, got {dtype} with shape {_shape(array)}{hint}")


def _check_same_dtype(name: str, array, input) -> None:
    if array is not None and array.dtype != input.dtype:
        raise TypeError(
            f"{name} dtype {array.dtype} does not match input dtype {input.dtype} "
            f"({name} shape {_shape(array)}, input shape {_shape(input)})"
        )


def _batch_shape(name: str, input) -> tuple[tuple, bool]:
    """Return ``((N, C, H, W), unbatched)`` for an array or spec; accept (C, H, W) as torch does."""
    _check_float(name, input)
    if input.ndim == 3:
        return (1, *_shape(input)), True
    if input.ndim != 4:
        raise ValueError(
            f"{name} must be 4-D (N, C, H, W) or 3-D (C, H, W), got {input.ndim}-D with shape {_shape(input)}"
        )
    return _shape(input), False


def _as_batch(name: str, input):
    """Return ``(x, unbatched)`` with ``x`` of shape (N, C, H, W); accept (C, H, W) as torch does."""
    _, unbatched = _batch_shape(name, input)
    return (input[None] if unbatched else input), unbatched


def _positive_pair(value, name: str, low: int = 1) -> tuple[int, int]:
    a, b = pair(value, name)
    if a < low or b < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return a, b


def _out_size(func: str, input, axis: str, size, kernel, stride, padding, dilation, ceil_mode=False) -> int:
    """conv_output_size for one axis, re-raised with the caller's name and shapes."""
    try:
        return conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    except ValueError as exc:
        raise ValueError(f"{func}: input of shape {_shape(input)} is too small along {axis}: {exc}") from None


# --------------------------------------------------------------------------- windows
def _conv_geometry(func: str, input, kernel_size, stride, padding, dilation):
    """Validate window arguments and return (kernel, stride, (ph, pw) per side, dilation, (out_h, out_w))."""
    kernel = _positive_pair(kernel_size, "kernel_size")
    stride = _positive_pair(stride, "stride")
    dilation = _positive_pair(dilation, "dilation")
    padding = _positive_pair(padding, "padding", low=0)
    H, W = _shape(input)[-2:]
    out_h = _out_size(func, input, "height", H, kernel[0], stride[0], padding[0], dilation[0])
    out_w = _out_size(func, input, "width", W, kernel[1], stride[1], padding[1], dilation[1])
    return kernel, stride, padding, dilation, (out_h, out_w)


def _columns(x, kernel, stride, padding, dilation, rows, out_w):
    """im2col of output rows ``rows = (y0, y1)`` into the GEMM-friendly layout ``(C, kh, kw, N, y1-y0, out_w)``.

    With this layout ``cols.reshape(C*kh*kw, N*(y1-y0)*out_w)`` is free, so a whole
    convolution is one matrix product per group. ``padding = (top, left)``; outputs whose
    window reaches past the bottom/right of ``x`` read zeros there too.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (kh, kw), (y0, y1) = kernel, rows
    cols = xp.empty((C, kh, kw, N, y1 - y0, out_w), dtype=x.dtype)
    x_cn = x.transpose(1, 0, 2, 3)  # (C, N, H, W) view: channels first, to match the weight's K axis
    for i, j, t in kernel_taps((H, W), rows, (0, out_w), kernel, stride, padding, dilation):
        dst = cols[:, i, j]  # (C, N, y1-y0, out_w)
        if t.dst is not None:
            dst[..., t.dst[0], t.dst[1]] = x_cn[..., t.src[0], t.src[1]]
        for r, c in t.strips:  # the padding this offset reads
            dst[..., r, c] = 0
    return cols


# --------------------------------------------------------------------------- im2col / conv
def _conv_gemm(x, w, kernel, stride, padding, dilation, rows, out_w):
    """Output rows ``rows = (y0, y1)`` of a convolution, by im2col + one GEMM per group.

    Parameters
    ----------
    x : array, shape (N, C, H, W), unpadded
    w : array, shape (groups, O/groups, C/groups*kh*kw)
    padding : (top, left)

    Returns
    -------
    array, shape (O, N, y1 - y0, out_w)
    """
    groups, Og, K = w.shape
    N, n_rows = x.shape[0], rows[1] - rows[0]
    cols = _columns(x, kernel, stride, padding, dilation, rows, out_w)  # (C, kh, kw, N, rows, out_w)
    cols = cols.reshape(groups, K, N * n_rows * out_w)  # free: C splits as (groups, C/groups)
    out = w @ cols  # (groups, O/groups, N*rows*out_w): one GEMM per group, batched
    return out.reshape(groups * Og, N, n_rows, out_w)


def im2col(
    input: Array, kernel_size: IntPair, dilation: IntPair = 1, padding: IntPair = 0, stride: IntPair = 1
) -> Array:
    """Extract sliding local blocks, as ``torch.nn.functional.unfold``.

    Parameters
    ----------
    input : array, shape (N, C, H, W) or (C, H, W)
    kernel_size, dilation, padding, stride : int or (int, int)

    Returns
    -------
    array, shape (N, C*kh*kw, L) or (C*kh*kw, L)
        ``L = out_h * out_w``; row ``c*kh*kw + i*kw + j`` holds kernel offset ``(i, j)`` of channel ``c``.
    """
    x, unbatched = _as_batch("input", input)
    kernel, stride, padding, dilation, out_hw = _conv_geometry("im2col", x, kernel_size, stride, padding, dilation)
    N, C = x.shape[:2]
    cols = _columns(x, kernel, stride, padding, dilation, (0, out_hw[0]), out_hw[1])  # (C, kh, kw, N, out_h, out_w)
    out = cols.transpose(3, 0, 1, 2, 4, 5).reshape(N, C * kernel[0] * kernel[1], out_hw[0] * out_hw[1])
    return out[0] if unbatched else out


def _add_windows(xp, hw, lead, kernel, stride, padding, dilation, out_hw, dtype, window_grad):
    """The adjoint of reading windows (:func:`_columns`, the pools): add each kernel offset's window
    gradient back into the input positions it read.

    Parameters
    ----------
    hw : (int, int)
        ``(H, W)`` of the input the windows were taken from.
    lead : tuple
        Leading axes of that input (``(N, C)`` for pooling, ``(C, N)`` for im2col columns).
    padding : (int, int)
        Top and left padding; outputs that read past the bottom/right read padding too.
    window_grad : callable ``(i, j) -> array`` of shape ``lead + (out_h, out_w)`` (or broadcastable to it)
        The gradient arriving at kernel offset ``(i, j)``'s window.

    Returns
    -------
    array, shape ``lead + (H, W)``
        Overlapping windows add up; a window position that read the padding has no input to go to.
    """
    out_h, out_w = out_hw
    img = xp.zeros(lead + tuple(hw), dtype=dtype)
    for i, j, t in kernel_taps(tuple(hw), (0, out_h), (0, out_w), kernel, stride, padding, dilation):
        if t.dst is not None:  # one offset's reads never repeat a pixel, so += on the strided view is exact
            grad = xp.broadcast_to(window_grad(i, j), lead + (out_h, out_w))
            img[..., t.src[0], t.src[1]] += grad[..., t.dst[0], t.dst[1]]
    return img


def _col2im_columns(cols, hw, kernel, stride, padding, dilation, out_hw):
    """The adjoint of :func:`_columns`: ``(C, kh, kw, N, out_h, out_w)`` columns to an ``(N, C, H, W)`` image."""
    xp = get_array_module(cols)
    C, N = cols.shape[0], cols.shape[3]
    img = _add_windows(
        xp, hw, (C, N), kernel, stride, padding, dilation, out_hw, cols.dtype, lambda i, j: cols[:, i, j]
    )  # (C, N, H, W)
    return img.transpose(1, 0, 2, 3)


def col2im(
    input: Array,
    output_size: IntPair,
    kernel_size: IntPair,
    dilation: IntPair = 1,
    padding: IntPair = 0,
    stride: IntPair = 1,
) -> Array:
    """Sum sliding local blocks back into an image, as ``torch.nn.functional.fold``.

    The adjoint of :func:`im2col`: ``<im2col(x), y> == <x, col2im(y)>`` for every ``x`` and ``y``,
    so it is the input gradient of im2col. Where windows overlap their entries add up.

    Parameters
    ----------
    input : array, shape (N, C*kh*kw, L) or (C*kh*kw, L)
        Row ``c*kh*kw + i*kw + j`` holds kernel offset ``(i, j)`` of channel ``c``; ``L = out_h * out_w``.
    output_size : int or (int, int)
        ``(H, W)`` of the image.
    kernel_size, dilation, padding, stride : int or (int, int)

    Returns
    -------
    array, shape (N, C, H, W) or (C, H, W)
    """
    _check_float("input", input)
    if input.ndim not in (2, 3):
        raise ValueError(f"col2im: input must be 3-D (N, C*kh*kw, L) or 2-D (C*kh*kw, L), got shape {_shape(input)}")
    unbatched = input.ndim == 2
    cols = input[None] if unbatched else input
    H, W = _positive_pair(output_size, "output_size")
    N, CK, L = cols.shape
    kernel, stride = _positive_pair(kernel_size, "kernel_size"), _positive_pair(stride, "stride")
    dilation, padding = _positive_pair(dilation, "dilation"), _positive_pair(padding, "padding", low=0)
    try:
        out_hw = tuple(
            conv_output_size(n, k, s, p, d) for n, k, s, p, d in zip((H, W), kernel, stride, padding, dilation)
        )
    except ValueError as exc:
        raise ValueError(f"col2im: output_size={(H, W)} is too small for kernel_size={kernel}: {exc}") from None
    kh, kw = kernel
    if CK % (kh * kw) or out_hw[0] * out_hw[1] != L:
        raise ValueError(
            f"col2im: input of shape {_shape(input)} does not fit output_size={(H, W)}, kernel_size={kernel}, "
            f"stride={stride}, padding={padding}, dilation={dilation}: "
            f"expected (N, C*{kh * kw}, {out_hw[0] * out_hw[1]})"
        )
    C = CK // (kh * kw)
    cols = cols.reshape(N, C, kh, kw, *out_hw).transpose(1, 2, 3, 0, 4, 5)  # (C, kh, kw, N, out_h, out_w)
    out = _col2im_columns(cols, (H, W), kernel, stride, padding, dilation, out_hw)
    return out[0] if unbatched else out


def _conv_padding(padding, kernel, dilation, stride):
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


def _conv2d_plan(input, weight, bias, stride, padding, dilation, groups):
    """conv2d's argument checks and geometry, from shapes and dtypes alone (arrays or TensorSpecs).

    Returns ``(batch_shape, unbatched, stride, dilation, (top, left), (out_h, out_w))``.
    """
    (N, C, H, W), unbatched = _batch_shape("input", input)
    _check_float("weight", weight)
    _check_same_dtype("weight", weight, input)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (O, C/groups, kh, kw), got shape {_shape(weight)}")
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    O, Cg, kh, kw = _shape(weight)
    if C % groups or O % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels ({C}, input shape {_shape(input)}) "
            f"and the output channels ({O}, weight shape {_shape(weight)})"
        )
    if Cg * groups != C:
        raise ValueError(
            f"input has {C} channels (shape {_shape(input)}) but weight of shape {_shape(weight)} "
            f"with groups={groups} expects {Cg * groups}"
        )
    if bias is not None:
        _check_float("bias", bias)
        _check_same_dtype("bias", bias, input)
        if _shape(bias) != (O,):
            raise ValueError(f"bias must have shape ({O},) to match weight {_shape(weight)}, got {_shape(bias)}")
    stride = _positive_pair(stride, "stride")
    dilation = _positive_pair(dilation, "dilation")
    (pt, pb), (pl, pr) = _conv_padding(padding, (kh, kw), dilation, stride)
    # 'same' padding may put one more row/column at the bottom/right: count it in the size.
    out_h = _out_size("conv2d", input, "height", H + pb - pt, kh, stride[0], pt, dilation[0])
    out_w = _out_size("conv2d", input, "width", W + pr - pl, kw, stride[1], pl, dilation[1])
    return (N, C, H, W), unbatched, stride, dilation, (pt, pl), (out_h, out_w)


def conv2d_output_shape(
    input: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Shape:
    """The shape :func:`conv2d` returns for these arguments, with the same checks and errors, computing nothing.

    ``input``, ``weight`` and ``bias`` need only ``shape``, ``ndim`` and ``dtype`` (arrays or
    :class:`npresnet.nn.TensorSpec`). Returns (N, O, out_h, out_w), or (O, out_h, out_w) for a 3-D input.
    """
    _, unbatched, _, _, _, (out_h, out_w) = _conv2d_plan(input, weight, bias, stride, padding, dilation, groups)
    O = _shape(weight)[0]
    return (O, out_h, out_w) if unbatched else (_shape(input)[0], O, out_h, out_w)


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
    """
    plan = _conv2d_plan(input, weight, bias, stride, padding, dilation, groups)
    (N, C, H, W), unbatched, stride, dilation, pads, (out_h, out_w) = plan
    x = input[None] if unbatched else input
    xp = get_array_module(x)
    budget = resolve_workspace_bytes(workspace_bytes, xp)
    O, Cg, kh, kw = weight.shape
    kernel = (kh, kw)
    w = weight.reshape(groups, O // groups, Cg * kh * kw)  # (groups, O/groups, K)
    chunks = workspace_chunks(N, out_h, (C * kh * kw + O) * out_w * x.dtype.itemsize, budget)
    if len(chunks) == 1:
        out = _conv_gemm(x, w, kernel, stride, pads, dilation, (0, out_h), out_w)  # (O, N, out_h, out_w)
    else:
        out = xp.empty((O, N, out_h, out_w), dtype=x.dtype)
        for n0, n1, r0, r1 in chunks:
            out[:, n0:n1, r0:r1] = _conv_gemm(x[n0:n1], w, kernel, stride, pads, dilation, (r0, r1), out_w)
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
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    With ``cols = im2col(x)`` the forward is ``out = W @ cols`` per group, so

    * ``grad_weight = grad_out @ cols.T`` (every output pixel's gradient times the window it saw),
    * ``grad_bias = grad_out`` summed over the batch and the pixels,
    * ``grad_input = col2im(W.T @ grad_out)``: each window's gradient goes back to the pixels it
      read, and where windows overlap the contributions add up (col2im is the adjoint of im2col).

    Parameters
    ----------
    grad_output : array, shape (N, O, out_h, out_w) or (O, out_h, out_w)
    input : array, shape (N, C, H, W) or (C, H, W)
        The input of the forward call.
    weight : array, shape (O, C // groups, kh, kw)
    stride, padding, dilation, groups
        As given to :func:`conv2d` (``padding`` may be ``'same'``/``'valid'``).

    Returns
    -------
    (grad_input, grad_weight, grad_bias) : arrays of shapes input.shape, weight.shape, (O,)
    """
    x, unbatched = _as_batch("input", input)
    g = grad_output[None] if unbatched else grad_output
    _check_float("grad_output", grad_output)
    _check_same_dtype("grad_output", grad_output, input)
    _check_same_dtype("weight", weight, input)
    xp = get_array_module(x, weight, g)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    kernel = (kh, kw)
    stride = _positive_pair(stride, "stride")
    dilation = _positive_pair(dilation, "dilation")
    (pt, pb), (pl, pr) = _conv_padding(padding, kernel, dilation, stride)
    out_h = _out_size("conv2d_backward", input, "height", H + pb - pt, kh, stride[0], pt, dilation[0])
    out_w = _out_size("conv2d_backward", input, "width", W + pr - pl, kw, stride[1], pl, dilation[1])
    if g.shape != (N, O, out_h, out_w):
        raise ValueError(
            f"conv2d_backward: grad_output must have the forward output's shape {(N, O, out_h, out_w)}, "
            f"got {_shape(grad_output)} (input {_shape(input)}, weight {_shape(weight)})"
        )
    K, L = Cg * kh * kw, N * out_h * out_w
    cols = _columns(x, kernel, stride, (pt, pl), dilation, (0, out_h), out_w).reshape(groups, K, L)
    g_ol = g.transpose(1, 0, 2, 3).reshape(groups, O // groups, L)  # (groups, O/groups, N*out_h*out_w)
    # grad_weight = g_ol @ cols.T per group, computed as (cols @ g_ol.T).T: the same product, but OpenBLAS
    # is ~10x slower with the long N*out_h*out_w axis as the inner axis of a 64-row left operand
    grad_weight = (cols @ g_ol.transpose(0, 2, 1)).transpose(0, 2, 1)  # (groups, O/groups, K)
    grad_weight = grad_weight.reshape(weight.shape)  # (O, Cg, kh, kw)
    del cols
    grad_bias = g_ol.sum(axis=2).reshape(O)
    w = weight.reshape(groups, O // groups, K)
    grad_cols = (w.transpose(0, 2, 1) @ g_ol).reshape(C, kh, kw, N, out_h, out_w)  # (groups, K, L), C = groups*Cg
    grad_input = _col2im_columns(grad_cols, (H, W), kernel, stride, (pt, pl), dilation, (out_h, out_w))
    grad_input = xp.ascontiguousarray(grad_input)  # (N, C, H, W); what read the padding is dropped
    return (grad_input[0] if unbatched else grad_input), grad_weight, grad_bias


# --------------------------------------------------------------------------- pooling
def _pool_geometry(func, input, kernel_size, stride, padding, dilation, ceil_mode):
    """Pooling's argument checks and geometry from shapes alone: (kernel, stride, padding, dilation, out_hw)."""
    kernel = _positive_pair(kernel_size, "kernel_size")
    stride = (
        kernel
        if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
        else _positive_pair(stride, "stride")
    )
    dilation = _positive_pair(dilation, "dilation")
    padding = _positive_pair(padding, "padding", low=0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{func}: padding={padding} must be at most half of kernel_size={kernel} (padding <= kernel_size // 2)"
        )
    H, W = _shape(input)[-2:]
    out_h = _out_size(func, input, "height", H, kernel[0], stride[0], padding[0], dilation[0], bool(ceil_mode))
    out_w = _out_size(func, input, "width", W, kernel[1], stride[1], padding[1], dilation[1], bool(ceil_mode))
    return kernel, stride, padding, dilation, (out_h, out_w)


def _pool_output_shape(func, input, kernel_size, stride, padding, dilation, ceil_mode) -> tuple:
    _batch_shape("input", input)
    *_, (out_h, out_w) = _pool_geometry(func, input, kernel_size, stride, padding, dilation, ceil_mode)
    return (*_shape(input)[:-2], out_h, out_w)


def max_pool2d_output_shape(
    input: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> Shape:
    """The shape :func:`max_pool2d` returns, with the same checks and errors, computing nothing."""
    return _pool_output_shape("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool2d_output_shape(
    input: Array, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0, ceil_mode: bool = False
) -> Shape:
    """The shape :func:`avg_pool2d` returns, with the same checks and errors, computing nothing."""
    return _pool_output_shape("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)


def _pool_windows(x, out, geometry, reduce):
    """Reduce every kernel offset's window slice of ``x`` (N, C, H, W) into ``out`` (N, C, out_h, out_w).

    ``out`` starts filled with the padding's value (−∞ for max, 0 for a sum); ``reduce(dst, src)``
    combines in place. Outputs a kernel offset sees only through the padding are left alone.
    """
    kernel, stride, padding, dilation, (out_h, out_w) = geometry
    for _, _, t in kernel_taps(x.shape[-2:], (0, out_h), (0, out_w), kernel, stride, padding, dilation):
        if t.dst is not None:
            dst = out[..., t.dst[0], t.dst[1]]
            reduce(dst, x[..., t.src[0], t.src[1]])
    return out


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
    """
    x, unbatched = _as_batch("input", input)
    xp = get_array_module(x)
    geometry = _pool_geometry("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    if return_indices:
        out, indices = _max_pool2d_with_indices(x, *geometry)
        return (out[0], indices[0]) if unbatched else (out, indices)
    out = xp.full(x.shape[:2] + geometry[-1], -math.inf, dtype=x.dtype)  # (N, C, out_h, out_w)
    _pool_windows(x, out, geometry, lambda dst, src: xp.maximum(dst, src, out=dst))  # NaN-propagating
    return out[0] if unbatched else out


def _first_valid(xp, out, stride, pad, dilation):
    """First in-input position of each window along one axis, shape (out,): the window's start
    ``o*stride - pad``, moved past the padding in steps of ``dilation`` (torch's starting index)."""
    start = xp.arange(out) * stride - pad
    skip = (xp.maximum(-start, 0) + dilation - 1) // dilation  # dilated steps spent in the padding
    return start + skip * dilation


def _max_pool2d_with_indices(x, kernel, stride, padding, dilation, out_hw):
    """Max pooling of (N, C, H, W) ``x`` and torch's indices: ``row * W + col`` of each window's max.

    The kernel offsets are scanned in torch's order (rows, then columns) and a value wins when it is
    greater than the best so far or NaN, so ties keep the first maximum and a NaN the last NaN, as torch.
    """
    xp = get_array_module(x)
    (sy, sx), (ph, pw), (dy, dx), (out_h, out_w) = stride, padding, dilation, out_hw
    W = x.shape[-1]
    rows = xp.arange(out_h) * sy - ph  # input row of kernel row 0, shape (out_h,)
    cols = xp.arange(out_w) * sx - pw
    first = _first_valid(xp, out_h, sy, ph, dy)[:, None] * W + _first_valid(xp, out_w, sx, pw, dx)[None, :]
    out = xp.full(x.shape[:2] + (out_h, out_w), -math.inf, dtype=x.dtype)
    indices = xp.empty(out.shape, dtype=xp.int64)
    indices[...] = first  # an all −∞ window reports its first input element, as torch
    for i, j, t in kernel_taps(x.shape[-2:], (0, out_h), (0, out_w), kernel, stride, padding, dilation):
        if t.dst is None:
            continue  # this offset reads only padding (−∞), which never wins
        view = x[..., t.src[0], t.src[1]]
        best, best_at = out[..., t.dst[0], t.dst[1]], indices[..., t.dst[0], t.dst[1]]  # views into the results
        better = (view > best) | xp.isnan(view)
        xp.copyto(best, view, where=better)
        xp.copyto(best_at, (rows[t.dst[0]] + i * dy)[:, None] * W + (cols[t.dst[1]] + j * dx)[None, :], where=better)
    return out, indices


def max_pool2d_backward(grad_output: Array, indices: Array, input_shape: Shape) -> Array:
    """Gradient of :func:`max_pool2d`: each output's gradient goes to the input element that won its max.

    An input element that is the max of several overlapping windows collects all their gradients.

    Parameters
    ----------
    grad_output : array, shape (N, C, out_h, out_w) or (C, out_h, out_w)
    indices : integer array, same shape
        From ``max_pool2d(..., return_indices=True)``: ``row * W + col`` within each (n, c) plane.
    input_shape : tuple
        ``(N, C, H, W)`` or ``(C, H, W)`` of the forward input.

    Returns
    -------
    array, shape ``input_shape``
    """
    _check_float("grad_output", grad_output)
    xp = get_array_module(grad_output, indices)
    input_shape = tuple(int(s) for s in input_shape)
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
    weights = xp.where(inside, grad_output.reshape(planes, -1), 0)
    grad = xp.bincount(flat.ravel(), weights=weights.ravel(), minlength=planes * HW)  # scatter-add
    return grad.astype(grad_output.dtype, copy=False).reshape(input_shape)


def _avg_divisor(xp, size, kernel, stride, pad, out, count_include_pad, dtype):
    """Per-position window size along one axis, PyTorch's rule, shape (out,)."""
    start = xp.arange(out) * stride - pad
    end = xp.minimum(start + kernel, size + pad)  # a ceil-mode window stops at the right padding
    if not count_include_pad:
        start, end = xp.maximum(start, 0), xp.minimum(end, size)
    return (end - start).astype(dtype)


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
    """
    x, unbatched = _as_batch("input", input)
    xp = get_array_module(x)
    if divisor_override is not None and (
        not isinstance(divisor_override, numbers.Integral)
        or isinstance(divisor_override, bool)
        or divisor_override == 0
    ):
        raise ValueError(f"divisor_override must be a non-zero int, got {divisor_override!r}")
    geometry = _pool_geometry("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    kernel, stride, padding, _, out_hw = geometry
    out = xp.zeros(x.shape[:2] + out_hw, dtype=x.dtype)  # (N, C, out_h, out_w); padding adds 0
    _pool_windows(x, out, geometry, lambda dst, src: xp.add(dst, src, out=dst))
    if divisor_override is not None:
        out /= x.dtype.type(divisor_override)
    else:
        H, W = x.shape[-2:]
        div_h = _avg_divisor(xp, H, kernel[0], stride[0], padding[0], out_hw[0], count_include_pad, x.dtype)
        div_w = _avg_divisor(xp, W, kernel[1], stride[1], padding[1], out_hw[1], count_include_pad, x.dtype)
        out /= div_h[:, None] * div_w[None, :]  # (out_h, out_w)
    return out[0] if unbatched else out


class _Shaped:
    """A stand-in with only ``shape``: lets the geometry helpers check a backward call's ``input_shape``."""

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)
        self.ndim = len(self.shape)


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
    """Gradient of :func:`avg_pool2d`: each output's gradient, divided by its window's divisor,
    is spread over every input element of that window (overlaps add; the padding's share is dropped).

    Parameters
    ----------
    grad_output : array, shape (N, C, out_h, out_w) or (C, out_h, out_w)
    input_shape : tuple
        ``(N, C, H, W)`` or ``(C, H, W)`` of the forward input.
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        As given to :func:`avg_pool2d`.

    Returns
    -------
    array, shape ``input_shape``
    """
    _check_float("grad_output", grad_output)
    xp = get_array_module(grad_output)
    shape = _Shaped(input_shape)
    if shape.ndim not in (3, 4):
        raise ValueError(f"avg_pool2d_backward: input_shape must be (N, C, H, W) or (C, H, W), got {shape.shape}")
    x = _Shaped((1,) + shape.shape if shape.ndim == 3 else shape.shape)
    g = grad_output[None] if shape.ndim == 3 else grad_output
    kernel, stride, padding, dilation, out_hw = _pool_geometry(
        "avg_pool2d_backward", shape, kernel_size, stride, padding, 1, ceil_mode
    )
    if _shape(g) != x.shape[:2] + out_hw:
        raise ValueError(
            f"avg_pool2d_backward: grad_output must have shape {x.shape[:2] + out_hw} for "
            f"input_shape {shape.shape}, got {_shape(grad_output)}"
        )
    H, W = x.shape[2:]
    if divisor_override is not None:
        g = g / g.dtype.type(divisor_override)
    else:
        div_h = _avg_divisor(xp, H, kernel[0], stride[0], padding[0], out_hw[0], count_include_pad, g.dtype)
        div_w = _avg_divisor(xp, W, kernel[1], stride[1], padding[1], out_hw[1], count_include_pad, g.dtype)
        g = g / (div_h[:, None] * div_w[None, :])  # (N, C, out_h, out_w): the gradient of each window's mean
    grad = _add_windows(xp, (H, W), x.shape[:2], kernel, stride, padding, dilation, out_hw, g.dtype, lambda i, j: g)
    return grad[0] if shape.ndim == 3 else grad


def _adaptive_bins(xp, size: int, out: int, dtype):
    """Averaging matrix of shape (out, size): row ``i`` is 1/len over PyTorch's bin
    ``[floor(i*size/out), ceil((i+1)*size/out))``."""
    i = xp.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    pos = xp.arange(size)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])  # (out, size)
    return inside.astype(dtype) / (end - start).astype(dtype)[:, None]


def _adaptive_output_size(input, output_size) -> tuple[int, int]:
    H, W = _shape(input)[-2:]
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(s if s is not None else d for s, d in zip(output_size, (H, W)))
    out_h, out_w = _positive_pair(output_size, "output_size")
    if H < 1 or W < 1:
        raise ValueError(f"adaptive_avg_pool2d: input must have non-empty spatial size, got shape {_shape(input)}")
    return out_h, out_w


def adaptive_avg_pool2d_output_shape(input: Array, output_size: int | tuple[int | None, int | None]) -> Shape:
    """The shape :func:`adaptive_avg_pool2d` returns, with the same checks and errors, computing nothing."""
    _batch_shape("input", input)
    return (*_shape(input)[:-2], *_adaptive_output_size(input, output_size))


def adaptive_avg_pool2d(input: Array, output_size: int | tuple[int | None, int | None]) -> Array:
    """Adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output position ``i`` averages input rows ``floor(i*H/out_h)`` to ``ceil((i+1)*H/out_h) - 1``
    (PyTorch's bins, which overlap when ``H`` is not a multiple of ``out_h``); columns likewise.
    Computed as two small matrix products, ``P_h @ x @ P_w.T``.

    Parameters
    ----------
    input : array, shape (N, C, H, W) or (C, H, W)
    output_size : int, (int, int), or a pair with None meaning "keep the input size"

    Returns
    -------
    array, shape (N, C, out_h, out_w)
    """
    x, unbatched = _as_batch("input", input)
    xp = get_array_module(x)
    H, W = x.shape[-2:]
    out_h, out_w = _adaptive_output_size(input, output_size)
    p_h = _adaptive_bins(xp, H, out_h, x.dtype)  # (out_h, H)
    p_w = _adaptive_bins(xp, W, out_w, x.dtype)  # (out_w, W)
    out = p_h @ (x @ p_w.T)  # (N, C, H, out_w) -> (N, C, out_h, out_w)
    return out[0] if unbatched else out


def adaptive_avg_pool2d_backward(grad_output: Array, input_shape: Shape) -> Array:
    """Gradient of :func:`adaptive_avg_pool2d`: with ``out = P_h @ x @ P_w.T``, ``grad_x = P_h.T @ grad_out @ P_w``.

    Parameters
    ----------
    grad_output : array, shape (N, C, out_h, out_w) or (C, out_h, out_w)
    input_shape : tuple
        ``(N, C, H, W)`` or ``(C, H, W)`` of the forward input.

    Returns
    -------
    array, shape ``input_shape``
    """
    _check_float("grad_output", grad_output)
    xp = get_array_module(grad_output)
    input_shape = tuple(int(s) for s in input_shape)
    if (
        len(input_shape) != grad_output.ndim
        or input_shape[:-2] != _shape(grad_output)[:-2]
        or grad_output.ndim not in (3, 4)
        or min(input_shape[-2:]) < 1
    ):
        raise ValueError(
            f"adaptive_avg_pool2d_backward: grad_output {_shape(grad_output)} does not fit input_shape {input_shape}"
        )
    (H, W), (out_h, out_w) = input_shape[-2:], grad_output.shape[-2:]
    p_h = _adaptive_bins(xp, H, out_h, grad_output.dtype)  # (out_h, H)
    p_w = _adaptive_bins(xp, W, out_w, grad_output.dtype)  # (out_w, W)
    return p_h.T @ (grad_output @ p_w)  # (N, C, out_h, W) -> (N, C, H, W)


# --------------------------------------------------------------------------- normalisation, dense, activation
def batch_norm_output_shape(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None = None,
    bias: Array | None = None,
    training: bool = False,
) -> Shape:
    """The shape :func:`batch_norm` returns (the input's), with the same checks and errors, computing nothing."""
    _check_float("input", input)
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must be at least 2-D (N, C, ...), got shape {_shape(input)}")
    C = _shape(input)[1]
    for name, arr in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if arr is None:
            continue
        _check_float(name, arr)
        if _shape(arr) != (C,):
            raise ValueError(f"{name} must have shape ({C},) for input of shape {_shape(input)}, got {_shape(arr)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are required when training=False")
    return _shape(input)


def batch_norm(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None = None,
    bias: Array | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Array:
    """Batch normalisation over axis 1, as ``torch.nn.functional.batch_norm``.

    In inference (``training=False``) the running statistics normalise the input. In
    training the batch mean and biased variance normalise it, and the running statistics,
    when given, are updated in place as PyTorch does:
    ``running = (1 - momentum) * running + momentum * batch`` with the *unbiased* variance.

    Parameters
    ----------
    input : array, shape (N, C, ...)
    running_mean, running_var : array, shape (C,), or None (training only)
    weight, bias : array, shape (C,), optional
    training : bool
    momentum, eps : float

    Returns
    -------
    array, same shape and dtype as ``input``
    """
    batch_norm_output_shape(input, running_mean, running_var, weight, bias, training)
    xp = get_array_module(input, running_mean, running_var, weight, bias)
    C = input.shape[1]
    bshape = (1, C) + (1,) * (input.ndim - 2)  # broadcasts a (C,) vector over (N, C, ...)
    if training:
        axes = (0,) + tuple(range(2, input.ndim))
        count = input.size // C if C else 0
        if count <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input of shape {_shape(input)}"
            )
        mean = input.mean(axis=axes)
        var = input.var(axis=axes)  # biased: normalises the batch
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * (var * (count / (count - 1))).astype(running_var.dtype)  # unbiased
    else:
        mean, var = running_mean, running_var
    scale = 1 / xp.sqrt(var.astype(input.dtype) + input.dtype.type(eps))
    if weight is not None:
        scale = scale * weight.astype(input.dtype)
    shift = -mean.astype(input.dtype) * scale
    if bias is not None:
        shift = shift + bias.astype(input.dtype)
    return input * scale.reshape(bshape) + shift.reshape(bshape)


def linear_output_shape(input: Array, weight: Array, bias: Array | None = None) -> Shape:
    """The shape :func:`linear` returns, (..., out_features), with the same checks and errors, computing nothing."""
    _check_float("input", input)
    _check_float("weight", weight)
    _check_same_dtype("weight", weight, input)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {_shape(weight)}")
    if input.ndim < 1 or _shape(input)[-1] != _shape(weight)[1]:
        raise ValueError(
            f"input's last axis must have {_shape(weight)[1]} features to match weight {_shape(weight)}, "
            f"got input shape {_shape(input)}"
        )
    if bias is not None:
        _check_float("bias", bias)
        _check_same_dtype("bias", bias, input)
        if _shape(bias) != (_shape(weight)[0],):
            raise ValueError(f"bias must have shape ({_shape(weight)[0]},), got {_shape(bias)}")
    return (*_shape(input)[:-1], _shape(weight)[0])


def batch_norm_backward(
    grad_output: Array,
    input: Array,
    weight: Array | None = None,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    training: bool = True,
    eps: float = 1e-5,
) -> tuple[Array, Array | None, Array | None]:
    """Gradients of :func:`batch_norm` with respect to its input, weight and bias.

    With ``x_hat = (x - mean) * invstd`` and ``y = weight * x_hat + bias`` per channel, summing over the
    ``M = N*H*W`` values of a channel:

    * ``grad_bias = sum(g)`` and ``grad_weight = sum(g * x_hat)``;
    * in training the mean and variance are the batch's own, so they depend on ``x`` too, and
      ``grad_x = weight * invstd / M * (M*g - sum(g) - x_hat * sum(g * x_hat))``:
      the plain ``weight * invstd * g`` minus its projection on the constant (through the mean) and on
      ``x_hat`` (through the variance);
    * in inference the statistics are constants and ``grad_x = weight * invstd * g``.

    Parameters
    ----------
    grad_output, input : array, shape (N, C, ...)
        ``input`` is the forward input; the batch statistics are recomputed from it.
    weight : array, shape (C,), optional
    running_mean, running_var : array, shape (C,)
        Used (and required) only when ``training=False``.
    training : bool
        As given to the forward call.
    eps : float

    Returns
    -------
    (grad_input, grad_weight, grad_bias) : arrays of shapes input.shape, (C,), (C,)
    """
    _check_float("input", input)
    _check_float("grad_output", grad_output)
    if _shape(grad_output) != _shape(input) or input.ndim < 2:
        raise ValueError(
            f"batch_norm_backward: grad_output {_shape(grad_output)} must have the input's "
            f"shape {_shape(input)}, at least 2-D"
        )
    xp = get_array_module(grad_output, input, weight)
    C = input.shape[1]
    axes = (0,) + tuple(range(2, input.ndim))
    bshape = (1, C) + (1,) * (input.ndim - 2)
    dtype = input.dtype
    if training:
        mean, var = input.mean(axis=axes), input.var(axis=axes)  # the forward's batch statistics
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm_backward: running_mean and running_var are required when training=False")
        mean, var = running_mean.astype(dtype), running_var.astype(dtype)
    invstd = 1 / xp.sqrt(var + dtype.type(eps))  # (C,)
    x_hat = (input - mean.reshape(bshape)) * invstd.reshape(bshape)  # (N, C, ...)
    grad_bias = grad_output.sum(axis=axes)
    grad_weight = (grad_output * x_hat).sum(axis=axes)
    scale = invstd if weight is None else invstd * weight.astype(dtype)  # (C,)
    if training:
        M = input.size // C
        grad_input = M * grad_output - grad_bias.reshape(bshape) - x_hat * grad_weight.reshape(bshape)
        grad_input *= (scale / M).reshape(bshape)
    else:
        grad_input = grad_output * scale.reshape(bshape)
    return grad_input, grad_weight, grad_bias


def linear(input: Array, weight: Array, bias: Array | None = None) -> Array:
    """``y = input @ weight.T + bias``, as ``torch.nn.functional.linear``.

    Parameters
    ----------
    input : array, shape (..., in_features)
    weight : array, shape (out_features, in_features)
    bias : array, shape (out_features,), optional

    Returns
    -------
    array, shape (..., out_features)
    """
    linear_output_shape(input, weight, bias)
    out = input @ weight.T
    if bias is not None:
        out = out + bias
    return out


def relu_output_shape(input: Array) -> Shape:
    """The shape :func:`relu` returns (the input's), with the same checks and errors, computing nothing."""
    _check_float("input", input)
    return _shape(input)


def linear_backward(grad_output: Array, input: Array, weight: Array) -> tuple[Array, Array, Array]:
    """Gradients of :func:`linear`: ``grad_input = g @ weight``, ``grad_weight = g.T @ input``,
    ``grad_bias = sum(g)``, the sums running over every leading axis.

    Parameters
    ----------
    grad_output : array, shape (..., out_features)
    input : array, shape (..., in_features)
    weight : array, shape (out_features, in_features)

    Returns
    -------
    (grad_input, grad_weight, grad_bias) : arrays of shapes input.shape, weight.shape, (out_features,)
    """
    _check_float("grad_output", grad_output)
    _check_float("input", input)
    if _shape(grad_output) != _shape(input)[:-1] + _shape(weight)[:1] or _shape(input)[-1:] != _shape(weight)[1:]:
        raise ValueError(
            f"linear_backward: grad_output {_shape(grad_output)}, input {_shape(input)} and weight "
            f"{_shape(weight)} do not fit (..., out), (..., in), (out, in)"
        )
    g = grad_output.reshape(-1, weight.shape[0])  # (M, out): every leading axis is one more sample
    x = input.reshape(-1, weight.shape[1])  # (M, in)
    return grad_output @ weight, g.T @ x, g.sum(axis=0)


def relu(input: Array, inplace: bool = False) -> Array:
    """``max(input, 0)`` elementwise, as ``torch.nn.functional.relu``; NaN stays NaN.

    Parameters
    ----------
    input : array, any shape, floating dtype
    inplace : bool
        Overwrite ``input`` and return it.
    """
    _check_float("input", input)
    xp = get_array_module(input)
    if inplace:
        return xp.maximum(input, 0, out=input)
    return xp.maximum(input, input.dtype.type(0))


def relu_backward(grad_output: Array, output: Array) -> Array:
    """Gradient of :func:`relu`: 0 where the output is <= 0, ``grad_output`` elsewhere (as torch: 0 at 0).

    ``output`` (not the input) is enough, so an in-place ReLU can be differentiated.
    """
    _check_float("grad_output", grad_output)
    if _shape(grad_output) != _shape(output):
        raise ValueError(f"relu_backward: grad_output {_shape(grad_output)} must have output's shape {_shape(output)}")
    xp = get_array_module(grad_output, output)
    return xp.where(output <= 0, grad_output.dtype.type(0), grad_output)  # NaN passes its gradient, as torch


# --------------------------------------------------------------------------- loss
def log_softmax(input: Array, dim: int = -1) -> Array:
    """``log(softmax(input))`` along ``dim``, as ``torch.nn.functional.log_softmax``.

    Computed as ``x - max - log(sum(exp(x - max)))``, so large logits do not overflow.
    """
    _check_float("input", input)
    xp = get_array_module(input)
    shifted = input - input.max(axis=dim, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))


def _check_targets(input, target):
    """Validate (N, C) logits and (N,) class indices; return the (N, C) and (N,) views and the unbatched flag."""
    _check_float("input", input)
    if input.ndim not in (1, 2):
        raise ValueError(f"cross_entropy: input must be (N, C) logits or (C,), got shape {_shape(input)}")
    dtype = getattr(target, "dtype", None)
    if dtype is None or dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must be an integer array of class indices, got {dtype}")
    if _shape(target) != _shape(input)[:-1]:
        raise ValueError(
            f"cross_entropy: target shape {_shape(target)} must be input's {_shape(input)} without the class axis"
        )
    C = input.shape[-1]
    if target.size and (int(target.min()) < 0 or int(target.max()) >= C):
        raise ValueError(
            f"cross_entropy: target values must be in [0, {C}), got [{int(target.min())}, {int(target.max())}]"
        )
    unbatched = input.ndim == 1
    return (input[None], target.reshape(1)) if unbatched else (input, target), unbatched


def _smoothed_targets(xp, target, C, label_smoothing, dtype):
    """The target distribution, shape (N, C): ``1 - ε`` on the class plus ``ε / C`` everywhere."""
    q = xp.full((target.shape[0], C), label_smoothing / C, dtype=dtype)
    q[xp.arange(target.shape[0]), target] += dtype.type(1 - label_smoothing)
    return q


def _check_reduction(reduction, label_smoothing):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")


def cross_entropy(input: Array, target: Array, reduction: str = "mean", label_smoothing: float = 0.0) -> Array:
    """Cross entropy of logits against class indices, as ``torch.nn.functional.cross_entropy``.

    ``loss_n = -sum_c q[n, c] * log_softmax(input)[n, c]`` with the target distribution
    ``q = (1 - ε) * one_hot(target) + ε / C`` (``ε = label_smoothing``), then averaged
    (``'mean'``), summed, or kept per sample (``'none'``).

    Parameters
    ----------
    input : array, shape (N, C) or (C,)
    target : integer array, shape (N,) or ()
    reduction : {'mean', 'sum', 'none'}
    label_smoothing : float in [0, 1]

    Returns
    -------
    array, shape () or (N,)
    """
    _check_reduction(reduction, label_smoothing)
    (x, t), unbatched = _check_targets(input, target)
    xp = get_array_module(x)
    q = _smoothed_targets(xp, t, x.shape[1], label_smoothing, x.dtype)
    loss = -(q * log_softmax(x, dim=1)).sum(axis=1)  # (N,)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss[0] if unbatched else loss


def cross_entropy_backward(
    grad_output: Array | float, input: Array, target: Array, reduction: str = "mean", label_smoothing: float = 0.0
) -> Array:
    """Gradient of :func:`cross_entropy` with respect to the logits: ``(softmax(input) - q) * grad_output``,
    divided by ``N`` for ``'mean'``.

    Parameters
    ----------
    grad_output : float or array, shape () or, for ``reduction='none'``, (N,)
        1.0 for the loss itself.
    input, target, reduction, label_smoothing
        As given to :func:`cross_entropy`.

    Returns
    -------
    array, shape input.shape
    """
    _check_reduction(reduction, label_smoothing)
    (x, t), unbatched = _check_targets(input, target)
    xp = get_array_module(x)
    N = x.shape[0]
    q = _smoothed_targets(xp, t, x.shape[1], label_smoothing, x.dtype)
    grad = xp.exp(log_softmax(x, dim=1)) - q  # (N, C): softmax minus the target distribution
    g = xp.asarray(grad_output, dtype=x.dtype)
    if reduction == "none":
        grad *= g.reshape(-1, 1)
    else:
        grad *= g / N if reduction == "mean" else g
    return grad[0] if unbatched else grad
