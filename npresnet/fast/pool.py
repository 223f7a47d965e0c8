"""The fused path's stem max pool with its ReLU, on NHWC activations, separably and in bands.

ReLU is monotone, so it commutes with the max; this lets the padding be 0 instead of -inf and
the border windows be clipped slices (:func:`npresnet.fast.taps.kernel_taps`). The max over a
kh×kw window is a max over kh rows, then over kw columns: per band of output rows of one image,
a ``(band, W, C)`` scratch takes the kh input rows' maximum (kh passes), then the band of the
output the kw columns' (kw passes), kh·W + kw·out_w element maxima per output row instead of
kh·kw·out_w; the band is small enough that the second pass reads it from cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from ..backend import get_array_module
from .taps import kernel_taps

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._typing import Array

__all__ = ["max_pool_relu", "POOL_BAND_BYTES", "PoolGeometry"]

PoolGeometry: TypeAlias = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], bool]
"""A max pool's ``(kernel_size, stride, padding, dilation, ceil_mode)``, each a pair but ``ceil_mode``."""

POOL_BAND_BYTES = 512 * 2**10
"""Bytes of the row-maximum band: half of a 1 MiB L2. Measured (ResNet stem pool, 8×112×112×64,
one thread, CPU time): bands of 400 KiB 3.0 ms, 800 KiB 3.4 ms, the whole batch at once 4.3 ms,
the former one-pass-per-tap pool 6.5 ms."""


def max_pool_relu(
    x: Array, out: Array, pool: PoolGeometry, workspace: Callable[[int], Array], workspace_bytes: int
) -> Array:
    """Fill ``out`` with ``relu(max_pool(x))`` and return it.

    Parameters
    ----------
    x : array, shape (N, H, W, C)
    out : array, shape (N, out_h, out_w, C)
        The pool's output shape for ``x`` (the caller computes it).
    pool : PoolGeometry
        ``(kernel_size, stride, padding, dilation, ceil_mode)``, each a pair but ``ceil_mode``
        (already reflected in ``out``'s shape).
    workspace : callable
        ``workspace(n_elements)``: flat scratch for one band, ``(band, W, C)``.
    workspace_bytes : int
        The band stays within ``min(POOL_BAND_BYTES, workspace_bytes)`` (at least one row).
    """
    xp = get_array_module(x)
    (kh, kw), (sy, sx), (ph, pw), (dy, dx), _ = pool
    N, H, W, C = x.shape
    _, out_h, out_w, _ = out.shape
    band_bytes = min(POOL_BAND_BYTES, workspace_bytes)
    band = max(1, min(out_h, band_bytes // (W * C * x.dtype.itemsize)))  # output rows per band
    for n in range(N):
        for y0 in range(0, out_h, band):
            y1 = min(out_h, y0 + band)
            rows = workspace((y1 - y0) * W * C).reshape(y1 - y0, W, C)
            rows[...] = 0  # relu's floor; stands for the padding rows too
            for _, _, t in kernel_taps((H, W), (y0, y1), (0, W), (kh, 1), (sy, 1), (ph, 0), (dy, 1)):
                if t.dst is not None and t.src is not None:
                    dst = rows[t.dst[0]]
                    xp.maximum(dst, x[n, t.src[0]], out=dst)
            o = out[n, y0:y1]  # (band, out_w, C)
            o[...] = 0
            for _, _, t in kernel_taps((y1 - y0, W), (0, y1 - y0), (0, out_w), (1, kw), (1, sx), (0, pw), (1, dx)):
                if t.dst is not None and t.src is not None:
                    dst = o[:, t.dst[1]]
                    xp.maximum(dst, rows[:, t.src[1]], out=dst)
    return out
