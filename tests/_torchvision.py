"""torchvision as the oracle: seeded reference ResNets and the plumbing to compare against them.

npresnet's model tests build a torchvision ResNet, give it non-trivial weights, send
those weights to npresnet *through a file on disk*, and compare outputs. This module is
the one home of that plumbing, so every test file builds its reference the same way.

A freshly constructed torchvision ResNet has batch norm weight 1, bias 0, running mean 0
and running variance 1: in eval mode every batch norm is the identity, and a bug that
swaps ``weight`` and ``running_var``, or ignores ``eps``, would go unnoticed.
:func:`torchvision_resnet` therefore

1. builds the model from a seed (torch's global RNG is forked, so callers' state is untouched),
2. draws every batch norm's affine parameters at random (weight ~ U(0.5, 1.5), bias ~ N(0, 0.25²)),
3. *calibrates* the running statistics with one training-mode forward pass of a seeded
   standard-normal batch (momentum 1, so they become that batch's mean and unbiased variance),
4. perturbs them (mean shifted by 0.1 standard deviations, variance scaled by a factor in
   [e^-0.25, e^0.25]) and sets ``num_batches_tracked`` to a random count.

Step 3 keeps activations at a realistic scale, as in a trained network: with random
running statistics that do not match the activations, a 50-block ResNet-152 multiplies its
activations by ~10^7 and a comparison "relative to the logits' scale" would say little about
the early layers. Step 4 keeps the statistics different from the batch's, so eval-mode batch
norm is a real affine map, not a normalisation that training-mode code would also pass.

Public API
----------
ARCHITECTURE_NAMES
    The ten builder names, in torchvision's order.
STEM, STAGES, HEAD
    Module names whose outputs the tests compare: the stem layers, the four stages, the head.
torchvision_resnet(name, seed=0, ...)
    The seeded, randomised, eval-mode reference model described above.
meta_resnet(name, **kwargs)
    A torchvision ResNet on PyTorch's ``meta`` device: shapes and parameter counts, no memory.
numpy_state_dict(model)
    ``OrderedDict`` of NumPy copies of a torch model's ``state_dict`` (key order kept).
save_pth(model, path), load_weights, save_weights
    Write a torch checkpoint; npresnet's own weight readers/writers.
npresnet_from_file(name, path, **kwargs)
    An npresnet model built by ``name`` and loaded with ``load_weights(path)``.
torch_forward(model, x), torch_intermediates(model, x, names)
    Run a torch model on a NumPy array; with forward hooks that *clone* each output
    (torchvision's ReLU is in place, so an uncloned ``bn1`` output would be overwritten).
block_names(model)
    Stem, every residual block (``"layer2.0"``), ``avgpool`` and ``fc``: the names to compare.
relative_error(actual, expected)
    ``max|actual - expected| / max|expected|``, the scale-relative error the tests bound.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch
import torchvision

import npresnet
from npresnet.weights import load_weights, save_weights

__all__ = [
    "ARCHITECTURE_NAMES",
    "STEM",
    "STAGES",
    "HEAD",
    "torchvision_resnet",
    "randomise_batch_norm",
    "meta_resnet",
    "numpy_state_dict",
    "save_pth",
    "load_weights",
    "save_weights",
    "npresnet_from_file",
    "torch_forward",
    "torch_intermediates",
    "block_names",
    "relative_error",
]

ARCHITECTURE_NAMES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
STEM = ("conv1", "bn1", "relu", "maxpool")
STAGES = ("layer1", "layer2", "layer3", "layer4")
HEAD = ("avgpool", "fc")

# One intra-op thread per process: pytest-xdist already runs one process per core, and
# two torch thread pools per core only slow each other down. Results do not depend on it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def _builder(name: str):
    if name not in ARCHITECTURE_NAMES:
        raise ValueError(f"unknown architecture {name!r}; expected one of {ARCHITECTURE_NAMES}")
    return getattr(torchvision.models, name)


def randomise_batch_norm(model: torch.nn.Module, seed: int = 0, calibration_shape=(4, 3, 64, 64)) -> torch.nn.Module:
    """Give every ``BatchNorm2d`` random affine parameters and calibrated, perturbed running statistics.

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place (steps 2–4 of the module docstring).
    seed : int
        Seeds a private ``torch.Generator``; the global RNG is not used.
    calibration_shape : tuple of int
        ``(N, 3, H, W)`` of the standard-normal batch whose statistics seed the running ones.

    Returns
    -------
    torch.nn.Module
        ``model``, in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=gen, dtype=torch.float64))
            bn.bias.copy_(0.25 * torch.randn(bn.bias.shape, generator=gen, dtype=torch.float64))
            bn.momentum = 1.0  # the calibration batch's statistics replace the running ones
        dtype = next(model.parameters()).dtype
        x = torch.randn(calibration_shape, generator=gen, dtype=torch.float64).to(dtype)
        model.train()
        model(x)
        model.eval()
        for bn in norms:
            bn.momentum = 0.1
            std = bn.running_var.sqrt()
            bn.running_mean.add_(0.1 * std * torch.randn(std.shape, generator=gen, dtype=torch.float64).to(dtype))
            bn.running_var.mul_(
                torch.exp(0.5 * torch.rand(std.shape, generator=gen, dtype=torch.float64) - 0.25).to(dtype)
            )
            bn.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (), generator=gen)))
    return model


def torchvision_resnet(
    name: str, seed: int = 0, *, dtype=torch.float32, randomise: bool = True, **kwargs
) -> torch.nn.Module:
    """A seeded torchvision ResNet in eval mode, with non-trivial batch norms.

    Parameters
    ----------
    name : str
        One of :data:`ARCHITECTURE_NAMES`.
    seed : int
        Seeds torchvision's initialisation (in a forked RNG) and :func:`randomise_batch_norm`.
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    randomise : bool
        False keeps torchvision's fresh initialisation (identity batch norms).
    **kwargs
        Passed to the torchvision builder (``replace_stride_with_dilation``, ``zero_init_residual``, …).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _builder(name)(weights=None, **kwargs)
    model = model.to(dtype)
    if randomise:
        randomise_batch_norm(model, seed)
    return model.eval()


def meta_resnet(name: str, **kwargs) -> torch.nn.Module:
    """A torchvision ResNet whose tensors live on the ``meta`` device (shapes only, nothing allocated)."""
    with torch.device("meta"):
        return _builder(name)(weights=None, **kwargs).eval()


def numpy_state_dict(model: torch.nn.Module) -> OrderedDict[str, np.ndarray]:
    """NumPy copies of ``model.state_dict()``, in its key order."""
    return OrderedDict((k, v.detach().cpu().numpy().copy()) for k, v in model.state_dict().items())


def save_pth(model: torch.nn.Module, path) -> str:
    """``torch.save(model.state_dict(), path)``, the way torchvision checkpoints are made; returns ``path``."""
    torch.save(model.state_dict(), path)
    return str(path)


def npresnet_from_file(name: str, path, **kwargs) -> npresnet.ResNet:
    """``npresnet.<name>(**kwargs)`` loaded, strictly, from the weight file at ``path``."""
    model = npresnet.ARCHITECTURES[name](init=False, **kwargs)  # no random draws: all are overwritten
    model.load_state_dict(load_weights(path))
    return model


def torch_forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """``model(x)`` without autograd, NumPy in and out."""
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def torch_intermediates(model: torch.nn.Module, x: np.ndarray, names):
    """Run ``model(x)`` and collect the outputs of the named submodules.

    Returns
    -------
    (np.ndarray, OrderedDict[str, np.ndarray])
        Logits and, per name, a clone of that module's output taken when it returned.
    """
    outputs = OrderedDict()

    def keep(name):
        def hook(_module, _input, output):
            outputs[name] = output.detach().clone().numpy()

        return hook

    handles = [model.get_submodule(name).register_forward_hook(keep(name)) for name in names]
    try:
        out = torch_forward(model, x)
    finally:
        for handle in handles:
            handle.remove()
    return out, outputs


def block_names(model) -> list[str]:
    """Stem layers, each residual block then its stage (``"layer2.0"``, …, ``"layer2"``), ``avgpool``, ``fc``.

    In execution order (a stage returns after its last block). Works for a torchvision or
    an npresnet ResNet: both index blocks as ``layerK.i``.
    """
    names = list(STEM)
    for stage in STAGES:
        names += [f"{stage}.{i}" for i in range(len(getattr(model, stage)))] + [stage]
    return names + list(HEAD)


def relative_error(actual, expected) -> float:
    """``max|actual - expected| / max|expected|`` (the plain max difference when ``expected`` is all zero)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} != expected {expected.shape}")
    scale = np.abs(expected).max(initial=0.0)
    diff = np.abs(actual - expected).max(initial=0.0)
    return diff / scale if scale else diff
