"""Adaptive average pooling: the mean over each of PyTorch's (possibly overlapping) bins.

The mean over a rectangle is the mean over its rows of the means over its columns, so the forward
is one pass over the row bins, then one over the column bins; the backward spreads each bin's
gradient evenly over its cells, columns then rows. Each bin reads only its own cells, so a NaN or
an infinity reaches only the bins that hold it, as in PyTorch. (Two averaging-matrix products,
``P_h @ x @ P_w.T``, give the same numbers on finite input but spread a NaN to every output through
its zero weights: ``0 * nan`` is NaN.) Re-exported by :mod:`.pooling`, beside max and average pooling.
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
    from .._typing import Array, Shape, Shaped

    #: ``output_size``: an int, or a pair whose None keeps that axis's input size.
    OutputSize = int | tuple[int | None, int | None]

__all__ = ["adaptive_avg_pool2d_output_shape", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"]


def _adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's bins of one axis: ``[floor(i*size/out), ceil((i+1)*size/out))`` for ``i`` in ``range(out)``."""
    return [((i * size) // out, -(-(i + 1) * size // out)) for i in range(out)]


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
    """Refuse, before any work, more than MAX_ELEMENTS elements in an output, in the intermediate, or in bins × length.

    The last bounds the passes: one Python step per bin, each reading up to an axis's length.
    """
    (H, W), (out_h, out_w), lead = _shape(input)[-2:], out_hw, _shape(input)[:-2]
    because = f"output_size={(out_h, out_w)} for input {_shape(input)}"
    _check_elements(func, "an output", (*lead, out_h, out_w), because)
    _check_elements(func, "bins times length", (max(out_h, out_w), max(H, W)), because)
    _check_elements(func, "an intermediate", (*lead, max(H, out_h), max(W, out_w)), because)


def adaptive_avg_pool2d_output_shape(input: Shaped, output_size: OutputSize) -> Shape:
    """Return the shape :func:`adaptive_avg_pool2d` returns, with the same checks and errors, computing nothing."""
    _batch_shape("input", input)
    return (*_shape(input)[:-2], *_adaptive_output_size("adaptive_avg_pool2d", input, output_size))


def adaptive_avg_pool2d(input: Array, output_size: OutputSize) -> Array:
    """Adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output position ``i`` averages input rows ``floor(i*H/out_h)`` to ``ceil((i+1)*H/out_h) - 1``
    (PyTorch's bins, which overlap when ``H`` is not a multiple of ``out_h``); columns likewise.
    A NaN or an infinity reaches only the outputs whose bins hold it.

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
        Also when the output, the intermediate, or the bins times an axis's length would have more than
        :data:`~npresnet.functional.MAX_ELEMENTS` elements (checked before allocating).
    """
    x, unbatched = _as_batch("input", input)
    xp = get_array_module(x)
    H, W = x.shape[-2:]
    out_h, out_w = _adaptive_output_size("adaptive_avg_pool2d", input, output_size)
    _check_adaptive_sizes("adaptive_avg_pool2d", input, (out_h, out_w))
    rows = xp.stack(
        [x[..., y0:y1, :].mean(axis=-2) for y0, y1 in _adaptive_bins(H, out_h)], axis=-2
    )  # (N, C, out_h, W)
    out: Array = xp.stack([rows[..., x0:x1].mean(axis=-1) for x0, x1 in _adaptive_bins(W, out_w)], axis=-1)
    return out[0] if unbatched else out  # (N, C, out_h, out_w)


def adaptive_avg_pool2d_backward(grad_output: Array, input_shape: Shape) -> Array:
    """Gradient of :func:`adaptive_avg_pool2d`: each bin's gradient, divided by its size, added to each of its cells.

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
    spread = xp.zeros((*input_shape[:-2], out_h, W), dtype=grad_output.dtype)  # (N, C, out_h, W)
    for j, (x0, x1) in enumerate(_adaptive_bins(W, out_w)):
        spread[..., x0:x1] += grad_output[..., j : j + 1] / (x1 - x0)
    grad: Array = xp.zeros(input_shape, dtype=grad_output.dtype)  # (N, C, H, W)
    for i, (y0, y1) in enumerate(_adaptive_bins(H, out_h)):
        grad[..., y0:y1, :] += spread[..., i : i + 1, :] / (y1 - y0)
    return grad
