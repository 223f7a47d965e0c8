"""Argument checks shared by every layer function, and the size limits they enforce.

Every check here works on shapes and dtypes alone, so the shape-only pass
(:class:`npresnet.nn.TensorSpec`) and the real computation refuse the same arguments
with the same one-line errors. Sizes an argument can claim (a padding, an output size,
an ``input_shape``, a chunk count) are compared with :data:`npresnet.limits.MAX_ELEMENTS`
and :data:`npresnet.limits.MAX_CHUNKS` *before* any array is allocated.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._args import is_int
from ..limits import MAX_CHUNKS, MAX_ELEMENTS
from ..shapes import conv_output_size, pair
from ..workspace import workspace_chunk_count

if TYPE_CHECKING:
    from .._typing import Array, IntPair, Shaped


def _shape(array: object) -> tuple[int, ...]:
    return tuple(getattr(array, "shape", ()))


def _check_float(name: str, array: object) -> None:
    """Raise TypeError unless ``array`` is a real floating-point array."""
    dtype: Any = getattr(array, "dtype", None)
    if dtype is None or not hasattr(array, "ndim"):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(array).__name__}")
    if dtype.kind != "f":
        hint = " (convert images to float, e.g. x.astype('float32') / 255)" if dtype.kind in "ub" else ""
        raise TypeError(f"{name} must have a real floating dtype, got {dtype} with shape {_shape(array)}{hint}")


def _check_same_dtype(name: str, array: Shaped | None, input: Shaped) -> None:
    if array is not None and array.dtype != input.dtype:
        raise TypeError(
            f"{name} dtype {array.dtype} does not match input dtype {input.dtype} "
            f"({name} shape {_shape(array)}, input shape {_shape(input)})"
        )


def _batch_shape(name: str, input: Shaped) -> tuple[tuple[int, ...], bool]:
    """Return ``((N, C, H, W), unbatched)`` for an array or spec; accept (C, H, W) as torch does."""
    _check_float(name, input)
    if input.ndim == 3:
        return (1, *_shape(input)), True
    if input.ndim != 4:
        raise ValueError(
            f"{name} must be 4-D (N, C, H, W) or 3-D (C, H, W), got {input.ndim}-D with shape {_shape(input)}"
        )
    return _shape(input), False


def _as_batch(name: str, input: Array) -> tuple[Array, bool]:
    """Return ``(x, unbatched)`` with ``x`` of shape (N, C, H, W); accept (C, H, W) as torch does."""
    _, unbatched = _batch_shape(name, input)
    return (input[None] if unbatched else input), unbatched


def _positive_pair(value: IntPair | list[int], name: str, low: int = 1) -> tuple[int, int]:
    a, b = pair(value, name)
    if a < low or b < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return a, b


def _check_groups(groups: object) -> int:
    if not is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    return int(groups)


def _out_size(
    func: str,
    input: object,
    axis: str,
    size: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    ceil_mode: bool = False,
) -> int:
    """conv_output_size for one axis, re-raised with the caller's name and shapes."""
    try:
        return conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    except ValueError as exc:
        raise ValueError(f"{func}: input of shape {_shape(input)} is too small along {axis}: {exc}") from None


def _check_elements(func: str, what: str, shape: tuple[int, ...], because: str) -> None:
    """Refuse, before allocating it, an array of ``shape`` with more than :data:`MAX_ELEMENTS` elements.

    ``because`` names the arguments that set the size, e.g. ``"padding=(9, 9)"``.
    """
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise ValueError(
            f"{func}: {because} makes {what} of shape {tuple(shape)}, {count:,} elements, "
            f"more than the limit of {MAX_ELEMENTS:,} (MAX_ELEMENTS)"
        )


def _input_shape(func: str, input_shape: object, ndims: tuple[int, ...] = (3, 4)) -> tuple[int, ...]:
    """Return a backward call's ``input_shape`` as a tuple of non-negative ints within :data:`MAX_ELEMENTS`."""
    if not isinstance(input_shape, (tuple, list)) or not all(is_int(s) for s in input_shape):
        raise TypeError(f"{func}: input_shape must be a tuple of ints, got {input_shape!r}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in ndims or min(shape) < 0:
        raise ValueError(f"{func}: input_shape must be (N, C, H, W) or (C, H, W) of sizes >= 0, got {shape}")
    _check_elements(func, "a gradient", shape, f"input_shape={shape}")
    return shape


class _Shaped:
    """A stand-in with only ``shape`` and ``ndim``: the geometry helpers check a backward call's ``input_shape``."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)


def _check_chunks(func: str, N: int, out_h: int, row_bytes: int, budget: int) -> None:
    """Refuse a call that would be split into more than :data:`MAX_CHUNKS` chunks, before the chunk list is built."""
    count = workspace_chunk_count(N, out_h, row_bytes, budget)
    if count > MAX_CHUNKS:
        raise ValueError(
            f"{func}: workspace_bytes={budget} splits {N} images of {out_h} output rows "
            f"({row_bytes} bytes per row) into {count:,} chunks, more than the limit of "
            f"{MAX_CHUNKS:,} (MAX_CHUNKS); pass a larger workspace_bytes"
        )
