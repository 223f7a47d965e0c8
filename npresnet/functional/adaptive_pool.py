"""Adaptive average pooling: PyTorch's (possibly overlapping) bins as two small matrix products.

``out = P_h @ x @ P_w.T`` with averaging matrices ``P_h`` (out_h, H) and ``P_w`` (out_w, W), so the
backward is ``P_h.T @ grad_out @ P_w``. Re-exported by :mod:`.pooling`, beside max and average pooling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backend import get_array_module
from ._checks import (
    _as_batch,
    _batch_shape,
    _check_elements,
    _check_float,
    _input_shape,
    _positive_pair,
    _shape,
    _Shaped,
)

if TYPE_CHECKING:
    import types
    from typing import Any

    import numpy

    from .._typing import Array, Shape, Shaped

    #: ``output_size``: an int, or a pair whose None keeps that axis's input size.
    OutputSize = int | tuple[int | None, int | None]

__all__ = ["adaptive_avg_pool2d_output_shape", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"]


def _adaptive_bins(xp: types.ModuleType, size: int, out: int, dtype: numpy.dtype[Any]) -> Array:
    """Build the averaging matrix of one axis, shape (out, size).

    Row ``i`` is ``1/len`` over PyTorch's bin ``[floor(i*size/out), ceil((i+1)*size/out))``
    and 0 elsewhere.
    """
    i = xp.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    pos = xp.arange(size)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])  # (out, size)
    bins: Array = inside.astype(dtype) / (end - start).astype(dtype)[:, None]
    return bins


def _adaptive_output_size(func: str, input: Shaped | _Shaped, output_size: OutputSize) -> tuple[int, int]:
    """``(out_h, out_w)`` checked: positive, on an input with non-empty spatial size."""
    H, W = _shape(input)[-2:]
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        h, w = output_size
        out_h, out_w = _positive_pair((H if h is None else h, W if w is None else w), "output_size")
    else:
        out_h, out_w = _positive_pair(output_size, "output_size")
    if H < 1 or W < 1:
        raise ValueError(f"{func}: input must have non-empty spatial size, got shape {_shape(input)}")
    return out_h, out_w


def _check_adaptive_sizes(func: str, input: Shaped | _Shaped, out_hw: tuple[int, int]) -> None:
    """Refuse, before allocating, an output, bin matrix or intermediate product of more than MAX_ELEMENTS elements."""
    (H, W), (out_h, out_w), lead = _shape(input)[-2:], out_hw, _shape(input)[:-2]
    because = f"output_size={(out_h, out_w)} for input {_shape(input)}"
    _check_elements(func, "an output", (*lead, out_h, out_w), because)
    _check_elements(func, "a bin matrix", (max(out_h, out_w), max(H, W)), because)
    _check_elements(func, "an intermediate", (*lead, max(H, out_h), max(W, out_w)), because)


def adaptive_avg_pool2d_output_shape(input: Shaped, output_size: OutputSize) -> Shape:
    """Return the shape :func:`adaptive_avg_pool2d` returns, with the same checks and errors, computing nothing."""
    _batch_shape("input", input)
    return (*_shape(input)[:-2], *_adaptive_output_size("adaptive_avg_pool2d", input, output_size))


def adaptive_avg_pool2d(input: Array, output_size: OutputSize) -> Array:
    """Adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output position ``i`` averages input rows ``floor(i*H/out_h)`` to ``ceil((i+1)*H/out_h) - 1``
    (PyTorch's bins, which overlap when ``H`` is not a multiple of ``out_h``); columns likewise.
    Computed as two small matrix products, ``P_h @ x @ P_w.T``.

    Parameters
    ----------
    input : array, shape (N, C, H, W) or (C, H, W)
    output_size : int, (int, int), or a pair with None meaning "keep the input size"

    Returns
    -------
    array, shape (N, C, out_h, out_w)

    Raises
    ------
    ValueError
        Also when the output, a bin matrix or the intermediate product would have more than
        :data:`~npresnet.functional.MAX_ELEMENTS` elements (checked before allocating).
    """
    x, unbatched = _as_batch("input", input)
    xp = get_array_module(x)
    H, W = x.shape[-2:]
    out_h, out_w = _adaptive_output_size("adaptive_avg_pool2d", input, output_size)
    _check_adaptive_sizes("adaptive_avg_pool2d", input, (out_h, out_w))
    p_h = _adaptive_bins(xp, H, out_h, x.dtype)  # (out_h, H)
    p_w = _adaptive_bins(xp, W, out_w, x.dtype)  # (out_w, W)
    out: Array = p_h @ (x @ p_w.T)  # (N, C, H, out_w) -> (N, C, out_h, out_w)
    return out[0] if unbatched else out


def adaptive_avg_pool2d_backward(grad_output: Array, input_shape: Shape) -> Array:
    """Gradient of :func:`adaptive_avg_pool2d`: with ``out = P_h @ x @ P_w.T``, ``grad_x = P_h.T @ grad_out @ P_w``.

    Parameters
    ----------
    grad_output : array, shape (N, C, out_h, out_w) or (C, out_h, out_w)
    input_shape : tuple
        ``(N, C, H, W)`` or ``(C, H, W)`` of the forward input, at most
        :data:`~npresnet.functional.MAX_ELEMENTS` elements.

    Returns
    -------
    array, shape ``input_shape``
    """
    _check_float("grad_output", grad_output)
    input_shape = _input_shape("adaptive_avg_pool2d_backward", input_shape)
    xp = get_array_module(grad_output)
    if (
        len(input_shape) != grad_output.ndim
        or input_shape[:-2] != _shape(grad_output)[:-2]
        or min(input_shape[-2:]) < 1
    ):
        raise ValueError(
            f"adaptive_avg_pool2d_backward: grad_output {_shape(grad_output)} does not fit input_shape {input_shape}"
        )
    out_h, out_w = grad_output.shape[-2:]
    out_hw = _adaptive_output_size("adaptive_avg_pool2d_backward", _Shaped(input_shape), (out_h, out_w))
    _check_adaptive_sizes("adaptive_avg_pool2d_backward", _Shaped(input_shape), out_hw)
    H, W = input_shape[-2:]
    p_h = _adaptive_bins(xp, H, out_h, grad_output.dtype)  # (out_h, H)
    p_w = _adaptive_bins(xp, W, out_w, grad_output.dtype)  # (out_w, W)
    grad: Array = p_h.T @ (grad_output @ p_w)  # (N, C, out_h, W) -> (N, C, H, W)
    return grad
