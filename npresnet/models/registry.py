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

from .resnet import ARCHITECTURES

__all__ = [
    "check_arch",
    "build_model",
    "expected_shapes",
    "match_architectures",
    "identify_architecture",
    "describe_fit",
]

_FC_KEYS = ("fc.weight", "fc.bias")  # sized by num_classes, which a file chooses freely


def check_arch(arch) -> str:
    """Return ``arch`` if it names an architecture; ValueError suggesting close names otherwise."""
    if arch not in ARCHITECTURES:
        close = difflib.get_close_matches(str(arch).lower(), ARCHITECTURES, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown architecture {arch!r}{hint} (known: {', '.join(ARCHITECTURES)})")
    return arch


def build_model(arch: str, **kwargs):
    """Build ``npresnet.ARCHITECTURES[arch](**kwargs)``, uninitialised unless ``init=True`` is passed.

    Callers need the architecture (its shapes, or arrays about to be loaded), not random
    weights, so nothing is drawn. An unknown name gets a ValueError suggesting close ones.
    """
    kwargs.setdefault("init", False)
    return ARCHITECTURES[check_arch(arch)](**kwargs)


@functools.lru_cache(maxsize=1)
def _all_expected_shapes() -> tuple:
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


def expected_shapes(arch: str) -> dict:
    """``{key: shape}`` of ``arch``'s state dict at 1000 classes (a fresh dict each call)."""
    check_arch(arch)
    return dict(dict(_all_expected_shapes())[arch])


def _fits(key, shape, expected) -> bool:
    if key not in expected:
        return False
    if key in _FC_KEYS:  # any number of classes; the input width of fc must match
        return len(shape) == len(expected[key]) and tuple(shape[1:]) == expected[key][1:]
    return tuple(shape) == expected[key]


def match_architectures(state_dict) -> list[tuple[str, int, int]]:
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


def identify_architecture(state_dict) -> str | None:
    """The architecture every key and shape of ``state_dict`` fits, or None."""
    arch, fitting, total = match_architectures(state_dict)[0]
    return arch if fitting == total else None


def describe_fit(state_dict, arch: str) -> str:
    """One sentence for an error message: which architecture ``state_dict`` looks like, if not ``arch``."""
    best, fitting, total = match_architectures(state_dict)[0]
    if fitting < total / 2:
        return "it fits none of the ten architectures"
    if best == arch:
        return f"it is closest to {arch} itself ({fitting} of {total} keys fit): a damaged or edited file?"
    if fitting == total:
        return f"the file looks like {best} weights: every key and shape fits {best}"
    return f"the closest architecture is {best} ({fitting} of {total} keys fit)"
