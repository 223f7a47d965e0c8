"""npresnet.optim against torch.optim: five SGD steps of ResNet-18 follow torch's trajectory."""

import numpy as np
import pytest
import torch

import npresnet
import npresnet.functional as nf
from _torchvision import numpy_state_dict, relative_error, torchvision_resnet
from npresnet.optim import SGD, CosineAnnealingLR, StepLR

# float64, 5 steps: parameters and running statistics agree with torch's to rounding (measured
# ~1e-12). Input 64x64 keeps layer4 at 2x2, so batch norm sees 16 values per channel: with a
# 1x1 layer4 and a large lr the run is chaotic and any rounding difference grows ~30x per step.
TOL = 1e-9


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.02),
        dict(lr=0.02, momentum=0.9, weight_decay=1e-3, nesterov=True),
        dict(lr=0.02, momentum=0.9, dampening=0.3, weight_decay=5e-4),
    ],
    ids=["plain", "nesterov+wd", "dampening+wd"],
)
def test_five_sgd_steps_follow_torch(kwargs):
    reference = torchvision_resnet("resnet18", seed=11, dtype=torch.float64, num_classes=10)
    model = npresnet.resnet18(init=False, num_classes=10, dtype=np.float64)
    model.load_state_dict(numpy_state_dict(reference))
    reference.train()
    model.train()
    torch_opt = torch.optim.SGD(reference.parameters(), **kwargs)
    opt = SGD(model, **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.standard_normal((4, 3, 64, 64))
        y = rng.integers(0, 10, 4)

        torch_opt.zero_grad()
        loss_t = torch.nn.functional.cross_entropy(reference(torch.from_numpy(x)), torch.from_numpy(y))
        loss_t.backward()
        torch_opt.step()

        opt.zero_grad()
        logits = model(x)
        loss = nf.cross_entropy(logits, y)
        model.backward(nf.cross_entropy_backward(1.0, logits, y))
        opt.step()
        assert relative_error(loss, loss_t.item()) <= TOL
    theirs = numpy_state_dict(reference)
    for key, value in model.state_dict().items():
        assert relative_error(value, theirs[key]) <= TOL, key
    if kwargs.get("momentum"):
        for key, p in reference.named_parameters():
            buf = torch_opt.state[p]["momentum_buffer"].numpy()
            assert relative_error(opt.state[key]["momentum_buffer"], buf) <= TOL, key


def test_sgd_skips_parameters_without_gradient_and_checks_arguments():
    layer = npresnet.nn.Linear(2, 2, rng=0, dtype=np.float64)
    before = layer.weight.copy()
    SGD(layer, lr=1.0).step()
    np.testing.assert_array_equal(layer.weight, before)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(layer, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr must be"):
        SGD(layer, lr=-1)
    with pytest.raises(TypeError, match="npresnet Module"):
        SGD([layer.weight], lr=0.1)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_schedules_match_torch(schedule):
    layer = npresnet.nn.Linear(2, 2, rng=0)
    opt = SGD(layer, lr=0.4)
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    if schedule == "step":
        ours, theirs = StepLR(opt, 3, gamma=0.5), torch.optim.lr_scheduler.StepLR(t_opt, 3, gamma=0.5)
    else:
        ours, theirs = (
            CosineAnnealingLR(opt, 7, eta_min=0.01),
            torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, 7, eta_min=0.01),
        )
    for _ in range(10):
        t_opt.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], rel=1e-12, abs=1e-15)
