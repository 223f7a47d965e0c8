"""Layer objects: parameters as arrays, computation by :mod:`npresnet.functional`.

Names, arguments and defaults follow ``torch.nn``. Fresh parameters use torch's
default initialisation (``kaiming_uniform_(a=sqrt(5))``, i.e. U(±1/sqrt(fan_in)))
drawn from ``rng`` (a ``numpy.random.Generator`` or an int seed); models re-initialise
them as their paper says. ``init=False`` allocates zeros instead, for arrays that are
about to be loaded or for shape-only work.

Arguments are checked when a layer is built: channel and feature counts and ``groups``
are ints, and no parameter array may exceed :data:`MAX_PARAMETER_BYTES`, checked
before it is allocated.

Shape-only pass: each layer's ``forward_spec`` calls the same argument checks and
output-size code as its ``forward`` (the ``*_output_shape`` functions of
:mod:`npresnet.functional`), so a :class:`TensorSpec` gets the shape the real forward
would return, or the very error it would raise.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy

from .. import functional as F
from .._args import check_int, check_real
from ..limits import MAX_PARAMETER_BYTES
from ..shapes import pair
from ..workspace import resolve_workspace_bytes
from .module import Module

if TYPE_CHECKING:
    from typing import Any

    from numpy.typing import DTypeLike

    from .._typing import Array, IntPair, Shaped
    from .spec import TensorSpec

__all__ = ["MAX_PARAMETER_BYTES", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AdaptiveAvgPool2d", "Linear"]


def check_parameter_bytes(what: str, count: int, dtype: Any) -> None:
    """Refuse ``count`` parameters of ``dtype`` above :data:`MAX_PARAMETER_BYTES`, before anything is allocated."""
    nbytes = count * numpy.dtype(dtype).itemsize
    if nbytes > MAX_PARAMETER_BYTES:
        raise ValueError(
            f"{what} would hold {count:,} parameters = {nbytes:,} bytes, "
            f"more than the limit of {MAX_PARAMETER_BYTES:,} bytes (npresnet.limits.MAX_PARAMETER_BYTES)"
        )


def _fan_in_bound(fan_in: int) -> float:
    """Return torch's default bound ``1/sqrt(fan_in)``, 0 for an empty fan-in (as torch's Linear bias)."""
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def _uniform(
    rng: int | numpy.random.Generator | None, shape: tuple[int, ...], bound: float, dtype: DTypeLike, init: bool = True
) -> Array:
    if not init:
        return numpy.zeros(shape, dtype=dtype)
    rng = numpy.random.default_rng(rng)
    return (rng.random(shape, dtype=numpy.float64) * (2 * bound) - bound).astype(dtype)


class Conv2d(Module):
    """2-D convolution layer.

    Attributes
    ----------
    weight : array, shape (out_channels, in_channels // groups, kh, kw)
    bias : array, shape (out_channels,), or None
    workspace_bytes : int or None
        Passed to :func:`npresnet.functional.conv2d` and :func:`npresnet.functional.conv2d_backward`
        (bound on one chunk's columns plus output; None: the backend's default). Not a parameter:
        not in the state dict.
    """

    _parameter_names = ("weight", "bias")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair | str = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        dtype: Any = "float32",
        rng: numpy.random.Generator | int | None = None,
        init: bool = True,
        workspace_bytes: int | None = None,
    ) -> None:
        super().__init__()
        if workspace_bytes is not None:
            resolve_workspace_bytes(workspace_bytes)  # refuse a bad value now, not at the first call
        self.workspace_bytes = workspace_bytes
        in_channels, out_channels = check_int("in_channels", in_channels, 1), check_int("out_channels", out_channels, 1)
        groups = check_int("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        check_parameter_bytes(
            f"Conv2d(in_channels={in_channels}, out_channels={out_channels}, kernel_size={self.kernel_size})",
            out_channels * fan_in,
            dtype,
        )
        bound = _fan_in_bound(fan_in)
        rng = numpy.random.default_rng(rng) if init else None
        self.weight = _uniform(rng, (out_channels, in_channels // groups, *self.kernel_size), bound, dtype, init)
        self.bias = _uniform(rng, (out_channels,), bound, dtype, init) if bias else None

    def forward(self, x: Array) -> Array:
        """Convolve ``x`` (N, C_in, H, W) into (N, C_out, H_out, W_out) with :func:`npresnet.functional.conv2d`."""
        self._save(x)  # training mode only: the input, for the weight gradient
        return F.conv2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            workspace_bytes=self.workspace_bytes,
        )

    def backward(self, grad_output: Array) -> Array:
        """Return the input gradient (N, C_in, H, W); add the weight's and bias's into ``grads``."""
        (x,) = self._pop_saved()
        grad_input, grad_weight, grad_bias = F.conv2d_backward(
            grad_output,
            x,
            self.weight,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            workspace_bytes=self.workspace_bytes,
        )
        self._accumulate("weight", grad_weight)
        if self.bias is not None:
            self._accumulate("bias", grad_bias)
        return grad_input

    def forward_spec(self, spec: TensorSpec) -> TensorSpec:
        """Return the output spec (N, C_out, H_out, W_out), with the forward's checks, computing nothing."""
        return spec.like(
            F.conv2d_output_shape(spec, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        )

    def extra_repr(self) -> str:
        """Return the settings torch prints: channels, kernel, stride and the non-default rest."""
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class BatchNorm2d(Module):
    """Batch normalisation over the channel axis of (N, C, H, W) input.

    Attributes
    ----------
    weight, bias, running_mean, running_var : array, shape (num_features,)
    num_batches_tracked : int64 array, shape ()
    """

    _parameter_names = ("weight", "bias")
    _buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, *, dtype: Any = "float32"
    ) -> None:
        super().__init__()
        num_features, eps = check_int("num_features", num_features, 1), check_real("eps", eps, 0.0)
        if momentum is not None:  # None: a cumulative moving average, as torch
            momentum = check_real("momentum", momentum, 0.0)
            if momentum > 1:
                raise ValueError(f"momentum must be from 0 to 1 (or None), got {momentum!r}")
        check_parameter_bytes(f"BatchNorm2d(num_features={num_features})", 4 * num_features, dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = numpy.ones(num_features, dtype=dtype)
        self.bias = numpy.zeros(num_features, dtype=dtype)
        self.running_mean = numpy.zeros(num_features, dtype=dtype)
        self.running_var = numpy.ones(num_features, dtype=dtype)
        self.num_batches_tracked = numpy.zeros((), dtype=numpy.int64)

    def _check_input(self, x: Shaped) -> None:
        if x.ndim != 4:
            raise ValueError(f"{self} expects 4-D (N, C, H, W) input, got shape {tuple(x.shape)}")

    def forward(self, x: Array) -> Array:
        """Normalise ``x`` (N, C, H, W) per channel: by the batch's statistics in training, else the running ones."""
        self._check_input(x)
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked += 1
            if momentum is None:  # cumulative moving average, as torch
                momentum = 1.0 / float(self.num_batches_tracked)
        self._save(x)  # training mode only: the batch statistics are recomputed from it in backward
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=self.training,
            momentum=0.0 if momentum is None else momentum,  # None only when not training: unused then
            eps=self.eps,
        )

    def backward(self, grad_output: Array) -> Array:
        """Return the input gradient (N, C, H, W) of a training-mode forward; add weight's and bias's into ``grads``."""
        (x,) = self._pop_saved()
        grad_input, grad_weight, grad_bias = F.batch_norm_backward(
            grad_output, x, self.weight, training=True, eps=self.eps
        )
        assert grad_weight is not None and grad_bias is not None  # the layer always has weight and bias
        self._accumulate("weight", grad_weight)
        self._accumulate("bias", grad_bias)
        return grad_input

    def forward_spec(self, spec: TensorSpec) -> TensorSpec:
        """Return the output spec (the input's shape), with the forward's checks, computing nothing."""
        self._check_input(spec)
        return spec.like(
            F.batch_norm_output_shape(
                spec, self.running_mean, self.running_var, self.weight, self.bias, training=self.training
            )
        )

    def extra_repr(self) -> str:
        """Return the settings torch prints: features, eps, momentum."""
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class ReLU(Module):
    """``max(x, 0)``; with ``inplace=True`` it overwrites its input, as torchvision's ResNet does."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Array) -> Array:
        """Return ``max(x, 0)`` elementwise (into ``x`` itself when ``inplace``)."""
        out = F.relu(x, inplace=self.inplace)
        self._save(out)  # the output is enough (out > 0 exactly where x > 0), so in place is fine
        return out

    def backward(self, grad_output: Array) -> Array:
        """Return ``grad_output`` where the output was positive, else 0."""
        (out,) = self._pop_saved()
        return F.relu_backward(grad_output, out)

    def forward_spec(self, spec: TensorSpec) -> TensorSpec:
        """Return the output spec (the input's shape), computing nothing."""
        F.relu_output_shape(spec)
        return spec if self.inplace else spec.like(spec.shape)

    def extra_repr(self) -> str:
        """Return ``inplace=True`` when set, as torch prints it."""
        return "inplace=True" if self.inplace else ""


class MaxPool2d(Module):
    """Max pooling; padding acts as −∞."""

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        self.ceil_mode = ceil_mode

    def forward(self, x: Array) -> Array:
        """Max-pool ``x`` (N, C, H, W) into (N, C, H_out, W_out); in training, keep the argmax for backward."""
        if not self.training:  # without return_indices: the output alone
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        out, indices = F.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, return_indices=True
        )
        self._save(indices, x.shape)  # where each max came from: backward routes the gradient there
        return out

    def backward(self, grad_output: Array) -> Array:
        """Route ``grad_output`` to the input positions that held each window's max."""
        indices, input_shape = self._pop_saved()
        return F.max_pool2d_backward(grad_output, indices, input_shape)

    def forward_spec(self, spec: TensorSpec) -> TensorSpec:
        """Return the output spec (N, C, H_out, W_out), with the forward's checks, computing nothing."""
        return spec.like(
            F.max_pool2d_output_shape(spec, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        )

    def extra_repr(self) -> str:
        """Return the settings torch prints: kernel, stride, padding, dilation, ceil mode."""
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, PyTorch's bins."""

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Array) -> Array:
        """Average ``x`` (N, C, H, W) over PyTorch's adaptive bins into ``(N, C, *output_size)``."""
        self._save(x.shape)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def backward(self, grad_output: Array) -> Array:
        """Spread ``grad_output`` evenly over each bin's input positions."""
        (input_shape,) = self._pop_saved()
        return F.adaptive_avg_pool2d_backward(grad_output, input_shape)

    def forward_spec(self, spec: TensorSpec) -> TensorSpec:
        """Return the output spec ``(N, C, *output_size)``, computing nothing."""
        return spec.like(F.adaptive_avg_pool2d_output_shape(spec, self.output_size))

    def extra_repr(self) -> str:
        """Return the setting torch prints: ``output_size``."""
        return f"output_size={self.output_size}"


class Linear(Module):
    """Fully connected layer: ``y = x @ weight.T + bias``.

    Attributes
    ----------
    weight : array, shape (out_features, in_features)
    bias : array, shape (out_features,), or None
    """

    _parameter_names = ("weight", "bias")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = "float32",
        rng: numpy.random.Generator | int | None = None,
        init: bool = True,
    ) -> None:
        super().__init__()
        in_features, out_features = check_int("in_features", in_features, 0), check_int("out_features", out_features, 0)
        check_parameter_bytes(
            f"Linear(in_features={in_features}, out_features={out_features})", (in_features + 1) * out_features, dtype
        )
        self.in_features, self.out_features = in_features, out_features
        bound = _fan_in_bound(in_features)
        rng = numpy.random.default_rng(rng) if init else None
        self.weight = _uniform(rng, (out_features, in_features), bound, dtype, init)
        self.bias = _uniform(rng, (out_features,), bound, dtype, init) if bias else None

    def forward(self, x: Array) -> Array:
        """Return ``x @ weight.T + bias``: (..., in_features) into (..., out_features)."""
        self._save(x)
        return F.linear(x, self.weight, self.bias)

    def backward(self, grad_output: Array) -> Array:
        """Return the input gradient (..., in_features); add the weight's and bias's into ``grads``."""
        (x,) = self._pop_saved()
        grad_input, grad_weight, grad_bias = F.linear_backward(grad_output, x, self.weight)
        self._accumulate("weight", grad_weight)
        if self.bias is not None:
            self._accumulate("bias", grad_bias)
        return grad_input

    def forward_spec(self, spec: TensorSpec) -> TensorSpec:
        """Return the output spec (..., out_features), with the forward's checks, computing nothing."""
        return spec.like(F.linear_output_shape(spec, self.weight, self.bias))

    def extra_repr(self) -> str:
        """Return the settings torch prints: in and out features, bias."""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
