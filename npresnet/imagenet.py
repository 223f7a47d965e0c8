r"""ImageNet-1k class names and the inference preset's constants.

``data/imagenet_classes.txt`` holds the 1000 class names, one per line, in class-index
order. It was generated once, offline, from the metadata torchvision ships with its
weight enums (no download involved)::

    python -c "import torchvision.models as M; \
        print('\n'.join(M.ResNet18_Weights.IMAGENET1K_V1.meta['categories']))" \
        > npresnet/data/imagenet_classes.txt

Every torchvision ImageNet-1k classifier shares this list.
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["imagenet_classes", "IMAGENET_MEAN", "IMAGENET_STD"]

# Per-channel statistics of the ImageNet training set (RGB), as torchvision's presets use.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """Return the 1000 ImageNet-1k class names; ``imagenet_classes()[i]`` names logit ``i``."""
    text = resources.files("npresnet").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(text.splitlines())
    if len(names) != 1000:  # a damaged installation; say so instead of mislabelling predictions
        raise RuntimeError(f"npresnet/data/imagenet_classes.txt has {len(names)} lines, expected 1000")
    return names
