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

from .backend import get_array_module
from .shapes import conv_output_size, kernel_taps, pair
from .workspace import resolve_workspace_bytes, workspace_chunks

__all__ = [
    "im2col",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "batch_norm",
    "linear",
    "relu",
    # shape-only checks: the output shape each layer would return, with the same errors
    "conv2d_output_shape", "max_pool2d_output_shape", "avg_pool2d_output_shape",
    "adaptive_avg_pool2d_output_shape", "linear_output_shape", "batch_norm_output_shape", "relu_output_shape",
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


def im2col(input, kernel_size, dilation=1, padding=0, stride=1):
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


def conv2d_output_shape(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> tuple:
    """The shape :func:`conv2d` returns for these arguments, with the same checks and errors, computing nothing.

    ``input``, ``weight`` and ``bias`` need only ``shape``, ``ndim`` and ``dtype`` (arrays or
    :class:`npresnet.nn.TensorSpec`). Returns (N, O, out_h, out_w), or (O, out_h, out_w) for a 3-D input.
    """
    _, unbatched, _, _, _, (out_h, out_w) = _conv2d_plan(input, weight, bias, stride, padding, dilation, groups)
    O = _shape(weight)[0]
    return (O, out_h, out_w) if unbatched else (_shape(input)[0], O, out_h, out_w)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, workspace_bytes=None):
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


# --------------------------------------------------------------------------- pooling
def _pool_geometry(func, input, kernel_size, stride, padding, dilation, ceil_mode):
    """Pooling's argument checks and geometry from shapes alone: (kernel, stride, padding, dilation, out_hw)."""
    kernel = _positive_pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else \
        _positive_pair(stride, "stride")
    dilation = _positive_pair(dilation, "dilation")
    padding = _positive_pair(padding, "padding", low=0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{func}: padding={padding} must be at most half of kernel_size={kernel} "
            f"(padding <= kernel_size // 2)"
        )
    H, W = _shape(input)[-2:]
    out_h = _out_size(func, input, "height", H, kernel[0], stride[0], padding[0], dilation[0], bool(ceil_mode))
    out_w = _out_size(func, input, "width", W, kernel[1], stride[1], padding[1], dilation[1], bool(ceil_mode))
    return kernel, stride, padding, dilation, (out_h, out_w)


def _pool_output_shape(func, input, kernel_size, stride, padding, dilation, ceil_mode) -> tuple:
    _batch_shape("input", input)
    *_, (out_h, out_w) = _pool_geometry(func, input, kernel_size, stride, padding, dilation, ceil_mode)
    return (*_shape(input)[:-2], out_h, out_w)


def max_pool2d_output_shape(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> tuple:
    """The shape :func:`max_pool2d` returns, with the same checks and errors, computing nothing."""
    return _pool_output_shape("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool2d_output_shape(input, kernel_size, stride=None, padding=0, ceil_mode=False) -> tuple:
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


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d`` (indices are not returned).

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

    Returns
    -------
    array, shape (N, C, out_h, out_w)
    """
    x, unbatched = _as_batch("input", input)
    xp = get_array_module(x)
    geometry = _pool_geometry("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    out = xp.full(x.shape[:2] + geometry[-1], -math.inf, dtype=x.dtype)  # (N, C, out_h, out_w)
    _pool_windows(x, out, geometry, lambda dst, src: xp.maximum(dst, src, out=dst))  # NaN-propagating
    return out[0] if unbatched else out


def _avg_divisor(xp, size, kernel, stride, pad, out, count_include_pad, dtype):
    """Per-position window size along one axis, PyTorch's rule, shape (out,)."""
    start = xp.arange(out) * stride - pad
    end = xp.minimum(start + kernel, size + pad)  # a ceil-mode window stops at the right padding
    if not count_include_pad:
        start, end = xp.maximum(start, 0), xp.minimum(end, size)
    return (end - start).astype(dtype)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
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
        not isinstance(divisor_override, numbers.Integral) or isinstance(divisor_override, bool)
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


def adaptive_avg_pool2d_output_shape(input, output_size) -> tuple:
    """The shape :func:`adaptive_avg_pool2d` returns, with the same checks and errors, computing nothing."""
    _batch_shape("input", input)
    return (*_shape(input)[:-2], *_adaptive_output_size(input, output_size))


def adaptive_avg_pool2d(input, output_size):
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


# --------------------------------------------------------------------------- normalisation, dense, activation
def batch_norm_output_shape(input, running_mean, running_var, weight=None, bias=None, training=False) -> tuple:
    """The shape :func:`batch_norm` returns (the input's), with the same checks and errors, computing nothing."""
    _check_float("input", input)
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must be at least 2-D (N, C, ...), got shape {_shape(input)}")
    C = _shape(input)[1]
    for name, arr in (("running_mean", running_mean), ("running_var", running_var),
                      ("weight", weight), ("bias", bias)):
        if arr is None:
            continue
        _check_float(name, arr)
        if _shape(arr) != (C,):
            raise ValueError(f"{name} must have shape ({C},) for input of shape {_shape(input)}, got {_shape(arr)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are required when training=False")
    return _shape(input)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
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


def linear_output_shape(input, weight, bias=None) -> tuple:
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


def linear(input, weight, bias=None):
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


def relu_output_shape(input) -> tuple:
    """The shape :func:`relu` returns (the input's), with the same checks and errors, computing nothing."""
    _check_float("input", input)
    return _shape(input)


def relu(input, inplace=False):
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
