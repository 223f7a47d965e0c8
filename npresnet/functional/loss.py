"""Classification loss: log_softmax and cross entropy (with label smoothing), and its gradient."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backend import get_array_module
from ._checks import _check_float, _shape

if TYPE_CHECKING:
    import types
    from typing import Any

    import numpy

    from .._typing import Array

__all__ = ["log_softmax", "cross_entropy", "cross_entropy_backward"]


def log_softmax(input: Array, dim: int) -> Array:
    """``log(softmax(input))`` along ``dim``, as ``torch.nn.functional.log_softmax``.

    ``dim`` is required: torch's default, ``dim=None``, picks an axis from ``input.ndim`` and is
    deprecated there.

    Computed as ``x - max - log(sum(exp(x - max)))``, so large logits do not overflow.
    """
    _check_float("input", input)
    xp = get_array_module(input)
    shifted = input - input.max(axis=dim, keepdims=True)
    out: Array = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
    return out


def _check_targets(input: Array, target: Array) -> tuple[tuple[Array, Array], bool]:
    """Validate (N, C) logits and (N,) class indices; return the (N, C) and (N,) views and the unbatched flag."""
    _check_float("input", input)
    if input.ndim not in (1, 2):
        raise ValueError(f"cross_entropy: input must be (N, C) logits or (C,), got shape {_shape(input)}")
    dtype = getattr(target, "dtype", None)
    if dtype is None or dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must be an integer array of class indices, got {dtype}")
    if _shape(target) != _shape(input)[:-1]:
        raise ValueError(
            f"cross_entropy: target shape {_shape(target)} must be input's {_shape(input)} without the class axis"
        )
    C = input.shape[-1]
    if target.size and (int(target.min()) < 0 or int(target.max()) >= C):
        raise ValueError(
            f"cross_entropy: target values must be in [0, {C}), got [{int(target.min())}, {int(target.max())}]"
        )
    unbatched = input.ndim == 1
    return (input[None], target.reshape(1)) if unbatched else (input, target), unbatched


def _smoothed_targets(
    xp: types.ModuleType, target: Array, C: int, label_smoothing: float, dtype: numpy.dtype[Any]
) -> Array:
    """Return the target distribution, shape (N, C): ``1 - ε`` on the class plus ``ε / C`` everywhere."""
    q: Array = xp.full((target.shape[0], C), label_smoothing / C, dtype=dtype)
    q[xp.arange(target.shape[0]), target] += dtype.type(1 - label_smoothing)
    return q


def _check_reduction(reduction: str, label_smoothing: float) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")


def cross_entropy(input: Array, target: Array, *, reduction: str = "mean", label_smoothing: float = 0.0) -> Array:
    """Cross entropy of logits against class indices, as ``torch.nn.functional.cross_entropy``.

    ``loss_n = -sum_c q[n, c] * log_softmax(input)[n, c]`` with the target distribution
    ``q = (1 - ε) * one_hot(target) + ε / C`` (``ε = label_smoothing``), then averaged
    (``'mean'``), summed, or kept per sample (``'none'``). Torch's ``weight``, ``ignore_index`` and
    the deprecated ``size_average``/``reduce`` are not supported; ``reduction`` and
    ``label_smoothing`` are keyword-only, so a call that passes torch's third positional argument,
    ``weight``, is refused rather than read as something else.

    Parameters
    ----------
    input : array, shape (N, C) or (C,)
    target : integer array, shape (N,) or ()
    reduction : {'mean', 'sum', 'none'}
    label_smoothing : float in [0, 1]

    Returns
    -------
    array, shape () or (N,)
    """
    _check_reduction(reduction, label_smoothing)
    (x, t), unbatched = _check_targets(input, target)
    xp = get_array_module(x)
    q = _smoothed_targets(xp, t, x.shape[1], label_smoothing, x.dtype)
    loss: Array = -(q * log_softmax(x, dim=1)).sum(axis=1)  # (N,)
    if reduction == "mean":
        loss = loss.mean()  # ()
    elif reduction == "sum":
        loss = loss.sum()  # ()
    elif unbatched:
        loss = loss[0]  # ()
    return loss


def cross_entropy_backward(
    grad_output: Array | float, input: Array, target: Array, *, reduction: str = "mean", label_smoothing: float = 0.0
) -> Array:
    """Gradient of :func:`cross_entropy` with respect to the logits.

    ``(softmax(input) - q) * grad_output``, divided by ``N`` for ``'mean'``.

    Parameters
    ----------
    grad_output : float or array, shape () or, for ``reduction='none'``, (N,)
        1.0 for the loss itself.
    input, target, reduction, label_smoothing
        As given to :func:`cross_entropy`.

    Returns
    -------
    array, shape input.shape
    """
    _check_reduction(reduction, label_smoothing)
    (x, t), unbatched = _check_targets(input, target)
    xp = get_array_module(x)
    N = x.shape[0]
    q = _smoothed_targets(xp, t, x.shape[1], label_smoothing, x.dtype)
    grad: Array = xp.exp(log_softmax(x, dim=1)) - q  # (N, C): softmax minus the target distribution
    g = xp.asarray(grad_output, dtype=x.dtype)
    if reduction == "none":
        grad *= g.reshape(-1, 1)
    else:
        grad *= g / N if reduction == "mean" else g
    return grad[0] if unbatched else grad
