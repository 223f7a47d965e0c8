"""The emulation's own rule: float64 that nobody asked for raises :class:`Float64PromotionError`.

An operation on floating arrays narrower than float64 that produces float64 without an explicit
``dtype`` is float64 creeping into a float32 computation; CuPy would silently run it at float64
speed. Inside :func:`._counters.allow_float64` the check is off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from . import _counters

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Float64PromotionError", "check_precision"]


class Float64PromotionError(TypeError):
    """An operation on float32 (or narrower) operands produced float64 without being asked to."""


def check_precision(where: str, operands: Sequence[object], result: object, explicit_dtype: bool = False) -> None:
    """Raise :class:`Float64PromotionError` when float64 appears that nobody asked for.

    That is when ``result`` (or, for a tuple, its first element) is float64 (or complex128) but a
    floating operand is narrower and no ``dtype`` was asked for. Python floats are weak scalars
    (NEP 50, as CuPy's ``numpy_dtype_from_pyscalar`` marks them) and never widen an array, so they
    do not count.
    """
    if explicit_dtype or _counters.float64_allowed():
        return
    dtype: numpy.dtype[Any] | None = getattr(result[0] if isinstance(result, tuple) else result, "dtype", None)
    if dtype is None or dtype.kind not in "fc" or dtype.itemsize < (8 if dtype.kind == "f" else 16):
        return
    narrow = [
        str(o.dtype)
        for o in operands
        if isinstance(o, (numpy.ndarray, numpy.generic)) and o.dtype.kind in "fc" and o.dtype.itemsize < dtype.itemsize
    ]
    if narrow:
        raise Float64PromotionError(
            f"{where}: {dtype} result from {', '.join(narrow)} operands without an explicit dtype "
            f"(float64 crept into a narrower float computation; cast with astype if it is meant)"
        )
