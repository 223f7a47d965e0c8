"""The window geometry of the fused path: which outputs of a kernel offset read inside the input.

Output position ``o`` of a window with kernel offset ``i`` reads input index ``o*s - p + i*d``
(stride ``s``, padding ``p``, dilation ``d``). The fused path never materialises padding: for
each kernel offset it copies (or reduces) only the outputs whose input lies inside the image,
one strided slice, and treats the border strips left over as padding. :mod:`.conv`
(channels-last im2col), :mod:`.winograd` (tile gather) and the fused max pool
(:mod:`.pool`) walk their windows through :func:`kernel_taps`. Pure integers, no arrays.
(The reference layers in :mod:`npresnet.functional` pad once instead and need none of this.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, TypeAlias

__all__ = ["tap_range", "Tap", "tap", "kernel_taps"]

#: Rows and columns of a 2-D region: ``(slice(y0, y1[, sy]), slice(x0, x1[, sx]))``.
Region: TypeAlias = tuple[slice, slice]


def tap_range(o0: int, o1: int, size: int, offset: int, stride: int) -> tuple[int, int]:
    """Return the outputs ``o`` in ``[o0, o1)`` whose input index ``o*stride + offset`` lies in ``[0, size)``.

    Returns ``(lo, hi)`` with ``o0 <= lo <= hi <= o1``; the range is empty (``lo == hi``) when
    no output of the range reads inside the input. Outputs in ``[o0, lo)`` and ``[hi, o1)``
    read the padding (before and after the input).
    """
    lo = min(o1, max(o0, -(offset // stride)))  # ceil(-offset / stride): first o with o*stride + offset >= 0
    hi = max(lo, min(o1, (size - 1 - offset) // stride + 1))  # one past the last o with o*stride + offset < size
    return lo, hi


class Tap(NamedTuple):
    """Where one kernel offset's slice goes, for a block of outputs (rows ``y0:y1``, columns ``x0:x1``).

    Attributes
    ----------
    dst : (slice, slice) or None
        Output rows and columns, relative to ``(y0, x0)``, that read inside the input; None if none do.
    src : (slice, slice) or None
        The input rows and columns they read (strided slices of the unpadded input).
    strips : tuple of (slice, slice)
        Output regions, relative to ``(y0, x0)``, that read the padding: up to four border strips
        (top and bottom rows full width, left and right columns beside ``dst``), or the whole
        block when ``dst`` is None. Empty regions are left out.
    """

    dst: Region | None
    src: Region | None
    strips: tuple[Region, ...]


def tap(
    size: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    offset: tuple[int, int],
    stride: tuple[int, int],
) -> Tap:
    """Return the :class:`Tap` of a kernel offset whose output ``(oy, ox)`` reads input ``(oy*sy + dy0, ox*sx + dx0)``.

    Parameters
    ----------
    size : (H, W)
        Input size.
    rows, cols : (int, int)
        The block of outputs, ``y0:y1`` and ``x0:x1``.
    offset : (dy0, dx0)
        Input index of output 0 for this kernel offset: ``i*dy - ph, j*dx - pw``.
    stride : (sy, sx)
    """
    (y0, y1), (x0, x1) = rows, cols
    lo_y, hi_y = tap_range(y0, y1, size[0], offset[0], stride[0])
    lo_x, hi_x = tap_range(x0, x1, size[1], offset[1], stride[1])
    if lo_y == hi_y or lo_x == hi_x:
        return Tap(None, None, ((slice(0, y1 - y0), slice(0, x1 - x0)),))
    dst = (slice(lo_y - y0, hi_y - y0), slice(lo_x - x0, hi_x - x0))
    src = (
        slice(lo_y * stride[0] + offset[0], (hi_y - 1) * stride[0] + offset[0] + 1, stride[0]),
        slice(lo_x * stride[1] + offset[1], (hi_x - 1) * stride[1] + offset[1] + 1, stride[1]),
    )
    strips = [
        (slice(0, lo_y - y0), slice(0, x1 - x0)),
        (slice(hi_y - y0, y1 - y0), slice(0, x1 - x0)),
        (dst[0], slice(0, lo_x - x0)),
        (dst[0], slice(hi_x - x0, x1 - x0)),
    ]
    return Tap(dst, src, tuple((r, c) for r, c in strips if r.start < r.stop and c.start < c.stop))


def kernel_taps(
    size: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> Iterator[tuple[int, int, Tap]]:
    """Yield ``(i, j, tap)`` for every kernel offset, row-major: offset ``(i, j)`` reads ``o*s - p + i*d``.

    Parameters
    ----------
    size : (H, W)
        Input size (unpadded).
    rows, cols : (int, int)
        The block of outputs to cover, ``y0:y1`` and ``x0:x1``.
    kernel, stride, padding, dilation : (int, int)
        Padding on each side (top = bottom, left = right; a ceil-mode or 'same' overhang on the
        bottom/right is simply outputs that read past the input, i.e. padding).
    """
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            offset = (i * dilation[0] - padding[0], j * dilation[1] - padding[1])
            yield i, j, tap(size, rows, cols, offset, stride)
