"""Stateless layer functions with the signatures and NCHW semantics of ``torch.nn.functional``.

Every function takes NumPy or CuPy arrays and computes with the array module of
its inputs (:func:`npresnet.backend.get_array_module`); none imports NumPy for
array math. Inputs are ``(N, C, H, W)`` batches or, as in PyTorch, unbatched
``(C, H, W)`` images. Output sizes come from :func:`npresnet.shapes.conv_output_size`.

One module per family, each in the order output shape, forward, backward:

- ``columns``: the textbook im2col (pad once, one strided slice per kernel offset)
  and its adjoint col2im;
- ``conv``: conv2d as im2col + one matrix product per group, and its backward;
- ``pooling``: max and average pooling over the same window slices, separably
  (``kh + kw`` slice passes), and (re-exported from ``adaptive_pool``) adaptive average pooling;
- ``normalization``: batch normalisation;
- ``dense``: linear and ReLU;
- ``loss``: log_softmax and cross entropy;
- ``_checks``: the argument checks they share, with the size limits :data:`MAX_ELEMENTS`
  and :data:`MAX_CHUNKS` (defined in :mod:`npresnet.limits`), enforced before anything is allocated.

Each layer's argument checks and output size live in one function that works on
shapes alone (:func:`conv2d_output_shape`, :func:`max_pool2d_output_shape`, ...):
the layer calls it before computing, and the shape-only pass
(:class:`npresnet.nn.TensorSpec`) calls it instead of computing, so both accept
and refuse the same arguments with the same errors.
"""

from ..limits import MAX_CHUNKS, MAX_ELEMENTS
from .columns import col2im, im2col
from .conv import conv2d, conv2d_backward, conv2d_output_shape
from .dense import linear, linear_backward, linear_output_shape, relu, relu_backward, relu_output_shape
from .loss import cross_entropy, cross_entropy_backward, log_softmax
from .normalization import batch_norm, batch_norm_backward, batch_norm_output_shape
from .pooling import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_output_shape,
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool2d_output_shape,
    max_pool2d,
    max_pool2d_backward,
    max_pool2d_output_shape,
)

__all__ = [
    "im2col",
    "col2im",
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_backward",
    # shape-only checks: the output shape each layer would return, with the same errors
    "conv2d_output_shape",
    "max_pool2d_output_shape",
    "avg_pool2d_output_shape",
    "adaptive_avg_pool2d_output_shape",
    "linear_output_shape",
    "batch_norm_output_shape",
    "relu_output_shape",
    # the size limits every function checks before allocating
    "MAX_ELEMENTS",
    "MAX_CHUNKS",
]
