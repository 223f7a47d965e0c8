"""Batch normalisation over the channel axis: output shape, forward (inference and training), backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._args import is_real
from ..backend import get_array_module
from ._checks import _check_float, _check_same_dtype, _shape

if TYPE_CHECKING:
    from .._typing import Array, Shape, Shaped

__all__ = ["batch_norm_output_shape", "batch_norm", "batch_norm_backward"]


def _batch_norm_checks(
    func: str,
    input: Shaped,
    running_mean: Shaped | None,
    running_var: Shaped | None,
    weight: Shaped | None,
    bias: Shaped | None,
    training: bool,
) -> None:
    """batch_norm's argument checks, shared by its output shape, forward and backward."""
    _check_float("input", input)
    if input.ndim < 2:
        raise ValueError(f"{func}: input must be at least 2-D (N, C, ...), got shape {_shape(input)}")
    C = _shape(input)[1]
    for name, arr in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if arr is None:
            continue
        _check_float(name, arr)
        if _shape(arr) != (C,):
            raise ValueError(f"{name} must have shape ({C},) for input of shape {_shape(input)}, got {_shape(arr)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{func}: running_mean and running_var are required when training=False")
    if training and (input.size // C if C else 0) <= 1:
        raise ValueError(
            f"{func}: expected more than 1 value per channel when training, got input of shape {_shape(input)}"
        )


def _check_eps(func: str, eps: object, training: bool) -> None:
    """``eps`` is a real number, and positive when training (as torch: the batch variance may be 0)."""
    if not is_real(eps):
        raise TypeError(f"{func}: eps must be a real number, got {eps!r}")
    if training and not float(eps) > 0:
        raise ValueError(f"{func}: eps must be positive when training, got {eps!r}")


def batch_norm_output_shape(
    input: Shaped,
    running_mean: Shaped | None,
    running_var: Shaped | None,
    weight: Shaped | None = None,
    bias: Shaped | None = None,
    training: bool = False,
) -> Shape:
    """Return the shape :func:`batch_norm` returns (the input's), with the same checks and errors, computing nothing."""
    _batch_norm_checks("batch_norm", input, running_mean, running_var, weight, bias, training)
    return _shape(input)


def batch_norm(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None = None,
    bias: Array | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Array:
    """Batch normalisation over axis 1, as ``torch.nn.functional.batch_norm``.

    In inference (``training=False``) the running statistics normalise the input. In
    training the batch mean and biased variance normalise it, and the running statistics,
    when given, are updated in place as PyTorch does:
    ``running = (1 - momentum) * running + momentum * batch`` with the *unbiased* variance.

    Parameters
    ----------
    input : array, shape (N, C, ...)
    running_mean, running_var : array, shape (C,), or None (training only)
    weight, bias : array, shape (C,), optional
    training : bool
    momentum : float
    eps : float
        Added to the variance; positive when ``training``.

    Returns
    -------
    array, same shape and dtype as ``input``
    """
    batch_norm_output_shape(input, running_mean, running_var, weight, bias, training)
    _check_eps("batch_norm", eps, training)
    xp = get_array_module(input, running_mean, running_var, weight, bias)
    C = input.shape[1]
    bshape = (1, C) + (1,) * (input.ndim - 2)  # broadcasts a (C,) vector over (N, C, ...)
    if training:
        axes = (0,) + tuple(range(2, input.ndim))
        count = input.size // C  # values per channel, more than 1 (checked)
        mean = input.mean(axis=axes)
        var = input.var(axis=axes)  # biased: normalises the batch
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * (var * (count / (count - 1))).astype(running_var.dtype)  # unbiased
    else:
        mean, var = running_mean, running_var
    scale = 1 / xp.sqrt(var.astype(input.dtype) + input.dtype.type(eps))
    if weight is not None:
        scale = scale * weight.astype(input.dtype)
    shift = -mean.astype(input.dtype) * scale
    if bias is not None:
        shift = shift + bias.astype(input.dtype)
    out: Array = input * scale.reshape(bshape) + shift.reshape(bshape)
    return out


def batch_norm_backward(
    grad_output: Array,
    input: Array,
    weight: Array | None = None,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    training: bool = True,
    eps: float = 1e-5,
) -> tuple[Array, Array | None, Array | None]:
    """Gradients of :func:`batch_norm` with respect to its input, weight and bias.

    With ``x_hat = (x - mean) * invstd`` and ``y = weight * x_hat + bias`` per channel, summing over the
    ``M = N*H*W`` values of a channel:

    * ``grad_bias = sum(g)`` and ``grad_weight = sum(g * x_hat)``;
    * in training the mean and variance are the batch's own, so they depend on ``x`` too, and
      ``grad_x = weight * invstd / M * (M*g - sum(g) - x_hat * sum(g * x_hat))``:
      the plain ``weight * invstd * g`` minus its projection on the constant (through the mean) and on
      ``x_hat`` (through the variance);
    * in inference the statistics are constants and ``grad_x = weight * invstd * g``.

    Parameters
    ----------
    grad_output, input : array, shape (N, C, ...)
        ``input`` is the forward input; the batch statistics are recomputed from it.
    weight : array, shape (C,), optional
    running_mean, running_var : array, shape (C,)
        Used (and required) only when ``training=False``.
        The arguments are checked as :func:`batch_norm` checks them.
    training : bool
        As given to the forward call.
    eps : float

    Returns
    -------
    (grad_input, grad_weight, grad_bias) : arrays of shapes input.shape, (C,), (C,)
    """
    _batch_norm_checks("batch_norm_backward", input, running_mean, running_var, weight, None, training)
    _check_eps("batch_norm_backward", eps, training)
    _check_float("grad_output", grad_output)
    _check_same_dtype("grad_output", grad_output, input)
    if _shape(grad_output) != _shape(input):
        raise ValueError(
            f"batch_norm_backward: grad_output {_shape(grad_output)} must have the input's "
            f"shape {_shape(input)}, at least 2-D"
        )
    xp = get_array_module(grad_output, input, weight)
    C = input.shape[1]
    axes = (0,) + tuple(range(2, input.ndim))
    bshape = (1, C) + (1,) * (input.ndim - 2)
    dtype = input.dtype
    if training:
        mean, var = input.mean(axis=axes), input.var(axis=axes)  # the forward's batch statistics
    else:
        assert running_mean is not None and running_var is not None  # required when not training (checked)
        mean, var = running_mean.astype(dtype), running_var.astype(dtype)
    invstd = 1 / xp.sqrt(var + dtype.type(eps))  # (C,)
    x_hat = (input - mean.reshape(bshape)) * invstd.reshape(bshape)  # (N, C, ...)
    grad_bias = grad_output.sum(axis=axes)
    grad_weight = (grad_output * x_hat).sum(axis=axes)
    scale = invstd if weight is None else invstd * weight.astype(dtype)  # (C,)
    if training:
        M = input.size // C
        grad_input = M * grad_output - grad_bias.reshape(bshape) - x_hat * grad_weight.reshape(bshape)
        grad_input *= (scale / M).reshape(bshape)
    else:
        grad_input = grad_output * scale.reshape(bshape)
    return grad_input, grad_weight, grad_bias
