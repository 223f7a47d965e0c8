"""The float32 error bounds of a training step's gradients (npresnet's modules, batch statistics)."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from . import _bound, _conv, _Terms

# ---------------------------------------------------------------------------------------------------
# Training: the gradients of one forward and backward pass (npresnet's modules, batch statistics)
#
# The same bound, for the gradients :meth:`npresnet.models.ResNet.backward` returns after a
# training-mode forward. The computation is replayed op by op in float64 as npresnet's functional
# code does it (forward, then the backward written out, not autograd's), every rounded result is
# recorded with its ``n`` and ``m``, and autograd differentiates a scalar of the gradients (a
# projection ``<v, grad>``) with respect to every one of them, in the forward and in the backward:
#
#   forward  convolution ``n = K``, ``m = conv(|a|, |W|)``;  batch norm with the batch's statistics:
#            mean ``n = M + 1`` (``M = N·H·W``), ``x - mean`` and its square ``n = 1`` each, variance
#            ``n = M + 1``, ``invstd = 1/sqrt(var + eps)`` ``n = 3``, ``scale = invstd·γ`` ``n = 1``,
#            ``shift = β - mean·scale`` ``n = 2``, ``x·scale + shift`` ``n = 2``; average pool
#            ``n = HW + H + W`` (two products with rounded ``1/H``, ``1/W`` bins); residual and
#            fully connected as for inference.
#   backward convolution input ``W'ᵀ g`` then col2im: ``n = O/groups + kh·kw``,
#            ``m = conv_transpose(|g|, |W|)``; weight ``g · colsᵀ``: ``n = N·out_h·out_w``,
#            ``m = conv_weight_grad(|a|, |g|)``; batch norm (``x̂``: ``n = 2``; ``Σg``: ``n = M``;
#            ``Σ g·x̂``: ``n = M + 1``; ``(M·g - Σg - x̂·Σgx̂)·scale/M``: ``n = 6``,
#            ``m = (M|g| + |Σg| + |x̂ Σgx̂|)|scale|/M``); the residual's two gradients ``n = 2``;
#            max pool's scatter-add in float32 (``add.at``): an element collects the gradients of at
#            most ``ceil(kh/sh)·ceil(kw/sw)`` windows, ``n`` = that count; average pool ``n = 4``;
#            fully connected ``g W`` ``n = out``, ``gᵀ x`` and ``Σ g`` ``n = N``.
#
# Branches are not roundings: a ReLU whose input lies within rounding distance of zero, or a max-pool
# window whose two largest values lie within rounding distance, may go the other way in float32, and
# then the gradient there changes by a whole term, not by a rounding. So the replay takes the
# branches from the float32 run (its ReLU masks and max-pool indices): the exact values compared
# against are those of the same piece of the piecewise-smooth network, and every branch that differs
# from the exact one is returned with its margin and the bound on that margin's float32 error (a
# branch may flip only where the margin is within that bound).


def _record_branches(model):
    """Hooks on an npresnet model that record its ReLU masks (``output > 0``) in call order.

    Returns ``(masks, handles)``: ``masks`` fills during a forward; ``handle.remove()`` for each of ``handles``.
    """
    from npresnet.nn import ReLU

    masks = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: masks.append(np.asarray(out) > 0))
        for m in model.modules()
        if isinstance(m, ReLU)
    ]
    return masks, handles


def float32_training_branches(model, x):
    """Run npresnet ``model`` forward in training mode on ``x``; return its output and its branches.

    Returns
    -------
    out : numpy.ndarray, the logits
    branches : (relu_masks, pool_indices)
        The ReLU masks (bool arrays, in call order) and the stem max pool's indices, as
        :func:`float32_gradient_error_bounds` takes them.
    """
    masks, handles = _record_branches(model)
    try:
        model.train()
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    (indices, _shape) = model.maxpool._saved[-1]
    return out, (masks, np.asarray(indices))


class _Replay:
    """npresnet's training forward and backward in float64 torch, op by op, recording rounding points."""

    def __init__(self, model, masks, indices):
        self.terms = _Terms("reference")
        self.masks = iter(masks)
        self.indices = indices
        self.names = {id(m): name for name, m in model.named_modules()}
        self.grads: dict[str, torch.Tensor] = {}
        self.branch_margins: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (what, margin, differs)
        self.forward_count = 0

    def add(self, z, n, m):
        return self.terms.add(z, n, m)

    # forward
    def conv(self, conv, a):
        return self.add(
            _conv(conv, a, conv.weight, None), conv.weight[0].numel(), _conv(conv, a.abs(), conv.weight.abs(), None)
        )

    def bn(self, bn, x):
        M, axes = x.numel() // x.shape[1], (0, 2, 3)
        mean = self.add(x.mean(axes), M + 1, x.abs().mean(axes))
        d = self.add(x - _c(mean), 1, (x - _c(mean)).abs())
        sq = self.add(d * d, 1, d * d)
        var = self.add(sq.mean(axes), M + 1, sq.mean(axes))
        invstd = self.add(1 / torch.sqrt(var + bn.eps), 3, 1 / torch.sqrt(var + bn.eps))
        scale = self.add(invstd * bn.weight, 1, (invstd * bn.weight).abs())
        shift = self.add(bn.bias - mean * scale, 2, (mean * scale).abs() + bn.bias.abs())
        out = self.add(x * _c(scale) + _c(shift), 2, (x * _c(scale)).abs() + _c(shift).abs())
        return out, (x, mean, invstd, scale)

    def relu(self, x):
        mask = torch.from_numpy(next(self.masks)).to(x.dtype)
        self.branch_margins.append(("relu", x.abs(), (x > 0).to(x.dtype) != mask))
        return x * mask, mask

    def maxpool(self, pool, h):
        idx = torch.from_numpy(self.indices).long().flatten(2)  # (N, C, out_h·out_w), row·W + col in its plane
        out = h.flatten(2).gather(2, idx)
        k, s, p = pool.kernel_size, pool.stride, pool.padding
        windows = F.unfold(F.pad(h, (p, p, p, p), value=-torch.inf).flatten(0, 1)[:, None], k, stride=s)
        best = windows.max(dim=1).values.view(out.shape)  # the exact winner's value
        self.branch_margins.append(("max pool", best - out, best > out))
        return out.view(*h.shape[:2], *self.indices.shape[2:]), idx

    # backward
    def conv_backward(self, conv, a, g):
        W, args = conv.weight, (conv.stride, conv.padding, conv.dilation, conv.groups)
        O, _, kh, kw = W.shape
        gw = torch.nn.grad.conv2d_weight(a, W.shape, g, *args)
        self._grad(conv, "weight", gw, g.numel() // O, torch.nn.grad.conv2d_weight(a.abs(), W.shape, g.abs(), *args))
        gi = torch.nn.grad.conv2d_input(a.shape, W, g, *args)
        m = torch.nn.grad.conv2d_input(a.shape, W.abs(), g.abs(), *args)
        return self.add(gi, O // conv.groups + kh * kw, m)

    def bn_backward(self, bn, saved, g):
        x, mean, invstd, scale = saved
        M, axes = x.numel() // x.shape[1], (0, 2, 3)
        xhat = (x - _c(mean)) * _c(invstd)
        xhat = self.add(xhat, 2, xhat.abs())
        gb = self._grad(bn, "bias", g.sum(axes), M, g.abs().sum(axes))
        gw = self._grad(bn, "weight", (g * xhat).sum(axes), M + 1, (g * xhat).abs().sum(axes))
        gi = (M * g - _c(gb) - xhat * _c(gw)) * _c(scale / M)
        m = (M * g.abs() + _c(gb).abs() + (xhat * _c(gw)).abs()) * _c(scale.abs() / M)
        return self.add(gi, 6, m)

    def _grad(self, module, name, value, n, m):
        z = self.add(value, n, m)
        self.grads[f"{self.names[id(module)]}.{name}"] = z
        return z


def _c(v):
    """A (C,) vector broadcast over (N, C, H, W)."""
    return v[None, :, None, None]


def _train_step(r: _Replay, model, x, g):
    """Forward then backward of ``<model(x), g>``, as npresnet computes them; returns the input's gradient."""
    h = r.conv(model.conv1, x)
    h, stem_bn = r.bn(model.bn1, h)
    h, stem_mask = r.relu(h)
    pre_pool = h
    h, idx = r.maxpool(model.maxpool, h)
    tape = []
    for block in (b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage):
        pairs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        if hasattr(block, "conv3"):  # Bottleneck
            pairs.append((block.conv3, block.bn3))
        saved, identity, a = [], h, h
        for i, (conv, bn) in enumerate(pairs):
            z, s = r.bn(bn, r.conv(conv, a))
            saved.append((conv, bn, a, s))
            if i + 1 < len(pairs):
                a, mask = r.relu(z)
                saved[-1] += (mask,)
        down = None
        if block.downsample is not None:
            conv, bn = block.downsample[0], block.downsample[1]
            identity, s = r.bn(bn, r.conv(conv, h))
            down = (conv, bn, h, s)
        h, mask = r.relu(r.add(z + identity, 2, z.abs() + identity.abs()))
        tape.append((saved, down, mask))
    H, W = h.shape[2:]
    pooled = r.add(h.mean((2, 3)), H * W + H + W, h.abs().mean((2, 3)))
    fc = model.fc
    logits = r.add(
        F.linear(pooled, fc.weight, fc.bias),
        pooled.shape[1] + 1,
        F.linear(pooled.abs(), fc.weight.abs(), fc.bias.abs()),
    )
    r.forward_count = len(r.terms.z)
    r.logits = logits
    # backward, as ResNet.backward and the blocks' backward
    N = g.shape[0]
    r._grad(fc, "weight", g.T @ pooled, N, g.abs().T @ pooled.abs())
    r._grad(fc, "bias", g.sum(0), N, g.abs().sum(0))
    gp = r.add(g @ fc.weight, fc.weight.shape[0], g.abs() @ fc.weight.abs())
    grad = r.add(
        (gp / (H * W))[:, :, None, None].expand(h.shape), 4, (gp.abs() / (H * W))[:, :, None, None].expand(h.shape)
    )
    for saved, down, mask in reversed(tape):
        grad = grad * mask
        grad_identity = grad
        for i, item in reversed(list(enumerate(saved))):
            conv, bn, a, s = item[:4]
            if i + 1 < len(saved):
                grad = grad * item[4]
            grad = r.conv_backward(conv, a, r.bn_backward(bn, s, grad))
        if down is not None:
            conv, bn, a, s = down
            grad_identity = r.conv_backward(conv, a, r.bn_backward(bn, s, grad_identity))
        grad = r.add(grad + grad_identity, 2, grad.abs() + grad_identity.abs())
    flat = torch.zeros_like(pre_pool).flatten(2)
    pool = model.maxpool
    kh, kw = (pool.kernel_size,) * 2 if isinstance(pool.kernel_size, int) else pool.kernel_size
    sh, sw = (pool.stride,) * 2 if isinstance(pool.stride, int) else pool.stride
    grad = r.add(
        flat.scatter_add(2, idx, grad.flatten(2)).view(pre_pool.shape),
        -(-kh // sh) * -(-kw // sw),  # the windows that can share an input element, one float32 add each
        flat.scatter_add(2, idx, grad.abs().flatten(2)).view(pre_pool.shape),
    )
    grad = r.bn_backward(model.bn1, stem_bn, grad * stem_mask)
    return r.conv_backward(model.conv1, x, grad)


def float32_gradient_error_bounds(model: torch.nn.Module, x, grad_output, branches, directions):
    """Exact gradients of one training step and bounds on the float32 error of projections of them.

    Parameters
    ----------
    model : torchvision ResNet whose float32 weights npresnet holds; used in float64 on a deep copy
    x : numpy.ndarray float32, shape (N, 3, H, W); grad_output : numpy.ndarray float32, shape (N, classes)
        Taken as exact: the float32 run receives these very values.
    branches : (relu_masks, pool_indices), from :func:`float32_training_branches`
    directions : dict
        ``key -> v``, an array of the gradient's shape, for each gradient to bound: a state_dict
        parameter name, or ``"input"``.

    Returns
    -------
    exact : dict, key -> numpy.ndarray float64, every gradient (and ``"input"``) on the float32 run's branches
    bounds : dict, key -> float
        ``|<v, grad_float32> - <v, exact>| <= bounds[key]`` (the module docstring's bound, first order).
    flips : list of (what, margin, bound)
        Every branch the float32 run took differently from the exact computation, with the exact
        margin (``|relu input|``, or the window's best value minus the one taken) and the bound on
        that margin's float32 error.
    """
    model = copy.deepcopy(model).double()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.as_tensor(np.asarray(x)).double().requires_grad_(True)  # roots the graph
    g = torch.as_tensor(np.asarray(grad_output)).double().requires_grad_(True)  # so does every gradient
    r = _Replay(model, *branches)
    with torch.enable_grad():
        grad_x = _train_step(r, model, x, g)
        r.grads["input"] = grad_x
        outputs = {key: (r.grads[key] * torch.as_tensor(np.asarray(v)).double()).sum() for key, v in directions.items()}
        margins = [
            (what, margin.flatten()[i])
            for what, margin, differs in r.branch_margins
            for i in differs.flatten().nonzero()[:, 0]
        ]
        bounds = {key: _bound(f, r.terms) for key, f in outputs.items()}
        flips = [(what, float(m.detach()), _bound(m, r.terms, r.forward_count)) for what, m in margins]
    exact = {key: z.detach().numpy() for key, z in r.grads.items()}
    return exact, bounds, flips
