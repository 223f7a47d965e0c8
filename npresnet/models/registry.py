"""Architectures by name: check a name, build a model, and tell which architecture a state dict is for.

The tools (``npresnet predict``, ``convert``, ``summary``) take an architecture as a
string; this module is where such a string is checked (with close names suggested)
and turned into a model. A state dict is identified by its keys and shapes: the ten
architectures differ in their key sets (block counts) or, for equal key sets, in
shapes (ResNeXt's grouped 3×3, Wide ResNet's doubled width).
"""

from __future__ import annotations

import difflib
import functools
from typing import TYPE_CHECKING

from .resnet import ARCHITECTURES

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .._typing import Array
    from .resnet import ResNet

__all__ = [
    "check_arch",
    "build_model",
    "expected_shapes",
    "match_architectures",
    "identify_architecture",
    "describe_fit",
    "fit_state_dict",
]

_FC_KEYS = ("fc.weight", "fc.bias")  # sized by num_classes, which a file chooses freely


def check_arch(arch: object) -> str:
    """Return ``arch`` if it names an architecture; ValueError suggesting close names otherwise."""
    if arch not in ARCHITECTURES:
        close = difflib.get_close_matches(str(arch).lower(), ARCHITECTURES, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown architecture {arch!r}{hint} (known: {', '.join(ARCHITECTURES)})")
    return arch


def build_model(arch: str, **kwargs: Any) -> ResNet:
    """Build ``npresnet.ARCHITECTURES[arch](**kwargs)``, uninitialised unless ``init=True`` is passed.

    Callers need the architecture (its shapes, or arrays about to be loaded), not random
    weights, so nothing is drawn. An unknown name gets a ValueError suggesting close ones.
    """
    kwargs.setdefault("init", False)
    return ARCHITECTURES[check_arch(arch)](**kwargs)


@functools.lru_cache(maxsize=1)
def _all_expected_shapes() -> tuple[tuple[str, tuple[tuple[str, tuple[int, ...]], ...]], ...]:
    """``((arch, ((key, shape), ...)), ...)`` for the ten architectures at 1000 classes, computed once.

    Every model is built with ``init=False``: its arrays are zeros that are never
    written, which the operating system does not back with memory until touched, so
    this costs tens of milliseconds and a few MB (float16 halves what is reserved).
    All ten are held until their shapes are read, so no freed block is reused and zeroed.
    """
    models = {arch: build(init=False, dtype="float16") for arch, build in ARCHITECTURES.items()}
    return tuple(
        (arch, tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())) for arch, model in models.items()
    )


def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of ``arch``'s state dict at 1000 classes (a fresh dict each call)."""
    check_arch(arch)
    return dict(dict(_all_expected_shapes())[arch])


def _fits(key: str, shape: Sequence[int], expected: Mapping[str, tuple[int, ...]]) -> bool:
    if key not in expected:
        return False
    if key in _FC_KEYS:  # any number of classes; the input width of fc must match
        return len(shape) == len(expected[key]) and tuple(shape[1:]) == expected[key][1:]
    return bool(tuple(shape) == expected[key])


def match_architectures(state_dict: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """How well ``state_dict`` fits each architecture, best first.

    Parameters
    ----------
    state_dict : mapping of str to array (anything with ``.shape``)

    Returns
    -------
    list of (arch, fitting, total)
        ``fitting``: keys of ``state_dict`` that ``arch`` has with the same shape (the
        classifier may have any number of classes); ``total``: the keys of both together.
        ``fitting == total`` means every key and shape fits.
    """
    shapes = {k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}
    scores = []
    for arch, items in _all_expected_shapes():
        expected = dict(items)
        fitting = sum(_fits(k, s, expected) for k, s in shapes.items())
        total = len(expected) + len(shapes) - fitting
        scores.append((arch, fitting, total))
    scores.sort(key=lambda item: -item[1] / item[2])  # stable: ties keep ARCHITECTURES' order
    return scores


def identify_architecture(state_dict: Mapping[str, Any]) -> str | None:
    """Return the architecture every key and shape of ``state_dict`` fits, or None."""
    arch, fitting, total = match_architectures(state_dict)[0]
    return arch if fitting == total else None


def describe_fit(state_dict: Mapping[str, Any], arch: str) -> str:
    """One sentence for an error message: which architecture ``state_dict`` looks like, if not ``arch``."""
    best, fitting, total = match_architectures(state_dict)[0]
    if fitting < total / 2:
        return "it fits none of the ten architectures"
    if best == arch:
        return f"it is closest to {arch} itself ({fitting} of {total} keys fit): a damaged or edited file?"
    if fitting == total:
        return f"the file looks like {best} weights: every key and shape fits {best}"
    return f"the closest architecture is {best} ({fitting} of {total} keys fit)"


def fit_state_dict(arch: str, state_dict: Mapping[str, Array], source: str = "state_dict") -> ResNet:
    """``arch`` built with its classifier sized by ``state_dict``, holding its weights.

    The one home of "does this file fit this architecture", for ``predict``, ``convert --arch``
    and the Dask path alike: the architecture is checked first, then every key and shape;
    a misfit is summarised (counts and a few keys of each kind) and the message says which
    architecture the file looks like, from its keys and shapes.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`.
    state_dict : mapping of str to array
    source : str
        What to call the weights in messages (e.g. the file's path).

    Raises
    ------
    ValueError
        Unknown ``arch`` (close names suggested).
    WeightsError
        ``"<source> does not fit <arch> (...)"``: missing, unexpected or mis-shaped keys, values
        that cannot be loaded, or floating values that are NaN or infinite (or a negative running
        variance): no trained network holds them, and every output would be NaN.
    """
    from ..errors import WeightsError
    from ..nn import check_state_dict, state_dict_report

    check_arch(arch)
    fc = state_dict.get("fc.weight")
    # An fc.weight holding data sizes the classifier (its bytes are already in memory); an empty
    # one, e.g. (10**9, 0), must not make us allocate a billion-class layer.
    num_classes = fc.shape[0] if fc is not None and getattr(fc, "ndim", 0) == 2 and fc.size > 0 else 1000
    model = build_model(arch, num_classes=num_classes)
    missing, unexpected, problems = check_state_dict(model.state_dict(), state_dict)
    if missing or unexpected or problems:
        lines = state_dict_report(missing, unexpected, problems, limit=4)
        count = len(missing) + len(unexpected) + len(problems)
        raise WeightsError(
            f"{source} does not fit {arch} ({count} problem(s): {len(problems)} mis-shaped or unloadable, "
            f"{len(missing)} missing, {len(unexpected)} unexpected key(s)):\n  "
            + "\n  ".join(lines)
            + f"\n{describe_fit(state_dict, arch)}"
        )
    bad = _unusable_values(state_dict)
    if bad:
        raise WeightsError(
            f"{source} does not fit {arch}: {len(bad)} tensor(s) with values no trained network holds, "
            f"which would make every output NaN: {'; '.join(bad[:4])}{'; ...' if len(bad) > 4 else ''}"
        )
    try:
        model.load_state_dict(state_dict)
    except WeightsError as err:
        raise WeightsError(f"{source} does not fit {arch}: {err}") from None
    return model


def _unusable_values(state_dict: Mapping[str, Array]) -> list[str]:
    """``"key: what"`` for each floating tensor with NaN or infinity (as float32), and each running variance below 0."""
    from ..backend import get_array_module

    bad = []
    for key, array in state_dict.items():
        if array.dtype.kind != "f" or array.size == 0:
            continue
        xp = get_array_module(array)
        # as the float32 model will hold them: a float64 1e39 becomes infinity
        nonfinite = int(array.size - xp.count_nonzero(xp.isfinite(array.astype(xp.float32))))
        if nonfinite:
            bad.append(f"{key}: {nonfinite:,} NaN or infinite value(s)")
        elif key.endswith("running_var") and bool((array < 0).any()):
            bad.append(f"{key}: {int((array < 0).sum()):,} negative variance(s)")
    return bad
