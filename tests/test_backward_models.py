"""Backward through modules and whole ResNets against torchvision + autograd.

Every architecture: a seeded torchvision model (random batch norms, see ``_torchvision``) is saved
to a ``.pth`` on disk and loaded into npresnet; both run one training-mode forward on the same
batch and a backward of the same random ``grad_output`` at the logits. Every parameter's gradient
(keyed by its state_dict name), the input gradient, and the updated running statistics must match.

Input 2×3×64×48: batch 2 and layer4 at 2×2, so every batch norm normalises over at least 8 values
(with only 2 the centred values are ±1 and the input gradient cancels to rounding noise).
"""

import numpy as np
import pytest
import torch

import npresnet
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


def test_float32_gradients_are_as_accurate_as_torchs():
    """ResNet-18 in float32: every gradient's error against float64 autograd is at most 3x (plus
    a floor of 4 eps) the error of torch's own float32 autograd on the same weights and batch."""
    ref64 = torchvision_resnet("resnet18", seed=3, dtype=torch.float64)
    ref32 = torchvision_resnet("resnet18", seed=3, dtype=torch.float32)
    model = npresnet.resnet18(init=False)
    model.load_state_dict(numpy_state_dict(ref32))
    x, g = _batch(5)
    _, truth_x, truth = _torch_step(ref64, x, g)
    _, torch_x, theirs = _torch_step(ref32, x.astype(np.float32), g.astype(np.float32))
    model.train()
    model(x.astype(np.float32))
    grad_x = model.backward(g.astype(np.float32))
    assert grad_x.dtype == np.float32
    floor = 4 * np.finfo(np.float32).eps
    assert relative_error(grad_x, truth_x) <= 3 * relative_error(torch_x, truth_x) + floor
    for key, grad in model.named_grads():
        assert grad.dtype == np.float32, key
        ours, torchs = relative_error(grad, truth[key]), relative_error(theirs[key], truth[key])
        assert ours <= 3 * torchs + floor, f"{key}: {ours:.2e} vs torch's {torchs:.2e}"


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
