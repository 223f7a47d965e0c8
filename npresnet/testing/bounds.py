"""Rounding-error bounds, derived from the arithmetic, that the kit's assertions allow by default.

Every output element the kit checks is a sum: a ``K``-term dot product plus a bias (convolutions),
``t`` window values then a division (average pooling), or a selection (max pooling, exact). For a
sum of ``n`` terms whose magnitudes add up to ``m`` (for a dot product ``m = Σ|w||x|``), computed in
floating point with unit roundoff ``u`` in *any* order (blocked GEMM, pairwise sums, fused
multiply-adds, any thread count),

    |computed - exact| <= gamma_n · m,    gamma_n = n·u / (1 - n·u)

(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1, §4.2). On top of it:

- *Accumulation.* float64 and float32 accumulate in their own precision; float16 and bfloat16 are
  taken to accumulate in float32 (as torch, cuDNN and NumPy's float16 loops do) and to round once
  to the output dtype, which adds ``u_out · (1 + gamma_n) · m``. A function that accumulates in
  float16 itself needs a ``slack`` of about ``u_16 / u_32``.
- *Output dtype.* When the output's dtype is coarser than the accumulation (e.g. a ``convert`` to
  bfloat16), its rounding is added the same way. Rounding the *inputs* in ``convert`` is not: that
  changes the problem, and is the caller's to allow for with ``rtol``/``atol``.
- *Underflow.* Each of the ``n`` roundings may underflow; with gradual underflow its absolute error
  is at most half the smallest subnormal, and with flush-to-zero at most the smallest normal
  number ``tiny``, so ``n · tiny`` of the accumulation dtype (plus ``tiny`` of a coarser output
  dtype) covers both. Inputs treated as zero because they are subnormal (DAZ) are not covered.
- *The oracle's own error.* The float64 oracle sums the same terms, so ``gamma_n(u_64)·m + n·tiny_64``
  is added.

The result is a rigorous per-element bound for the direct algorithm, about ``n·u`` relative to
``m``: sharp enough that any arithmetic mistake exceeds it. Fast algorithms (FFT, Winograd,
summed-area tables) carry other error terms; the assertions take an ``atol``/``rtol`` for them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy

if TYPE_CHECKING:
    from .._typing import Array

__all__ = ["unit_roundoff", "accumulation_dtype", "gamma", "sum_bound", "safe_magnitude", "FLOAT_DTYPES"]

# unit roundoff u = 2**-p (p = significand bits), smallest normal number, largest finite number
_FORMATS: dict[str, tuple[float, float, float]] = {
    "float64": (2.0**-53, 2.0**-1022, float(numpy.finfo(numpy.float64).max)),
    "float32": (2.0**-24, 2.0**-126, float(numpy.finfo(numpy.float32).max)),
    "float16": (2.0**-11, 2.0**-14, 65504.0),
    "bfloat16": (2.0**-8, 2.0**-126, (2 - 2.0**-7) * 2.0**127),
}
FLOAT_DTYPES = tuple(_FORMATS)


def _format(dtype_name: str) -> tuple[float, float, float]:
    try:
        return _FORMATS[dtype_name]
    except KeyError:
        raise ValueError(f"no rounding model for dtype {dtype_name!r}; known: {', '.join(_FORMATS)}") from None


def unit_roundoff(dtype_name: str) -> float:
    """``u = 2**-p``: the largest relative error of one rounding to nearest in ``dtype_name``."""
    return _format(dtype_name)[0]


def tiny(dtype_name: str) -> float:
    """Return the smallest positive normal number of ``dtype_name``."""
    return _format(dtype_name)[1]


def largest(dtype_name: str) -> float:
    """Return the largest finite number of ``dtype_name``."""
    return _format(dtype_name)[2]


def accumulation_dtype(dtype_name: str) -> str:
    """Return the dtype sums are taken to run in: float32 for float16 and bfloat16, else the dtype itself."""
    return "float32" if dtype_name in ("float16", "bfloat16") else dtype_name


def gamma(n: int, u: float) -> float:
    """Higham's ``gamma_n = n·u / (1 - n·u)``; infinite once ``n·u >= 1`` (no bound)."""
    return n * u / (1 - n * u) if n * u < 1 else math.inf


def sum_bound(n: int, magnitude: float | Array, dtype_name: str, output_dtype_name: str | None = None) -> float | Array:
    """Bound on ``|computed - exact|`` for sums of ``n`` rounded terms of total magnitude ``magnitude``.

    Parameters
    ----------
    n : int
        Roundings per element (e.g. ``K + 1`` for a ``K``-term dot product plus a bias).
    magnitude : float or ndarray
        ``Σ|term|`` per element, in float64 (NaN where the input is NaN, inf where it is infinite).
    dtype_name : str
        The inputs' dtype; the sums run in :func:`accumulation_dtype` of it.
    output_dtype_name : str, optional
        The output's dtype, if it may be coarser than the accumulation.

    Returns
    -------
    float or ndarray, the shape of ``magnitude``
        The allowed absolute error per element, the float64 oracle's own error included.
    """
    acc = accumulation_dtype(dtype_name)
    g = gamma(n, unit_roundoff(acc)) + gamma(n, unit_roundoff("float64"))
    bound = g * magnitude + n * (tiny(acc) + tiny("float64"))
    out = output_dtype_name or dtype_name
    if out in _FORMATS and unit_roundoff(out) > unit_roundoff(acc):
        bound = bound + unit_roundoff(out) * (1 + g) * magnitude + tiny(out)
    return bound


def safe_magnitude(n_terms: int, dtype_name: str) -> float:
    """Return the largest power of two ``M`` whose dot products cannot overflow ``dtype_name``.

    ``n_terms`` products of two values of magnitude at most ``M``, plus a term of at most ``M``,
    cannot overflow ``dtype_name`` or its accumulation:
    ``(n_terms + 1)·M² <= largest / 2`` (the factor 2 absorbs the rounding of the partial sums).
    """
    limit = min(largest(dtype_name), largest(accumulation_dtype(dtype_name)))
    return 2.0 ** math.floor(math.log2(math.sqrt(limit / (2 * (n_terms + 1)))))
