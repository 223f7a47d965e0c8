"""Dense layers: linear and ReLU, each with its output shape, forward and backward."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..backend import get_array_module
from ._checks import _check_float, _check_same_dtype, _shape

if TYPE_CHECKING:
    from .._typing import Array, Shape, Shaped

__all__ = ["linear_output_shape", "linear", "linear_backward", "relu_output_shape", "relu", "relu_backward"]


def linear_output_shape(input: Shaped, weight: Shaped, bias: Shaped | None = None) -> Shape:
    """Return the shape :func:`linear` returns, (..., out_features), computing nothing.

    The checks are :func:`linear`'s, with the same errors.
    """
    _check_float("input", input)
    _check_float("weight", weight)
    _check_same_dtype("weight", weight, input)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {_shape(weight)}")
    if input.ndim < 1 or _shape(input)[-1] != _shape(weight)[1]:
        raise ValueError(
            f"input's last axis must have {_shape(weight)[1]} features to match weight {_shape(weight)}, "
            f"got input shape {_shape(input)}"
        )
    if bias is not None:
        _check_float("bias", bias)
        _check_same_dtype("bias", bias, input)
        if _shape(bias) != (_shape(weight)[0],):
            raise ValueError(f"bias must have shape ({_shape(weight)[0]},), got {_shape(bias)}")
    return (*_shape(input)[:-1], _shape(weight)[0])


def linear(input: Array, weight: Array, bias: Array | None = None) -> Array:
    """``y = input @ weight.T + bias``, as ``torch.nn.functional.linear``.

    Parameters
    ----------
    input : array, shape (..., in_features)
    weight : array, shape (out_features, in_features)
    bias : array, shape (out_features,), optional

    Returns
    -------
    array, shape (..., out_features)
    """
    linear_output_shape(input, weight, bias)
    out: Array = input @ weight.T
    if bias is not None:
        out = out + bias
    return out


def linear_backward(grad_output: Array, input: Array, weight: Array) -> tuple[Array, Array, Array]:
    """Gradients of :func:`linear` with respect to its input, weight and bias.

    ``grad_input = g @ weight``, ``grad_weight = g.T @ input``, ``grad_bias = sum(g)``,
    the sums running over every leading axis.

    Parameters
    ----------
    grad_output : array, shape (..., out_features)
    input : array, shape (..., in_features)
    weight : array, shape (out_features, in_features)

    Returns
    -------
    (grad_input, grad_weight, grad_bias) : arrays of shapes input.shape, weight.shape, (out_features,)
    """
    _check_float("grad_output", grad_output)
    _check_float("input", input)
    _check_float("weight", weight)
    if (
        weight.ndim != 2
        or _shape(grad_output) != _shape(input)[:-1] + _shape(weight)[:1]
        or _shape(input)[-1:] != _shape(weight)[1:]
    ):
        raise ValueError(
            f"linear_backward: grad_output {_shape(grad_output)}, input {_shape(input)} and weight "
            f"{_shape(weight)} do not fit (..., out), (..., in), (out, in)"
        )
    M = math.prod(_shape(input)[:-1])  # every leading axis is one more sample
    g = grad_output.reshape(M, weight.shape[0])  # (M, out)
    x = input.reshape(M, weight.shape[1])  # (M, in); explicit M: -1 is ambiguous when in or out is 0
    return grad_output @ weight, g.T @ x, g.sum(axis=0)


def relu_output_shape(input: Shaped) -> Shape:
    """Return the shape :func:`relu` returns (the input's), with the same checks and errors, computing nothing."""
    _check_float("input", input)
    return _shape(input)


def relu(input: Array, inplace: bool = False) -> Array:
    """``max(input, 0)`` elementwise, as ``torch.nn.functional.relu``; NaN stays NaN.

    Parameters
    ----------
    input : array, any shape, floating dtype
    inplace : bool
        Overwrite ``input`` and return it.
    """
    _check_float("input", input)
    xp = get_array_module(input)
    out: Array = xp.maximum(input, 0, out=input) if inplace else xp.maximum(input, input.dtype.type(0))
    return out


def relu_backward(grad_output: Array, output: Array) -> Array:
    """Gradient of :func:`relu`: 0 where the output is <= 0, ``grad_output`` elsewhere (as torch: 0 at 0).

    ``output`` (not the input) is enough, so an in-place ReLU can be differentiated.
    """
    _check_float("grad_output", grad_output)
    if _shape(grad_output) != _shape(output):
        raise ValueError(f"relu_backward: grad_output {_shape(grad_output)} must have output's shape {_shape(output)}")
    xp = get_array_module(grad_output, output)
    grad: Array = xp.where(output <= 0, grad_output.dtype.type(0), grad_output)  # NaN passes its gradient, as torch
    return grad
