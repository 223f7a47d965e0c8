"""Backward through modules and whole ResNets against torchvision + autograd.

Every architecture: a seeded torchvision model (random batch norms, see ``_torchvision``) is saved
to a ``.pth`` on disk and loaded into npresnet; both run one training-mode forward on the same
batch and a backward of the same random ``grad_output`` at the logits. Every parameter's gradient
(keyed by its state_dict name), the input gradient, and the updated running statistics must match.

Input 2×3×64×48: batch 2 and layer4 at 2×2, so every batch norm normalises over at least 8 values
(with only 2 the centred values are ±1 and the input gradient cancels to rounding noise).
"""

import copy

import numpy as np
import pytest
import torch

import npresnet
from _rounding import float32_gradient_error_bounds, float32_training_branches
from _torchvision import (
    ARCHITECTURE_NAMES,
    npresnet_from_file,
    numpy_state_dict,
    relative_error,
    save_pth,
    torchvision_resnet,
)
from npresnet import nn

SHAPE = (2, 3, 64, 48)
# float64: gradients are sums over many paths and ~100 layers deep, and torch sums in another
# order; measured worst 3e-12 (wide_resnet101_2), bounded with margin.
FLOAT64_TOL = 1e-10


def _batch(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(SHAPE).astype(dtype), rng.standard_normal((SHAPE[0], 1000)).astype(dtype)


def _torch_step(reference, x, g):
    """Training-mode forward and backward of ``<model(x), g>`` in torch; returns (input grad, param grads)."""
    reference.train()
    tx = torch.tensor(x, requires_grad=True)
    out = reference(tx)
    out.backward(torch.from_numpy(g))
    grads = {k: p.grad.detach().numpy() for k, p in reference.named_parameters()}
    return out.detach().numpy(), tx.grad.numpy(), grads


@pytest.mark.parametrize("name", ARCHITECTURE_NAMES)
def test_gradients_match_torchvision_autograd(name, tmp_path):
    reference = torchvision_resnet(name, seed=ARCHITECTURE_NAMES.index(name), dtype=torch.float64)
    model = npresnet_from_file(name, save_pth(reference, tmp_path / f"{name}.pth"), dtype=np.float64)
    x, g = _batch(ARCHITECTURE_NAMES.index(name))
    ref_out, ref_grad_x, ref_grads = _torch_step(reference, x, g)

    model.train()
    out = model(x)
    assert relative_error(out, ref_out) <= FLOAT64_TOL
    grad_x = model.backward(g)
    assert relative_error(grad_x, ref_grad_x) <= FLOAT64_TOL, "input gradient"
    grads = dict(model.named_grads())
    assert list(grads) == list(ref_grads)  # one gradient per parameter, torch's names and order
    for key, ref in ref_grads.items():
        assert grads[key].shape == ref.shape, key
        assert relative_error(grads[key], ref) <= FLOAT64_TOL, key
    # batch norm in training mode updated the running statistics as torch did
    theirs = numpy_state_dict(reference)
    for key, value in model.state_dict().items():
        if "running" in key or "num_batches_tracked" in key:
            assert relative_error(value, theirs[key]) <= FLOAT64_TOL, key
    # the saved activations are released by the backward
    assert all(not m._saved for m in model.modules())


def test_float32_gradients_within_derived_bounds():
    """ResNet-18 in float32, one training step: every gradient (each parameter's and the input's) is
    within its derived bound (``_rounding.float32_gradient_error_bounds``) of the exact one.

    Each gradient is checked through the projection ``<v, grad>`` on ``v = t + r``: ``t`` the unit
    vector along torch's float64 gradient (a bug that scales, drops or adds a term moves it), ``r`` a
    random unit vector orthogonal to ``t`` (it sees errors across the gradient). The bound sums every
    rounding of the forward and of the backward, so it holds on any BLAS kernel and thread count. It
    is tight enough that a gradient off by a relative 1e-3 fails: checked below on every gradient.
    """
    ref32 = torchvision_resnet("resnet18", seed=3, dtype=torch.float32)
    ref64 = copy.deepcopy(ref32).double()  # the same weights, exactly
    model = npresnet.resnet18(init=False)
    model.load_state_dict(numpy_state_dict(ref32))
    x, g = (a.astype(np.float32) for a in _batch(5))  # both implementations see these very values
    _, truth_x, truth = _torch_step(ref64, x.astype(np.float64), g.astype(np.float64))
    truth["input"] = truth_x

    _, branches = float32_training_branches(model, x)
    grad_x = model.backward(g)
    assert grad_x.dtype == np.float32
    ours = dict(model.named_grads())
    ours["input"] = grad_x
    assert list(ours) == list(truth)

    rng = np.random.default_rng(0)
    directions = {}
    for key, t in truth.items():
        t = t / np.linalg.norm(t)
        r = rng.standard_normal(t.shape)
        r -= (r * t).sum() * t
        directions[key] = t + r / np.linalg.norm(r)
    exact, bounds, flips = float32_gradient_error_bounds(ref32, x, g, branches, directions)
    for what, margin, bound in flips:  # a branch may go the other way only within rounding distance
        assert margin <= bound, f"{what} took the other branch with margin {margin:.2e} > bound {bound:.2e}"
    if not flips:  # the replay is the same computation as torch's autograd
        for key in truth:
            assert relative_error(exact[key], truth[key]) <= FLOAT64_TOL, key
    for key, grad in ours.items():
        assert grad.dtype == np.float32, key
        v = directions[key]
        error = abs(float((grad.astype(np.float64) * v).sum() - (exact[key] * v).sum()))
        assert error <= bounds[key], f"{key}: projected error {error:.2e} > bound {bounds[key]:.2e}"
        planted = abs(float((grad.astype(np.float64) * (1 + 1e-3) * v).sum() - (exact[key] * v).sum()))
        assert planted > bounds[key], f"{key}: a relative 1e-3 error ({planted:.2e}) passes the bound {bounds[key]:.2e}"


def test_gradients_accumulate_until_zero_grad():
    """Two backward passes add up, as torch's .grad; zero_grad forgets them; eval drops saved activations."""
    layer = nn.Linear(3, 2, rng=0, dtype=np.float64)
    layer.train()
    x = np.random.default_rng(0).standard_normal((4, 3))
    layer(x)
    layer.backward(np.ones((4, 2)))
    once = layer.grads["weight"].copy()
    layer(x)
    layer.backward(np.ones((4, 2)))
    np.testing.assert_allclose(layer.grads["weight"], 2 * once)
    np.testing.assert_allclose(once, np.ones((2, 4)) @ x)
    layer.zero_grad()
    assert dict(layer.named_grads()) == {}
    layer(x)
    assert layer._saved
    layer.eval()
    assert not layer._saved


def test_backward_without_training_forward_is_a_clear_error():
    model = npresnet.resnet18(rng=0, num_classes=3)
    model(np.zeros((1, 3, 32, 32), np.float32))  # eval mode: nothing saved
    with pytest.raises(RuntimeError, match="without a matching forward in training mode"):
        model.backward(np.ones((1, 3), np.float32))


def test_eval_forward_saves_nothing():
    model = npresnet.resnet18(rng=0, num_classes=3)
    model(np.zeros((2, 3, 32, 32), np.float32))
    assert all(not m._saved for m in model.modules())
