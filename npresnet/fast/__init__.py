"""The optimised inference path: batch norm folded, channels-last activations, reused buffers.

>>> import numpy as np, npresnet
>>> from npresnet.fast import fuse
>>> fused = fuse(npresnet.resnet18(rng=0))
>>> fused(np.zeros((1, 3, 64, 64), dtype=np.float32)).shape
(1, 1000)

Modules: ``fold`` (batch-norm folding and weight layout), ``conv`` (channels-last
convolution in chunks), ``winograd`` (Winograd F(4×4,3×3) or F(2×2,3×3) for stride-1 3×3 convolutions),
``pool`` (the stem's max pool and ReLU, separable, in bands),
``model`` (:class:`FusedResNet`, :func:`fuse`), ``device`` (the GPU-native steps on
CuPy: one gather kernel, one cuBLAS product and one epilogue kernel per convolution),
``cuda`` (the kernels), ``profile`` (per-layer timings, ``fused.profile(x)``).
The workspace bound is :mod:`npresnet.workspace`'s ``workspace_bytes``.
"""

from .model import FusedResNet, fuse
from .profile import LayerTime

__all__ = ["fuse", "FusedResNet", "LayerTime"]
