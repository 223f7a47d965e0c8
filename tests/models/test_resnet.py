"""The ResNet family against torchvision: structure, numbers, shapes, weights round trip.

Oracles: torchvision/torch (models built by ``tests/_torchvision.py``: seeded, with random
batch-norm affine parameters and calibrated-then-perturbed running statistics, so no batch
norm is the identity), the output-size formula chained by hand, and torchvision's published
parameter counts. Nothing here compares npresnet with a number npresnet produced.

Tolerances, for test_matches_torchvision_at_every_layer:

* float64, both libraries: every recorded output within ``1e-10 * max|reference|``
  (measured: at most 4.3e-13, ResNet-152).
* float32: the logits within the error bound derived from the arithmetic of npresnet's modules
  (``tests/_rounding/``: per logit, from the operations' term counts and magnitudes and the float64
  gradients), so the same rule holds for ResNet-18 and ResNet-152 on any BLAS, thread count or batch.
  The float64 check at every layer locates a wrong formula; the float32 one bounds its rounding.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import npresnet
from _bounds import assert_logits_within_bounds, assert_stage_within_bounds, torch_model_of
from _rounding import logit_bounds
from _torchvision import (
    ARCHITECTURE_NAMES,
    HEAD,
    STAGES,
    block_names,
    meta_resnet,
    npresnet_from_file,
    numpy_state_dict,
    relative_error,
    save_pth,
    save_weights,
    torch_forward,
    torch_intermediates,
    torchvision_resnet,
)
from npresnet.nn import BatchNorm2d, Conv2d, TensorSpec, capture_intermediates
from npresnet.shapes import conv_output_size

FLOAT64_TOL = 1e-10  # relative to max|reference|, both libraries in float64


def _input(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _converted(name, tmp_path, seed=0, **kwargs):
    """(torchvision model, npresnet model loaded from a torch.save'd .pth of it)."""
    reference = torchvision_resnet(name, seed=seed, **kwargs)
    path = save_pth(reference, tmp_path / f"{name}.pth")
    return reference, npresnet_from_file(name, path, **kwargs)


def _captured_on_host(backend, model, x, names):
    """``capture_intermediates`` run on ``backend``, with the logits and every layer copied to the host."""
    out, layers = capture_intermediates(model, backend.put(x), names)
    return backend.get(out), {name: backend.get(value) for name, value in layers.items()}


# ----------------------------------------------------------------------------- 1. all ten, every layer
@pytest.mark.parametrize("name", ARCHITECTURE_NAMES)
def test_matches_torchvision_at_every_layer(name, tmp_path, backend):
    """Logits and the output of every stem layer, block, stage, avgpool and fc match torchvision,
    in float32 and in float64, with weights passed through a ``torch.save`` checkpoint on disk.

    One test per architecture builds each pair of models once (the big ones take seconds).
    Input 2×3×40×56: a batch of two (catches mixing across images), non-square, odd sizes
    inside (40 → 20 → 10 → 10 → 5 → 3 → 2), small enough for CI. Runs on every backend
    (CuPy skipped with the reason where no GPU is usable); results are compared on the host.
    """
    reference, model = _converted(name, tmp_path, seed=ARCHITECTURE_NAMES.index(name))
    model.to(backend.name)
    names = block_names(model)
    assert names == block_names(reference)
    x = _input((2, 3, 40, 56))

    out32, out32_layers = _captured_on_host(backend, model, x, names)
    assert out32.dtype == np.float32 and out32.shape == (2, 1000)
    assert list(out32_layers) == names  # every requested module ran, in torchvision's order
    (rows, classes), exact, bounds = logit_bounds(reference, x, mode="reference")
    error = np.abs(out32[rows, classes].astype(np.float64) - exact)
    assert (error <= bounds).all(), f"{name}: float32 logit error {error.max():.2e} above its bound"

    reference.double()
    model.to(dtype=np.float64)
    ref64, ref64_layers = torch_intermediates(reference, x.astype(np.float64), names)
    out64, out64_layers = _captured_on_host(backend, model, x.astype(np.float64), names)
    assert out64.dtype == np.float64

    for layer in names:
        assert out32_layers[layer].shape == ref64_layers[layer].shape, layer
        err64 = relative_error(out64_layers[layer], ref64_layers[layer])
        assert err64 <= FLOAT64_TOL, f"{name} {layer}: float64 relative error {err64:.2e}"
    assert relative_error(out64, ref64) <= FLOAT64_TOL


# ----------------------------------------------------------------------------- 2. structure
@pytest.mark.parametrize("name", ARCHITECTURE_NAMES)
def test_state_dict_layout_is_torchvisions(name):
    """Same keys in the same order (num_batches_tracked included), same shapes, same
    parameter count as torchvision (read from a meta-device model: nothing allocated)."""
    reference = meta_resnet(name)
    model = npresnet.ARCHITECTURES[name](init=False)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        assert tuple(ours[key].shape) == tuple(tensor.shape), key
        expected = np.int64 if key.endswith("num_batches_tracked") else np.float32
        assert ours[key].dtype == expected, key
    assert model.num_parameters() == sum(p.numel() for p in reference.parameters())
    assert [n for n, _ in model.named_modules()] == [n for n, _ in reference.named_modules()]


@pytest.mark.parametrize("name, published", [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_published_parameter_counts(name, published):
    """torchvision's documented counts (its model table), independent of torchvision's code."""
    assert npresnet.ARCHITECTURES[name](rng=0).num_parameters() == published


def _shapes(layers):
    return {name: tuple(out.shape[1:]) for name, out in layers.items()}


LEARNER = ["conv1", "maxpool", *STAGES, *HEAD]


def test_resnet18_shapes_at_224():
    """The shapes a learner expects, from the TensorSpec pass, a real npresnet run
    and a real torchvision run."""
    expected = {
        "conv1": (64, 112, 112),
        "maxpool": (64, 56, 56),
        "layer1": (64, 56, 56),
        "layer2": (128, 28, 28),
        "layer3": (256, 14, 14),
        "layer4": (512, 7, 7),
        "avgpool": (512, 1, 1),
        "fc": (1000,),
    }
    model = npresnet.resnet18(rng=0)
    spec_out, spec_layers = capture_intermediates(model, TensorSpec((1, 3, 224, 224)), LEARNER)
    assert spec_out.shape == (1, 1000)
    assert _shapes(spec_layers) == expected
    x = _input((1, 3, 224, 224))
    _, real_layers = capture_intermediates(model, x, LEARNER)
    assert _shapes(real_layers) == expected
    _, torch_layers = torch_intermediates(torchvision_resnet("resnet18", randomise=False), x, LEARNER)
    assert _shapes(torch_layers) == expected


def test_resnet50_shapes_at_512():
    """ResNet-50 at 512×512: TensorSpec pass vs torchvision on the meta device."""
    expected = {
        "layer1": (256, 128, 128),
        "layer2": (512, 64, 64),
        "layer3": (1024, 32, 32),
        "layer4": (2048, 16, 16),
        "avgpool": (2048, 1, 1),
        "fc": (1000,),
    }
    model = npresnet.resnet50(rng=0)
    _, spec_layers = capture_intermediates(model, TensorSpec((1, 3, 512, 512)), LEARNER)
    reference = meta_resnet("resnet50")
    meta_layers = OrderedDict()
    handles = [
        reference.get_submodule(n).register_forward_hook(lambda _m, _i, out, n=n: meta_layers.__setitem__(n, out))
        for n in LEARNER
    ]
    reference(torch.empty(1, 3, 512, 512, device="meta"))
    for h in handles:
        h.remove()
    assert _shapes(meta_layers) == _shapes(spec_layers)
    for name, shape in expected.items():
        assert _shapes(spec_layers)[name] == shape


# ----------------------------------------------------------------------------- 3. input sizes
def _formula_shapes(h, w, maxpool_padding=1):
    """Output (H, W) of the stem layers and stages, chained by hand from the output-size formula."""

    def chain(n):
        sizes = {"conv1": conv_output_size(n, 7, 2, 3)}
        sizes["maxpool"] = sizes["layer1"] = conv_output_size(sizes["conv1"], 3, 2, maxpool_padding)
        previous = sizes["layer1"]
        for stage in ("layer2", "layer3", "layer4"):
            # the 3x3 stride-2 pad-1 convolution; the 1x1 stride-2 shortcut has the same formula
            sizes[stage] = previous = conv_output_size(previous, 3, 2, 1)
        return sizes

    along_h, along_w = chain(h), chain(w)
    return {layer: (along_h[layer], along_w[layer]) for layer in along_h}


@pytest.fixture(scope="module")
def pairs():
    """torchvision and npresnet ResNet-18 and ResNet-50 with the same weights, in float64, built once."""
    out = {}
    for name in ("resnet18", "resnet50"):
        reference = torchvision_resnet(name, seed=11)
        model = npresnet.ARCHITECTURES[name](init=False)
        model.load_state_dict(numpy_state_dict(reference))
        out[name] = (reference.double(), model.to(dtype=np.float64))
    return out


SIZE_NAMES = ["conv1", "maxpool", *STAGES, "fc"]


# Heavy property (two full forward passes per example): 15 examples per architecture keep the
# test under ~20 s on a 2-core runner while still drawing non-square, odd, tiny (1 px) and
# large-ish sizes; deadline=None because one example takes up to a second. In float64: what varies
# here is the geometry (every size's padding and window edges), and a float64 comparison at
# FLOAT64_TOL sees a misplaced pixel that a float32 bound could not; float32 arithmetic is bounded
# in test_matches_torchvision_at_every_layer.
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 160), w=st.integers(1, 160))
@example(n=1, h=1, w=1)
@example(n=1, h=2, w=3)
@example(n=1, h=33, w=224)
@example(n=1, h=257, w=31)
def test_any_input_size_matches_torchvision_and_formula(pairs, name, n, h, w):
    reference, model = pairs[name]
    x = _input((n, 3, h, w), seed=h * 1000 + w, dtype=np.float64)
    ref, ref_layers = torch_intermediates(reference, x, SIZE_NAMES)
    out, out_layers = capture_intermediates(model, x, SIZE_NAMES)
    formula = _formula_shapes(h, w)
    for layer in SIZE_NAMES[:-1]:
        assert out_layers[layer].shape[2:] == formula[layer] == ref_layers[layer].shape[2:], layer
    assert out.shape == ref.shape == (n, 1000)
    assert relative_error(out, ref) <= FLOAT64_TOL


def test_smallest_input():
    """1×1 is the smallest input (every layer maps 1 → 1); with the padding-0 stem pool it is
    5×5 (conv1 gives 3, the 3×3 pool needs 3), and 4×4 is refused — torchvision agrees."""
    for h, w in ((1, 1), (1, 7)):
        assert npresnet.resnet18(rng=0)(_input((1, 3, h, w))).shape == (1, 1000)
    model = npresnet.resnet18(rng=0, maxpool_padding=0)
    reference = torchvision_resnet("resnet18", randomise=False)
    reference.maxpool.padding = 0
    assert model(_input((1, 3, 5, 5))).shape == tuple(torch_forward(reference, _input((1, 3, 5, 5))).shape)
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\)|too small"):
        model(_input((1, 3, 4, 4)))
    with pytest.raises(RuntimeError):
        torch_forward(reference, _input((1, 3, 4, 4)))


# ----------------------------------------------------------------------------- 4. round trip
@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_round_trip_back_to_torchvision(name, suffix, tmp_path):
    """torchvision → .pth → npresnet → save_weights → torchvision (strict) gives bit-identical
    tensors and bit-identical outputs."""
    safetensors_torch = pytest.importorskip("safetensors.torch") if suffix == ".safetensors" else None
    reference, model = _converted(name, tmp_path, seed=5)
    path = tmp_path / f"back{suffix}"
    save_weights(model.state_dict(), path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            state = {k: torch.from_numpy(archive[k]) for k in archive.files}
    else:
        state = safetensors_torch.load_file(str(path))
    fresh = torchvision_resnet(name, seed=99, randomise=False)
    fresh.load_state_dict(state, strict=True)
    for key, tensor in reference.state_dict().items():
        assert state[key].dtype == tensor.dtype and torch.equal(state[key], tensor), key
    x = torch.from_numpy(_input((2, 3, 48, 40)))
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), reference(x))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_loads_npz_and_safetensors_written_by_torch_side(suffix, tmp_path):
    """Files written by NumPy / safetensors.torch (not by npresnet) load bit for bit and give torchvision's
    logits (within the float32 bound derived from the arithmetic, against torchvision in float64)."""
    reference = torchvision_resnet("resnet34", seed=3)
    path = tmp_path / f"w{suffix}"
    if suffix == ".npz":
        np.savez(path, **numpy_state_dict(reference))
    else:
        pytest.importorskip("safetensors.torch").save_file(reference.state_dict(), str(path))
    model = npresnet.resnet34(weights=str(path))
    for key, value in numpy_state_dict(reference).items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)
    x = _input((1, 3, 37, 45))
    assert_logits_within_bounds(reference, x, model(x))


# ----------------------------------------------------------------------------- 5. variants
def test_maxpool_padding_0_stem_gives_55_and_matches_torchvision():
    model = npresnet.resnet18(maxpool_padding=0)
    _, spec = capture_intermediates(model, TensorSpec((1, 3, 224, 224)), ["maxpool", "layer4"])
    assert spec["maxpool"].shape == (1, 64, 55, 55)
    assert spec["layer4"].shape == (1, 512, 7, 7)
    reference = torchvision_resnet("resnet18", seed=4)
    reference.maxpool.padding = 0
    model.load_state_dict(numpy_state_dict(reference))
    x = _input((1, 3, 64, 72))
    ref, ref_layers = torch_intermediates(reference, x, ["maxpool"])
    out, layers = capture_intermediates(model, x, ["maxpool"])
    assert layers["maxpool"].shape == ref_layers["maxpool"].shape == (1, 64, 15, 17)
    assert out.shape == ref.shape
    assert_logits_within_bounds(reference, x, out)  # the bound's forward runs reference's own padding-0 pool
    with pytest.raises(ValueError, match="maxpool_padding"):
        npresnet.resnet18(maxpool_padding=2)


def test_dilated_resnet50_matches_torchvision():
    """replace_stride_with_dilation=[False, True, True]: output stride 8, torchvision's values."""
    kwargs = dict(replace_stride_with_dilation=[False, True, True])
    reference = torchvision_resnet("resnet50", seed=6, **kwargs)
    model = npresnet.resnet50(init=False, **kwargs)
    model.load_state_dict(numpy_state_dict(reference))
    x = _input((1, 3, 48, 40))
    ref, ref_layers = torch_intermediates(reference, x, ["layer4"])
    out, layers = capture_intermediates(model, x, ["layer4"])
    assert layers["layer4"].shape == ref_layers["layer4"].shape == (1, 2048, 6, 5)
    assert out.shape == ref.shape
    assert_stage_within_bounds(reference, x, "layer4", layers["layer4"])  # float32, against float64
    assert_logits_within_bounds(reference, x, out)
    with pytest.raises(ValueError, match="replace_stride_with_dilation"):
        npresnet.resnet50(replace_stride_with_dilation=[True, True])


@pytest.mark.parametrize("name, last_bn", [("resnet18", "bn2"), ("resnet50", "bn3")])
def test_zero_init_residual(name, last_bn):
    """torchvision's semantics: exactly the last BN of every block starts at weight 0, so every
    block without a downsample starts as the identity."""
    model = npresnet.ARCHITECTURES[name](rng=0, zero_init_residual=True)
    reference = torchvision_resnet(name, randomise=False, zero_init_residual=True)
    zero_ours = {k for k, v in model.state_dict().items() if k.endswith(".weight") and not v.any()}
    zero_theirs = {k for k, v in reference.state_dict().items() if k.endswith(".weight") and not v.any()}
    assert zero_ours == zero_theirs
    assert zero_ours and all(k.endswith(f"{last_bn}.weight") for k in zero_ours)
    _, layers = capture_intermediates(model, _input((1, 3, 32, 32)), ["layer1.0", "layer1.1"])
    np.testing.assert_array_equal(layers["layer1.1"], layers["layer1.0"])  # block input is >= 0


def test_initialisation_statistics():
    """Kaiming normal (fan-out, ReLU gain) for convolutions, BN 1/0 with fresh statistics, fc U(±1/√fan_in).

    Sample moments are tested with 6-standard-error bands, so a correct init fails with
    probability ~1e-9 per check, while a wrong gain (√2 too large), fan-in instead of fan-out,
    or a uniform law (wrong fraction within one σ) fails for every large layer.
    """
    model = npresnet.resnet50(rng=123)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, Conv2d)]
    checked = 0
    for name, conv in convs:
        w = conv.weight.astype(np.float64).ravel()
        if w.size < 20_000:
            continue
        o, _, kh, kw = conv.weight.shape
        sigma = math.sqrt(2.0 / (o * kh * kw))
        n = w.size
        assert abs(w.mean()) <= 6 * sigma / math.sqrt(n), name
        assert abs(w.std() / sigma - 1) <= 6 / math.sqrt(2 * n), name
        within = np.mean(np.abs(w) <= sigma)
        assert abs(within - 0.682689) <= 6 * math.sqrt(0.2171 / n), name  # normal, not uniform
        checked += 1
    assert checked >= 40
    for name, bn in model.named_modules():
        if isinstance(bn, BatchNorm2d):
            assert (bn.weight == 1).all() and (bn.bias == 0).all(), name
            assert (bn.running_mean == 0).all() and (bn.running_var == 1).all(), name
            assert bn.num_batches_tracked == 0, name
    bound = 1 / math.sqrt(2048)
    for w in (model.fc.weight, model.fc.bias):
        assert np.abs(w).max() <= bound
    assert abs(model.fc.weight.std() / (bound / math.sqrt(3)) - 1) <= 6 / math.sqrt(2 * model.fc.weight.size)


def test_seeding():
    same = [npresnet.resnet18(rng=7).state_dict(), npresnet.resnet18(rng=np.random.default_rng(7)).state_dict()]
    other = npresnet.resnet18(rng=8).state_dict()
    for key, value in same[0].items():
        np.testing.assert_array_equal(value, same[1][key], err_msg=key)
        if key.endswith("conv1.weight") or key in ("fc.weight", "fc.bias"):
            assert not np.array_equal(value, other[key]), key


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_train_mode_matches_torchvision(name):
    """train(): batch statistics normalise, running statistics update (momentum 0.1, unbiased
    variance) and num_batches_tracked counts, as torchvision in train mode; eval() then uses them.

    The semantics are checked in float64 at FLOAT64_TOL, both libraries from the same float32
    weights: a wrong momentum, or a biased variance (a factor M/(M-1), 1 + 1e-3 at the stem's
    M = 960), is orders of magnitude above float64's rounding.
    Then eval() in float32 within the derived bound, against the statistics npresnet itself updated.
    """
    reference = torchvision_resnet(name, seed=8)
    model = npresnet.ARCHITECTURES[name](init=False)
    model.load_state_dict(numpy_state_dict(reference))
    x = _input((2, 3, 40, 48))
    model.to(dtype=np.float64).train()
    reference.double().train()
    assert all(m.training for m in model.modules())
    out, ref = model(x.astype(np.float64)), torch_forward(reference, x.astype(np.float64))
    assert relative_error(out, ref) <= FLOAT64_TOL
    theirs = numpy_state_dict(reference)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert value == theirs[key], key
        elif "running" in key:
            assert relative_error(value, theirs[key]) <= FLOAT64_TOL, key
        else:
            np.testing.assert_array_equal(value, theirs[key], err_msg=key)  # parameters untouched
    model.eval()
    assert not any(m.training for m in model.modules())
    model.to(dtype=np.float32)  # the statistics rounded once; the bound's model holds these very values
    assert_logits_within_bounds(torch_model_of(name, model), x, model(x))
