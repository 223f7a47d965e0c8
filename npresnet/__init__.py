"""npresnet: ResNet from first principles in NumPy/CuPy.

>>> import numpy as np, npresnet
>>> model = npresnet.resnet18(rng=0)
>>> model(np.zeros((1, 3, 224, 224), dtype=np.float32)).shape
(1, 1000)

The tool modules are imported on first use, so ``import npresnet`` stays fast and needs only
NumPy: ``npresnet.fast.fuse(model)`` or ``npresnet.summary.summarize("resnet50")`` work after
``import npresnet`` alone (``npresnet.distributed`` needs the ``distributed`` extra).
"""

import importlib
import types

from . import functional, nn
from .backend import available_backends, get_array_module, to_backend, to_numpy
from .errors import FetchError, ImageError, NpresnetError, WeightsError
from .models import (
    ARCHITECTURES,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
    wide_resnet50_2,
    wide_resnet101_2,
)
from .nn import capture_intermediates
from .shapes import conv_output_size
from .weights import load_weights, save_weights

__version__ = "0.1.0"

# Submodules loaded by attribute access (PEP 562): their own dependencies (Pillow, Dask, ...) load only then.
_LAZY_SUBMODULES = frozenset(
    {
        "distributed",
        "draw",
        "fast",
        "fetch",
        "imagenet",
        "optim",
        "predictions",
        "preprocess",
        "summary",
        "testing",
        "train",
    }
)


def __getattr__(name: str) -> types.ModuleType:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # also binds it here, so this runs once
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_SUBMODULES)


__all__ = [
    "functional",
    "nn",
    "available_backends",
    "get_array_module",
    "to_backend",
    "to_numpy",
    "conv_output_size",
    "NpresnetError",
    "WeightsError",
    "ImageError",
    "FetchError",
    "capture_intermediates",
    "load_weights",
    "save_weights",
    "ARCHITECTURES",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]
