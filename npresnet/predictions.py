"""From logits to predictions: the softmax and top-k that ``npresnet predict`` and ``npresnet embed`` report.

One home for the formula, so a row written by the Dask path equals what ``predict`` prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from ._args import check_int

if TYPE_CHECKING:
    from ._typing import Array

__all__ = ["softmax_topk"]


def softmax_topk(logits: Array, k: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Return the ``k`` most probable classes per row.

    Softmax in float64 after subtracting the row maximum; classes ordered by decreasing
    probability, ties by index (a stable sort).

    Parameters
    ----------
    logits : numpy.ndarray, shape (B, classes)
    k : int
        From 1 to ``classes``.

    Returns
    -------
    (numpy.ndarray int64 (B, k), numpy.ndarray float64 (B, k))
        Indices and their probabilities.

    Raises
    ------
    TypeError
        ``k`` is not an int.
    ValueError
        ``logits`` is not 2-D with at least one class, or ``k`` is outside 1 to ``classes``.
    """
    logits = numpy.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape (B, classes) with classes >= 1, got shape {logits.shape}")
    check_int("k", k, 1, logits.shape[1])
    logits = logits.astype(numpy.float64)  # (B, classes), a fresh copy
    logits -= logits.max(axis=1, keepdims=True)
    probs = numpy.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    top = numpy.argsort(-probs, axis=1, kind="stable")[:, :k]  # (B, k)
    return top, numpy.take_along_axis(probs, top, axis=1)
