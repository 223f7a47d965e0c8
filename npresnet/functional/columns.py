"""The textbook im2col and its adjoint col2im, built from one strided window slice.

The textbook im2col (Chainer's kernel-offset slicing): pad the input once, then for each of
the ``kh*kw`` kernel offsets ``(i, j)`` copy one strided slice of it,

    cols[:, :, i, j] = xpad[:, :, i*dy : i*dy + sy*(out_h-1) + 1 : sy, j*dx : j*dx + sx*(out_w-1) + 1 : sx]

into an ``(N, C, kh, kw, out_h, out_w)`` array: output ``(oy, ox)`` of offset ``(i, j)`` reads
padded input ``(oy*sy + i*dy, ox*sx + j*dx)``. There are no index arrays and no loops over
pixels, and the same code runs on CuPy. col2im, its adjoint, adds each offset's slice back
into a zero padded buffer and crops the padding off. The convolution (:mod:`.conv`) multiplies
the columns by its weights; the pools (:mod:`.pooling`) reduce the same slices instead of
storing them.

Naming: ``kh, kw`` kernel, ``sy, sx`` stride, ``ph, pw`` padding, ``dy, dx`` dilation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backend import get_array_module
from ._checks import _as_batch, _check_elements, _check_float, _out_size, _positive_pair, _shape

if TYPE_CHECKING:
    from .._typing import Array, IntPair, Shaped

    Pair = tuple[int, int]

__all__ = ["im2col", "col2im"]


# --------------------------------------------------------------------------- window slices
def _extent(out: int, kernel: int, stride: int, dilation: int) -> int:
    """Return the padded input length the windows of ``out`` outputs read: the last window's last tap, plus one."""
    return (out - 1) * stride + dilation * (kernel - 1) + 1


def _padded_shape(
    shape: tuple[int, ...], before: Pair, out_hw: tuple[int, ...], kernel: Pair, stride: Pair, dilation: Pair
) -> tuple[int, ...]:
    """Return the shape of the padded buffer.

    ``before`` (top, left) is added, and at the bottom/right as much as the windows read past the
    input (the symmetric padding, a 'same' or ceil-mode overhang, or nothing).
    """
    *lead, H, W = shape
    Hp = max(before[0] + H, _extent(out_hw[0], kernel[0], stride[0], dilation[0]))
    Wp = max(before[1] + W, _extent(out_hw[1], kernel[1], stride[1], dilation[1]))
    return (*lead, Hp, Wp)


def _pad(x: Array, padded_hw: tuple[int, ...], before: Pair, value: float = 0, rows: Pair | None = None) -> Array:
    """``x`` (..., H, W) placed at ``before = (top, left)`` in a buffer (..., Hp, Wp) filled with ``value``.

    ``rows = (a, b)`` builds only padded rows ``a:b`` of it, shape (..., b - a, Wp): the band a chunk
    of outputs reads. Returns a view of ``x`` when the rows need no padding.
    """
    Hp, Wp = padded_hw
    a, b = (0, Hp) if rows is None else rows
    H, W = x.shape[-2:]
    top, left = before
    if a >= top and b <= top + H and (left, Wp) == (0, W):
        return x[..., a - top : b - top, :]
    xp = get_array_module(x)
    y0, y1 = max(a - top, 0), min(b - top, H)  # the input rows inside the band
    xpad: Array = xp.full(x.shape[:-2] + (b - a, Wp), value, dtype=x.dtype)  # (..., b - a, Wp)
    if y0 < y1:
        xpad[..., y0 + top - a : y1 + top - a, left : left + W] = x[..., y0:y1, :]
    return xpad


def _window(xpad: Array, i: int, j: int, stride: Pair, dilation: Pair, out_hw: Pair) -> Array:
    """Return kernel offset ``(i, j)``'s strided slice of ``xpad`` (..., Hp, Wp), a view.

    Its shape is (..., out_h, out_w), element ``(oy, ox)`` being ``xpad[..., oy*sy + i*dy, ox*sx + j*dx]``.
    """
    (sy, sx), (dy, dx), (out_h, out_w) = stride, dilation, out_hw
    y, x = i * dy, j * dx  # the padded row and column output (0, 0) reads
    return xpad[..., y : y + sy * (out_h - 1) + 1 : sy, x : x + sx * (out_w - 1) + 1 : sx]


def _im2col(xpad: Array, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair, out: Array | None = None) -> Array:
    """Textbook im2col of a padded ``xpad`` (N, C, Hp, Wp) into ``out`` (N, C, kh, kw, out_h, out_w).

    ``out`` may be any writable view of that shape (the convolution passes a transposed view of a
    buffer laid out for its matrix product); by default a new C-contiguous array.
    """
    kh, kw = kernel
    if out is None:
        xp = get_array_module(xpad)
        out = xp.empty(xpad.shape[:2] + (kh, kw) + tuple(out_hw), dtype=xpad.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = _window(xpad, i, j, stride, dilation, out_hw)  # (N, C, out_h, out_w)
    return out


def _col2im(cols: Array, stride: Pair, dilation: Pair, out: Array) -> Array:
    """Add ``cols`` (N, C, kh, kw, out_h, out_w) into the padded ``out`` (N, C, Hp, Wp): :func:`_im2col`'s adjoint.

    One offset's slice never repeats a pixel, so ``+=`` on the strided view is exact; the
    offsets overlap one another and their contributions add up. Returns ``out``.
    """
    kh, kw, out_h, out_w = cols.shape[2:]
    for i in range(kh):
        for j in range(kw):
            _window(out, i, j, stride, dilation, (out_h, out_w))[...] += cols[:, :, i, j]  # (N, C, out_h, out_w)
    return out


# --------------------------------------------------------------------------- im2col / col2im
def _window_geometry(
    func: str, input: Shaped, kernel_size: IntPair, stride: IntPair, padding: IntPair, dilation: IntPair
) -> tuple[Pair, Pair, Pair, Pair, Pair]:
    """Validate im2col's window arguments and return (kernel, stride, (ph, pw), dilation, (out_h, out_w))."""
    kernel = _positive_pair(kernel_size, "kernel_size")
    stride = _positive_pair(stride, "stride")
    dilation = _positive_pair(dilation, "dilation")
    padding = _positive_pair(padding, "padding", low=0)
    H, W = _shape(input)[-2:]
    out_h = _out_size(func, input, "height", H, kernel[0], stride[0], padding[0], dilation[0])
    out_w = _out_size(func, input, "width", W, kernel[1], stride[1], padding[1], dilation[1])
    return kernel, stride, padding, dilation, (out_h, out_w)


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

    Raises
    ------
    ValueError
        Also when the result or the padded input would have more than
        :data:`~npresnet.functional.MAX_ELEMENTS` elements (checked before allocating).
    """
    x, unbatched = _as_batch("input", input)
    kernel, stride, padding, dilation, out_hw = _window_geometry("im2col", x, kernel_size, stride, padding, dilation)
    N, C = x.shape[:2]
    because = f"input {_shape(input)} with kernel_size={kernel}, padding={padding}, stride={stride}"
    _check_elements("im2col", "columns", (N, C * kernel[0] * kernel[1], out_hw[0] * out_hw[1]), because)
    padded = _padded_shape(x.shape, padding, out_hw, kernel, stride, dilation)
    _check_elements("im2col", "a padded input", padded, because)
    xpad = _pad(x, padded[-2:], padding)  # (N, C, Hp, Wp)
    cols = _im2col(xpad, kernel, stride, dilation, out_hw)  # (N, C, kh, kw, out_h, out_w)
    out = cols.reshape(N, C * kernel[0] * kernel[1], out_hw[0] * out_hw[1])  # free: torch's unfold layout
    return out[0] if unbatched else out


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

    Raises
    ------
    ValueError
        Also when the image or its padded buffer would have more than
        :data:`~npresnet.functional.MAX_ELEMENTS` elements (checked before allocating).
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
            _out_size("col2im", input, axis, n, k, s, p, d)
            for axis, n, k, s, p, d in zip(("height", "width"), (H, W), kernel, stride, padding, dilation)
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
    padded = _padded_shape((N, C, H, W), padding, out_hw, kernel, stride, dilation)
    _check_elements("col2im", "a padded image", padded, f"output_size={(H, W)}, padding={padding}")
    xp = get_array_module(cols)
    gpad = xp.zeros(padded, dtype=cols.dtype)  # (N, C, Hp, Wp)
    _col2im(cols.reshape(N, C, kh, kw, *out_hw), stride, dilation, gpad)
    (ph, pw) = padding
    out: Array = xp.ascontiguousarray(gpad[:, :, ph : ph + H, pw : pw + W])  # what landed in the padding is dropped
    return out[0] if unbatched else out
