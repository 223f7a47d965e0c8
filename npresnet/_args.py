"""Checks for scalar arguments of public functions: one home for "an int in a range" and "a finite number".

Each check raises ``TypeError`` for a value of the wrong kind (a bool counts as the wrong
kind: ``True`` is not a count or a rate) and ``ValueError`` for one out of range, with a
one-line message naming the argument, the range and the value. Pure Python, no arrays.
"""

from __future__ import annotations

import math
import numbers
from typing import TypeGuard

__all__ = ["check_int", "check_real", "is_int", "is_real"]


def is_int(value: object) -> TypeGuard[int]:
    """Return whether ``value`` is an integer (a Python or NumPy int: any ``numbers.Integral``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[float]:
    """Return whether ``value`` is a real number (any ``numbers.Real``: ints and NumPy scalars too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer from ``low`` to ``high`` (inclusive; no upper bound if None).

    Raises
    ------
    TypeError
        ``value`` is not an integer (floats and bools included).
    ValueError
        ``value`` is outside the range.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"from {low:,} to {high:,}" if high is not None else f">= {low:,}"
        raise ValueError(f"{name} must be an int {bound}, got {value:,}")
    return value


def check_real(name: str, value: object, low: float = -math.inf, *, above: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number ``>= low`` (``> low`` when ``above``).

    Raises
    ------
    TypeError
        ``value`` is not a real number (bools included).
    ValueError
        ``value`` is NaN, infinite, too large for a float, or below the bound.
    """
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond 1.8e308
        result = math.inf
    if not math.isfinite(result):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if result < low or (above and result == low):
        raise ValueError(f"{name} must be {'>' if above else '>='} {low:g}, got {value!r}")
    return result
