"""Cases: one call of a convolution or pooling, with its arrays, as the kit's strategies draw it.

A :class:`Case` holds the positional arrays (``.args``), the hyper-parameters as drawn
(``.kwargs``: an int, a 1-tuple, a pair or a string, exactly as the function will receive them),
and for conv2d a ``.grad_output`` for the backward check. Its ``repr`` is one line with every
array's dtype, shape, layout and, when small, values, so a failure message shows the whole case.
This module also has the pieces the strategies draw with: array values, memory layouts, and
hyper-parameters in each of torch's argument forms.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import numpy
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from hypothesis.strategies import DrawFn, SearchStrategy

    from .._typing import Array
    from .oracles import Ints

__all__ = ["Case", "FORMS"]

#: A call's keyword arguments, torch's names to the values as drawn or pinned: ints, tuples, strings,
#: bools or None. The values are ``Any``: each is forwarded unchanged to a function (the user's, an
#: oracle) that has its own type for that keyword, and a pinned value is the user's, unchecked.
Kwargs: TypeAlias = "dict[str, Any]"

FORMS = ("int", "1-tuple", "pair", "string", "pair-with-None")
_SHOWN_VALUES = 64  # arrays up to this many elements show their values in a repr


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Case:
    """One call: ``fn(*case.args, **case.kwargs)`` with torch.nn.functional's signature for ``op``.

    Attributes
    ----------
    op : str
        ``"conv2d"``, ``"conv_transpose2d"``, ``"max_pool2d"``, ``"avg_pool2d"``,
        ``"adaptive_max_pool2d"`` or ``"adaptive_avg_pool2d"``.
    args : tuple
        ``(input, weight, bias)`` for convolutions (``bias`` may be None), ``(input,)`` for pools;
        NumPy arrays, possibly non-contiguous views.
    kwargs : dict
        Hyper-parameters as drawn. A parameter pinned to torch's default is left out, so a
        function that lacks it can still be checked.
    grad_output : ndarray or None
        conv2d only: the output's gradient for :func:`assert_conv2d_backward_matches`.
    reason : str or None
        Invalid cases only: what torch refuses about them.
    """

    op: str
    args: tuple[Array] | tuple[Array, Array, Array | None]
    kwargs: Kwargs
    grad_output: Array | None = None
    reason: str | None = None

    @property
    def dtype(self) -> numpy.dtype[Any]:
        """The input's dtype (every array of a valid case has it)."""
        return self.input.dtype

    @property
    def kind(self) -> str | None:
        """``"max"`` or ``"avg"`` for a pooling case, else None."""
        for kind in ("max", "avg"):
            if self.op.endswith(f"{kind}_pool2d"):
                return kind
        return None

    @property
    def input(self) -> Array:
        """The input array: the first positional argument."""
        return self.args[0]

    def __repr__(self) -> str:
        """Return the case as a call: the op, the array shapes and dtypes, the keyword arguments."""
        names = ("input", "weight", "bias") if "conv" in self.op else ("input",)
        parts = [f"{name}={describe_array(a)}" for name, a in zip(names, self.args)]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        if self.grad_output is not None:
            parts.append(f"grad_output={describe_array(self.grad_output)}")
        if self.reason is not None:
            parts.append(f"refused because: {self.reason}")
        return f"{self.op} case({', '.join(parts)})"


def conv_args(case: Case) -> tuple[Array, Array, Array | None]:
    """Return ``(input, weight, bias)``, the arguments of a convolution case (``bias`` may be None)."""
    # a case's op says which form its args have; callers have checked the op
    return cast("tuple[Array, Array, Array | None]", case.args)


def describe_array(a: object) -> str:
    """``float32(2, 3) [[...]]`` on one line: dtype, shape, strides when not C-contiguous, values when small."""
    if a is None:
        return "None"
    if not isinstance(a, numpy.ndarray):
        return f"{type(a).__name__}{tuple(getattr(a, 'shape', ()))}"
    text = f"{a.dtype.name}{a.shape}"
    if not a.flags.c_contiguous:
        text += f" view with strides {a.strides}"
    if a.size <= _SHOWN_VALUES:
        values = numpy.array2string(a, separator=", ", floatmode="unique", max_line_width=10**9, threshold=10**9)
        text += " " + re.sub(r"\s+", " ", values.replace("\n", ""))
    return text


# --------------------------------------------------------------------------- values
def elements(
    dtype: numpy.dtype[Any], magnitude: float, allow_nan: bool = False, allow_infinity: bool = False
) -> SearchStrategy[float]:
    """Draw floats of ``dtype`` in ``[-magnitude, magnitude]``, and NaN / ±inf when allowed.

    Zeros and subnormals included.
    """
    width = cast("Literal[16, 32, 64]", 8 * numpy.dtype(dtype).itemsize)  # float16, float32 or float64
    finite = st.floats(-magnitude, magnitude, width=width, allow_subnormal=True)
    special = ([st.just(math.nan)] if allow_nan else []) + (
        [st.sampled_from([math.inf, -math.inf])] if allow_infinity else []
    )
    return st.one_of(finite, *special)


def draw_array(
    draw: DrawFn,
    shape: tuple[int, ...],
    dtype: numpy.dtype[Any],
    magnitude: float,
    *,
    allow_nan: bool = False,
    allow_infinity: bool = False,
    noncontiguous: bool = False,
) -> Array:
    """Draw an array of ``shape`` and ``dtype``, maybe as a non-contiguous view.

    With ``noncontiguous``, maybe a transposed or strided view (positive, nonzero strides) whose
    gaps hold NaN, so reading them shows.
    """
    # fill=nothing(): every element is drawn (and shrunk) on its own, not a few over a constant background
    values = draw(
        hnp.arrays(dtype, shape, elements=elements(dtype, magnitude, allow_nan, allow_infinity), fill=st.nothing())
    )
    if not noncontiguous or not shape:
        return values
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))  # strided shrinks to the smallest case
    if layout == "transposed" and len(shape) >= 2:
        perm = draw(st.permutations(range(len(shape))))
        base = numpy.ascontiguousarray(values.transpose(perm))
        permuted: Array = base.transpose(numpy.argsort(perm))  # the same values, axes in memory permuted
        return permuted
    if layout == "strided":
        steps = [draw(st.integers(1, 2)) for _ in shape]
        steps[-1] = 2  # at least the innermost axis is strided
        base = numpy.full([n * s for n, s in zip(shape, steps)], numpy.nan, dtype=dtype)
        view = base[tuple(slice(None, None, s) for s in steps)]
        view[...] = values
        return view
    return values


# --------------------------------------------------------------------------- hyper-parameters
def check_forms(forms: Iterable[str]) -> tuple[str, ...]:
    forms = tuple(forms)
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise ValueError(f"forms must be a non-empty subset of {FORMS}, got {forms!r}")
    return forms


def as_pair(value: object, name: str) -> tuple[int, int]:
    """``(h, w)`` from a drawn or pinned int, 1-tuple or pair."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return (value[0], value[0])
        if len(value) == 2:
            return (value[0], value[1])
    elif isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    raise ValueError(f"{name} must be pinned to an int, a 1-tuple or a pair, got {value!r}")


def draw_ints(
    draw: DrawFn, forms: tuple[str, ...], low: int, high: int | tuple[int, ...]
) -> tuple[Ints, tuple[int, int]]:
    """Draw one hyper-parameter as torch accepts it; return ``(as drawn, (h, w))``.

    An int, a 1-tuple or a pair of ints in [low, high], in a form from ``forms``. ``high`` may be a
    pair of per-axis limits.
    """
    highs = high if isinstance(high, tuple) else (high, high)
    shapes = [f for f in ("int", "1-tuple", "pair") if f in forms]
    if not shapes:
        raise ValueError(f"forms {forms!r} leave no way to pass an integer hyper-parameter; add 'int' or 'pair'")
    form = draw(st.sampled_from(shapes))
    if form == "pair":
        h, w = draw(st.integers(low, max(low, highs[0]))), draw(st.integers(low, max(low, highs[1])))
        return (h, w), (h, w)
    v = draw(st.integers(low, max(low, min(highs))))
    return (v if form == "int" else (v,)), (v, v)


class Pins:
    """The keyword pins a strategy was given: ``name -> value`` for its hyper-parameters, checked."""

    def __init__(self, pins: dict[str, object], allowed: tuple[str, ...], strategy: str) -> None:
        unknown = sorted(set(pins) - set(allowed))
        if unknown:
            raise TypeError(f"{strategy}() got unexpected keyword(s) {unknown}; hyper-parameters it pins: {allowed}")
        self.values = dict(pins)

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def get(self, name: str) -> object:
        return self.values[name]

    def draw(self, draw: DrawFn, name: str, strategy: SearchStrategy[object]) -> object:
        """Return the pinned value, or one drawn from ``strategy``."""
        return self.values[name] if name in self.values else draw(strategy)


def keep_kwargs(kwargs: Kwargs, pins: Pins, defaults: Mapping[str, object]) -> Kwargs:
    """``kwargs`` without the parameters pinned to torch's default (so they are not passed at all)."""
    return {k: v for k, v in kwargs.items() if not (k in pins and k in defaults and pins.get(k) == defaults[k])}
