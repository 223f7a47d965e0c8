"""State dicts: a module tree's arrays by torchvision key, and loading them back with every check first.

:class:`~npresnet.nn.module.Module` calls these for ``state_dict()`` and
``load_state_dict()``; :func:`check_state_dict` and :func:`state_dict_report` are also
public, for tools (``npresnet convert``) that report on weights before loading them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

import numpy

from ..backend import backend_name, get_array_module, to_backend, to_numpy
from ..errors import WeightsError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from numpy.typing import DTypeLike

    from .._typing import Array

__all__ = ["collect_state_dict", "load_state_dict", "check_state_dict", "state_dict_report"]


class _Tree(Protocol):
    """What these functions need of a module tree (a :class:`~npresnet.nn.module.Module`)."""

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Any]]: ...

    def get_submodule(self, target: str) -> Any: ...


def collect_state_dict(model: _Tree) -> OrderedDict[str, Array]:
    """Arrays by torchvision key, in torchvision's order (per module: parameters, buffers, children)."""
    out: OrderedDict[str, Array] = OrderedDict()
    for prefix, module in model.named_modules():
        for name in module._parameter_names + module._buffer_names:
            array = getattr(module, name)
            if array is not None:
                out[f"{prefix}.{name}" if prefix else name] = array
    return out


def load_state_dict(
    model: _Tree, state_dict: Mapping[str, Array], strict: bool = True, check_finite: bool = False
) -> tuple[list[str], list[str]]:
    """Copy arrays from ``state_dict`` into ``model``, checking every key and shape first.

    See :meth:`npresnet.nn.Module.load_state_dict` for the parameters, return value and errors.
    """
    own = collect_state_dict(model)
    missing, unexpected, problems = check_state_dict(own, state_dict, check_finite=check_finite)
    lines = state_dict_report(missing, unexpected, problems) if strict else state_dict_report([], [], problems)
    count = len(problems) + (len(missing) + len(unexpected) if strict else 0)
    if lines:
        raise WeightsError(
            f"state_dict does not fit {type(model).__name__} ({count} problem(s)):\n  " + "\n  ".join(lines)
        )
    for key, target in own.items():
        if key not in state_dict:
            continue
        module_name, _, attr = key.rpartition(".")
        module = model.get_submodule(module_name)
        value = to_numpy(state_dict[key]).astype(target.dtype, copy=True)
        object.__setattr__(module, attr, to_backend(value, backend_name(target)))
    return missing, unexpected


def check_state_dict(
    expected: Mapping[str, Array], state_dict: Mapping[str, Any], check_finite: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """Compare ``state_dict`` against a model's own ``expected`` arrays.

    Returns
    -------
    (missing, unexpected, problems) : three lists of str
        Keys absent from ``state_dict``, keys the model does not have, and one line per
        entry whose shape, dtype or values cannot be loaded.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    problems = []
    for key, target in expected.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        shape = tuple(getattr(value, "shape", ()))
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            problems.append(f"{key}: expected an array, got {type(value).__name__}")
            continue
        if shape != tuple(target.shape):
            problems.append(f"{key}: shape {shape} in state_dict, model expects {tuple(target.shape)}")
            continue
        if not _can_cast(dtype, target.dtype):
            problems.append(f"{key}: dtype {dtype} cannot be loaded into {target.dtype}")
            continue
        if check_finite and dtype.kind == "f":
            # Check the values the model will hold: 1e39 in float64 is finite but becomes inf in float32.
            xp = get_array_module(value)
            with numpy.errstate(over="ignore"):
                cast = xp.asarray(value).astype(target.dtype, copy=False)
            if not bool(xp.isfinite(cast).all()):
                problems.append(f"{key}: contains NaN or infinite values (as {numpy.dtype(target.dtype)})")
    return missing, unexpected, problems


def state_dict_report(
    missing: list[str], unexpected: list[str], problems: list[str], limit: int | None = 8
) -> list[str]:
    """Return the lines an error lists for :func:`check_state_dict`'s findings.

    Problems first, then missing, then unexpected keys.

    A kind with more than ``limit`` entries shows its first ``limit`` and a count of the
    rest (ResNet-50 weights offered to ResNet-18 would otherwise list 200 keys);
    ``limit=None`` lists everything.
    """
    lines = []
    for kind, entries in (
        ("mis-shaped or unloadable", problems),
        ("missing", [f"missing key: {k}" for k in missing]),
        ("unexpected", [f"unexpected key: {k}" for k in unexpected]),
    ):
        if limit is not None and len(entries) > limit:
            entries = entries[:limit] + [f"... and {len(entries) - limit} more {kind} keys ({len(entries)} in all)"]
        lines += entries
    return lines


def _can_cast(source: DTypeLike, target: DTypeLike) -> bool:
    """Floating into floating (any precision), integers into integers; nothing else.

    Integer weights for a floating parameter mean the file is not what it claims to be.
    """
    have, want = numpy.dtype(source), numpy.dtype(target)
    if want.kind == "f":
        return have.kind == "f"
    if want.kind in "iu":
        return have.kind in "iu"
    return bool(have == want)
