"""Input checks shared by the models and their fused forms: the one home of "is this an image batch?".

:mod:`npresnet.models` and :mod:`npresnet.fast` both import it from here, so neither
imports the other for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from ..backend import backend_name
from .spec import TensorSpec

if TYPE_CHECKING:
    from typing import Any

    from .._typing import Array

__all__ = ["check_image_batch"]


def check_image_batch(
    x: Array | TensorSpec,
    in_channels: int,
    dtype: Any,
    backend: str,
    owner: str = "the model",
    dtype_fix: str = "",
) -> None:
    """Raise a clear error unless ``x`` is an (N, in_channels, H, W) array of ``dtype`` on ``backend``.

    The one home of the input checks of :class:`~npresnet.models.ResNet` and its fused form: rank, channel
    count (with a hint for channels-last arrays), a floating dtype (with a hint for images
    still in uint8), the model's dtype and backend. A :class:`TensorSpec` passes the backend check.

    Raises
    ------
    TypeError
        Not an array, not floating, or the wrong dtype or backend.
    ValueError
        Wrong rank or channel count.
    """
    shape = tuple(getattr(x, "shape", ()))
    x_dtype = getattr(x, "dtype", None)
    if not isinstance(x_dtype, numpy.dtype) or not hasattr(x, "ndim"):  # e.g. a torch.Tensor
        raise TypeError(
            f"input must be a NumPy or CuPy array of shape (N, {in_channels}, H, W), got {type(x).__name__}"
        )
    if x.ndim != 4:
        hint = ""
        if x.ndim == 3 and shape[0] == in_channels:
            hint = " (one image? add the batch axis: x[None])"
        elif x.ndim == 3 and shape[2] == in_channels:
            hint = " (one channels-last image? use x.transpose(2, 0, 1)[None])"
        raise ValueError(f"input must be 4-D (N, C, H, W), got {x.ndim}-D with shape {shape}{hint}")
    if shape[1] != in_channels:
        hint = " (channels-last? use x.transpose(0, 3, 1, 2))" if shape[3] == in_channels else ""
        raise ValueError(f"input must have {in_channels} channels on axis 1, got shape {shape}{hint}")
    if x_dtype.kind != "f":
        hint = " — convert images with x.astype('float32') / 255 and normalise them" if x_dtype.kind in "uib" else ""
        raise TypeError(f"input must be a floating array, got dtype {x_dtype}{hint}")
    if x_dtype != dtype:
        raise TypeError(
            f"input dtype {x_dtype} does not match {owner}'s {dtype}; cast with x.astype('{dtype}'){dtype_fix}"
        )
    if not isinstance(x, TensorSpec) and backend_name(x) != backend:
        raise TypeError(
            f"input is a {backend_name(x)} array but {owner} is on {backend}; use npresnet.to_backend(x, '{backend}')"
        )
