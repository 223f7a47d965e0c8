"""Float16 storage with float32 arithmetic (the fused device path's ``precision='float16'``): its error bound."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from . import LAMBDA, U32, _conv, _residual, _Terms

# ----------------------------------------------------------------- float16 storage, the device float16 mode
U16 = 2.0**-11  # float16 unit roundoff


def float16_storage_error_bounds(model: torch.nn.Module, x, outputs):
    """Exact values of scalar outputs of ``model(x)`` and the bound on their error in the fused path's
    ``precision="float16"`` mode (:mod:`npresnet.fast.device`): float16 storage, float32 arithmetic.

    The same probabilistic model as :func:`float32_error_bounds`, with two kinds of rounding:

    float16, ``U16 = 2**-11``, each one rounding of a stored value ``z`` (``n = 1``, ``m = |z|``):
        the input, cast to float16 once; every convolution's folded weight ``W'``, rounded to float32
        then to float16 (``|δ| <= U16 + U32``): its effect on ``f`` is ``(∂f/∂W') W' δ`` per weight, one
        variable shared by every pixel, so its term is ``(∂f/∂W' · W')²``; every convolution's output
        after its epilogue (after the residual add where there is one), written to float16 once;
    float32, ``U32``, as the fused path but without Winograd (none on the device):
        the GEMM over float16 columns and weights, whose products are exact in float32, and the bias
        (rounded from float64) and its add: ``n = K + 2``, ``m = conv(|a|, |W'|) + |b'|``; the residual
        add ``n = 2``; the average pool and the fc product as in :func:`float32_error_bounds`.

    Max pooling and ReLU are exact on float16 values. The bound is
    ``LAMBDA · sqrt(U32² Σ_float32 + U16² Σ_float16)`` with ``Σ = sum (∂f/∂z)² n m²``.

    Parameters
    ----------
    model : torchvision ResNet, in eval mode; used in float64 on a deep copy
    x : numpy.ndarray float32, shape (N, 3, H, W)
    outputs : callable
        ``outputs(logits)``: the float64 logits (N, classes) to a 1-D tensor of the scalars to bound.

    Returns
    -------
    values, bounds : numpy.ndarray float64, shape (n_outputs,)
    """
    model = copy.deepcopy(model).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.as_tensor(np.asarray(x)).double()
    t32, t16 = _Terms("fused"), _Terms("fused")
    with torch.enable_grad():
        x.requires_grad_(True)
        t16.add(x, 1, x.abs())  # the input's cast to float16
        logits = _float16_logits(t32, t16, model, x)
        with torch.no_grad():
            reference = model(x)
        drift = float((logits.detach() - reference).abs().max() / reference.abs().max())
        if drift > 1e-12:
            raise AssertionError(f"the op-by-op forward differs from torchvision's by {drift:.1e} relative")
        values = outputs(logits)
        sums = []
        z = t32.z + t16.z
        for i in range(values.numel()):
            grads = torch.autograd.grad(values[i], z, retain_graph=i + 1 < values.numel(), allow_unused=True)
            g32, g16 = grads[: len(t32.z)], grads[len(t32.z) :]
            s32 = sum(float((g**2 * v).sum()) for g, v in zip(g32, t32.variance) if g is not None)
            s16 = sum(float((g**2 * v).sum()) for g, v in zip(g16, t16.variance) if g is not None)
            sums.append(U32**2 * s32 + U16**2 * s16)
    return values.detach().numpy(), LAMBDA * np.sqrt(sums)


def _float16_conv_bn(t32: _Terms, t16: _Terms, conv, bn, a, identity=None):
    """A fused convolution in float16 mode, with its epilogue (bias, optional residual), recorded."""
    K = conv.weight[0].numel()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    weight = (conv.weight * scale[:, None, None, None]).requires_grad_(True)  # W': a leaf, for ∂f/∂W'
    t16.add(weight, ((U16 + U32) / U16) ** 2, weight.abs())  # float64 -> float32 -> float16
    z = _conv(conv, a, weight, shift)
    t32.add(z, K + 2, _conv(conv, a.abs(), weight.abs(), None) + shift.abs()[None, :, None, None])
    if identity is not None:
        z = _residual(t32, z, identity)
    return t16.add(z * 1.0, 1, z.abs())  # written to float16 once (a node of its own for its gradient)


def _float16_logits(t32: _Terms, t16: _Terms, model, x):
    h = torch.relu(_float16_conv_bn(t32, t16, model.conv1, model.bn1, x))
    h = model.maxpool(h)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            pairs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
            if hasattr(block, "conv3"):
                pairs.append((block.conv3, block.bn3))
            identity = h
            if block.downsample is not None:
                identity = _float16_conv_bn(t32, t16, block.downsample[0], block.downsample[1], h)
            y = h
            for conv, bn in pairs[:-1]:
                y = torch.relu(_float16_conv_bn(t32, t16, conv, bn, y))
            h = torch.relu(_float16_conv_bn(t32, t16, *pairs[-1], y, identity))
    HW = h.shape[2] * h.shape[3]
    pooled = t32.add(h.mean(dim=(2, 3)), HW + 1, h.abs().mean(dim=(2, 3)))
    C = pooled.shape[1]
    logits = F.linear(pooled, model.fc.weight, model.fc.bias)
    return t32.add(logits, C + 1, F.linear(pooled.abs(), model.fc.weight.abs(), model.fc.bias.abs()))
