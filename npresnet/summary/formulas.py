"""The receptive field of each layer of a model, from the formulas of :mod:`npresnet.formulas`.

The MAC counts and the receptive-field recurrence have their one home in
:mod:`npresnet.formulas` (re-exported here); this module adds :func:`layer_field`, which
reads each layer's window (kernel, stride, padding, dilation) off the layer object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..formulas import ReceptiveField, conv2d_macs, linear_macs
from ..nn import AdaptiveAvgPool2d, Conv2d, MaxPool2d, Module

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["conv2d_macs", "linear_macs", "ReceptiveField", "layer_field"]


def layer_field(module: Module, rf: ReceptiveField, in_shape: tuple[int, ...]) -> ReceptiveField:
    """Receptive field after ``module``, given the field ``rf`` of its input of shape ``in_shape`` (N, C, H, W)."""
    if isinstance(module, Conv2d):
        padding: Sequence[float]
        if module.padding == "valid":
            padding = (0, 0)
        elif isinstance(module.padding, str):  # "same" (conv2d refuses other strings): at stride 1,
            # (d·(k-1))/2 on each side, centred
            padding = tuple((d * (k - 1)) / 2 for k, d in zip(module.kernel_size, module.dilation))
        else:
            padding = module.padding
        return rf.grow(module.kernel_size, module.stride, padding, module.dilation)
    if isinstance(module, MaxPool2d):
        return rf.grow(module.kernel_size, module.stride, module.padding, module.dilation)
    if isinstance(module, AdaptiveAvgPool2d):
        # Output o of n bins: widest bin ceil(n/o), bins start n//o apart (exact when o divides n,
        # always for global pooling, o = 1, whose single bin is the whole input).
        requested = module.output_size if isinstance(module.output_size, (tuple, list)) else (module.output_size,) * 2
        n = in_shape[2:]
        out = [o if o is not None else size for o, size in zip(requested, n)]
        kernel = [-(-size // o) for size, o in zip(n, out)]
        stride = [max(size // o, 1) for size, o in zip(n, out)]
        return rf.grow(kernel, stride, (0, 0))
    return rf  # batch norm, ReLU, Linear: elementwise or all-to-all, the field does not change
