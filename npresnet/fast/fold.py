"""Batch-norm folding: one convolution with a bias instead of a convolution then a batch norm.

In inference a batch norm is an affine map per channel,
``bn(y) = gamma * (y - mean) / sqrt(var + eps) + beta = scale * y + shift``,
and a convolution is linear in its weight, so
``bn(conv(x, W)) = conv(x, scale * W) + shift``. The fold is computed in float64
and cast once to the model's dtype, so it adds a single rounding per weight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from ..backend import to_numpy

if TYPE_CHECKING:
    from .._typing import Array
    from ..nn import BatchNorm2d, Conv2d

__all__ = ["fold_batch_norm", "gemm_weight"]


def fold_batch_norm(conv: Conv2d, bn: BatchNorm2d | None) -> tuple[Array, Array]:
    """Fold ``bn`` (a ``BatchNorm2d`` in eval mode) into ``conv`` (a ``Conv2d``).

    Parameters
    ----------
    conv : npresnet.nn.Conv2d
        Weight of shape (O, C/groups, kh, kw), optional bias (O,).
    bn : npresnet.nn.BatchNorm2d or None
        ``None`` returns the convolution's own weight and bias (zeros if it has none).

    Returns
    -------
    weight : numpy.ndarray, float64, shape (O, C/groups, kh, kw)
    bias : numpy.ndarray, float64, shape (O,)
    """
    weight = to_numpy(conv.weight).astype(numpy.float64)
    O = weight.shape[0]
    bias = numpy.zeros(O) if conv.bias is None else to_numpy(conv.bias).astype(numpy.float64)
    if bn is None:
        return weight, bias
    if bn.num_features != O:
        raise ValueError(f"cannot fold {bn} into a convolution with {O} output channels")
    gamma = to_numpy(bn.weight).astype(numpy.float64)
    beta = to_numpy(bn.bias).astype(numpy.float64)
    mean = to_numpy(bn.running_mean).astype(numpy.float64)
    var = to_numpy(bn.running_var).astype(numpy.float64)
    scale = gamma / numpy.sqrt(var + bn.eps)  # (O,)
    return weight * scale[:, None, None, None], beta + (bias - mean) * scale


def gemm_weight(weight: Array, groups: int) -> Array:
    """Reorder a convolution weight for a channels-last matrix product.

    Parameters
    ----------
    weight : array, shape (O, C/groups, kh, kw)
    groups : int

    Returns
    -------
    array, shape (groups, kh*kw*C/groups, O/groups)
        Row ``(i*kw + j)*Cg + c`` multiplies input channel ``c`` at kernel offset ``(i, j)``,
        the order of the channels-last columns :class:`npresnet.fast.conv.FusedConv` builds (and the
        CUDA gather ``im2col_nhwc`` of :mod:`npresnet.fast.cuda`).
    """
    O, Cg, kh, kw = weight.shape
    w = weight.reshape(groups, O // groups, Cg, kh, kw)
    w = w.transpose(0, 3, 4, 2, 1)  # (groups, kh, kw, Cg, O/groups)
    return numpy.ascontiguousarray(w.reshape(groups, kh * kw * Cg, O // groups))
