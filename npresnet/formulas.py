"""The one home of two formulas: multiply-accumulate counts and the receptive-field recurrence.

Pure integer arithmetic, no arrays and no layers, so the summary (:mod:`npresnet.summary`)
and the fused path (:mod:`npresnet.fast`) both use it without loading each other.

MACs
    One multiply-accumulate per weight per output element of convolutions and fully
    connected layers, as torchvision's published "GFLOPS" (which are MACs: ResNet-18 at
    224×224 is 1.81 G). Batch norm, ReLU, pooling and the residual addition are not
    counted. FLOPs = 2 × MACs.
Receptive field
    Per axis: ``size`` (pixels of the input that one output element sees), ``jump``
    (input pixels between neighbouring output elements) and ``start`` (centre of
    element 0's field, in input pixel coordinates). A layer with kernel ``k``, stride
    ``s``, padding ``p``, dilation ``d`` maps ``size → size + (k-1)·d·jump``,
    ``jump → jump·s``, ``start → start + ((k-1)·d/2 - p)·jump``. The field is the
    theoretical one, on an unbounded input: near the border part of it lies in the
    padding. A residual addition's field is the union of the fields of its two
    operands; in a ResNet block both are centred alike, so this is the max of the two
    sizes, i.e. the main path's. Global average pooling sees its whole input.
    Which window each layer contributes is :func:`npresnet.summary.formulas.layer_field`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["conv2d_macs", "linear_macs", "ReceptiveField"]


def conv2d_macs(output_shape: tuple[int, ...], in_channels: int, kernel_size: tuple[int, int], groups: int = 1) -> int:
    """Multiply-accumulates of a convolution: each output element sums ``C_in/groups · kh · kw`` products.

    Parameters
    ----------
    output_shape : tuple of int, (N, C_out, H_out, W_out)
    in_channels, groups : int
    kernel_size : (kh, kw)
    """
    kh, kw = kernel_size
    return math.prod(output_shape) * (in_channels // groups) * kh * kw


def linear_macs(output_shape: tuple[int, ...], in_features: int) -> int:
    """Multiply-accumulates of ``x @ W.T``: each output element sums ``in_features`` products."""
    return math.prod(output_shape) * in_features


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output element, per axis ``(h, w)``; see the module docstring."""

    size: tuple[int, ...] = (1, 1)
    jump: tuple[int, ...] = (1, 1)
    start: tuple[float, ...] = (0.0, 0.0)

    def grow(
        self,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[float],
        dilation: Sequence[int] = (1, 1),
    ) -> ReceptiveField:
        """Return the field after a sliding-window layer (convolution or pooling) — the recurrence."""
        size, jump, start = [], [], []
        for r, j, c, k, s, p, d in zip(self.size, self.jump, self.start, kernel_size, stride, padding, dilation):
            size.append(r + (k - 1) * d * j)
            jump.append(j * s)
            start.append(c + ((k - 1) * d / 2 - p) * j)
        return ReceptiveField(tuple(size), tuple(jump), tuple(start))

    def union(self, other: ReceptiveField) -> ReceptiveField:
        """Return the field of ``a + b`` (elementwise): the union of both operands' fields."""
        size, start = [], []
        for r1, c1, r2, c2 in zip(self.size, self.start, other.size, other.start):
            lo = min(c1 - (r1 - 1) / 2, c2 - (r2 - 1) / 2)
            hi = max(c1 + (r1 - 1) / 2, c2 + (r2 - 1) / 2)
            size.append(int(round(hi - lo)) + 1)
            start.append((lo + hi) / 2)
        jump = tuple(max(a, b) for a, b in zip(self.jump, other.jump))  # equal for same-shape operands
        return ReceptiveField(tuple(size), jump, tuple(start))

    def span(self, index: int, axis: int) -> tuple[int, int]:
        """First and last input pixel (inclusive, unclipped) seen by output element ``index`` along ``axis``."""
        centre = self.start[axis] + index * self.jump[axis]
        half = (self.size[axis] - 1) / 2
        return int(round(centre - half)), int(round(centre + half))
