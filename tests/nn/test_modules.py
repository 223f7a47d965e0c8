"""The module tree and layer objects (npresnet.nn) against torch.nn.

Oracles: torch.nn layers with the same parameters, torch's module/state_dict naming, and
the state dicts the tests build by hand (for load_state_dict's error reporting).

Values: float32 results against torch in float64 on the same float32 values, within the bound
of their arithmetic (``gamma_n * sum|terms|`` for a layer, :mod:`_bounds` for a whole ResNet);
where what is tested is wiring and semantics (a tree in train and eval mode), both libraries
run in float64 and agree within ``FLOAT64_TOL``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import npresnet
from _bounds import assert_logits_within_bounds, gamma, torch_model_of
from _torchvision import numpy_state_dict, relative_error, torch_forward, torchvision_resnet
from npresnet import WeightsError
from npresnet.backend import available_backends
from npresnet.nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
    TensorSpec,
    capture_intermediates,
    check_state_dict,
)

FLOAT64_TOL = 1e-10  # relative to max|reference|, both libraries in float64 (as tests/models/test_resnet.py)


def _input(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _pair_of_trees():
    """The same small tree in npresnet.nn and torch.nn, torch's (seeded) parameters copied over."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1, bias=False), torch.nn.BatchNorm2d(8)),
        torch.nn.MaxPool2d(3, 2, 1),
        torch.nn.AdaptiveAvgPool2d((1, 1)),
    ).eval()
    ours = Sequential(
        Conv2d(3, 8, 3, stride=2, padding=1, bias=True),
        BatchNorm2d(8),
        ReLU(),
        Sequential(Conv2d(8, 8, 1, bias=False), BatchNorm2d(8)),
        MaxPool2d(3, 2, 1),
        AdaptiveAvgPool2d((1, 1)),
    )
    return ours, theirs


# ----------------------------------------------------------------------------- the tree
def test_names_and_state_dict_order_follow_torch():
    ours, theirs = _pair_of_trees()
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    assert len(ours) == 6 and isinstance(ours[3], Sequential) and ours.get_submodule("3.1") is ours[3][1]
    with pytest.raises(AttributeError, match="'9'"):
        ours.get_submodule("3.9")


def test_resnet_modules_and_repr_follow_torchvision():
    model = npresnet.resnet50(init=False)
    reference = torchvision_resnet("resnet50", randomise=False)
    assert [n for n, _ in model.named_modules()] == [n for n, _ in reference.named_modules()]
    assert "Bottleneck" in repr(model) and "(downsample)" in repr(model)


def test_new_models_are_in_eval_mode_and_train_eval_propagate():
    model = npresnet.resnet18(init=False)
    assert not any(m.training for m in model.modules())
    assert model.train() is model and all(m.training for m in model.modules())
    assert model.train(False) is model and not any(m.training for m in model.modules())
    model.train()
    assert model.eval() is model and not any(m.training for m in model.modules())


# ----------------------------------------------------------------------------- layers vs torch.nn
def test_small_tree_matches_torch_in_eval_and_train():
    """The tree's wiring, and batch norm's train and eval semantics (batch statistics, the running
    statistics' update), in float64 from the same float32 parameters: a wrong statistic is orders of
    magnitude above float64's rounding (float32 layers are bounded by the tests below)."""
    ours, theirs = _pair_of_trees()
    with torch.no_grad():  # non-trivial batch norms
        for bn in (theirs[1], theirs[3][1]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    ours.load_state_dict(numpy_state_dict(theirs))
    ours.to(dtype=np.float64)
    theirs.double()
    x = _input((2, 3, 15, 12), dtype=np.float64)
    assert relative_error(ours(x), torch_forward(theirs, x)) <= FLOAT64_TOL
    ours.train()
    theirs.train()
    assert relative_error(ours(x), torch_forward(theirs, x)) <= FLOAT64_TOL
    after = numpy_state_dict(theirs)
    for key, value in ours.state_dict().items():
        assert relative_error(value, after[key]) <= FLOAT64_TOL, key


@pytest.mark.parametrize("groups, dilation, bias", [(1, 1, True), (2, 2, False), (4, 1, True)])
def test_conv2d_layer_matches_torch(groups, dilation, bias):
    torch.manual_seed(1)
    theirs = torch.nn.Conv2d(8, 12, (3, 2), stride=(2, 1), padding=(1, 2), dilation=dilation, groups=groups, bias=bias)
    ours = Conv2d(8, 12, (3, 2), stride=(2, 1), padding=(1, 2), dilation=dilation, groups=groups, bias=bias)
    ours.load_state_dict(numpy_state_dict(theirs))
    x = _input((2, 8, 9, 7))
    exact = torch_forward(theirs.double(), x.astype(np.float64))
    # each output: K = 8/groups * 3 * 2 products and the bias, gamma_{K+1} * sum|terms| in any order
    with torch.no_grad():
        magnitude = torch.nn.functional.conv2d(
            torch.from_numpy(np.abs(x).astype(np.float64)),
            theirs.weight.abs(),
            None if theirs.bias is None else theirs.bias.abs(),
            theirs.stride,
            theirs.padding,
            theirs.dilation,
            groups,
        ).numpy()
    K = theirs.weight[0].numel()
    assert (np.abs(ours(x) - exact) <= gamma(K + 1) * magnitude).all()


def test_linear_relu_and_pools_match_torch():
    """float32 layers against torch's in float64, within the bound of their arithmetic: a sum of
    ``n`` terms is within ``n u sum|terms|`` of the exact one (``u = 2**-24``), in any order."""
    u = 2.0**-24
    torch.manual_seed(2)
    theirs = torch.nn.Linear(20, 7)
    ours = Linear(20, 7)
    ours.load_state_dict(numpy_state_dict(theirs))
    x = _input((3, 20))
    exact = torch_forward(theirs.double(), x.astype(np.float64))
    magnitude = np.abs(x.astype(np.float64)) @ np.abs(ours.weight.T.astype(np.float64)) + np.abs(ours.bias)
    assert (np.abs(ours(x) - exact) <= 21 * u * magnitude).all()  # 20 products and the bias
    x = _input((2, 3, 9, 11))
    for layer, reference, terms in (
        (MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1), 0),  # a max is exact
        (MaxPool2d(2), torch.nn.MaxPool2d(2), 0),
        (AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3)), 5 * 5 + 1),  # bins of up to 5×5, / count
        (ReLU(), torch.nn.ReLU(), 0),
    ):
        exact = torch_forward(reference, x.astype(np.float64))
        magnitude = torch_forward(reference, np.abs(x).astype(np.float64)) if terms else 0
        assert (np.abs(layer(x) - exact) <= terms * u * magnitude).all(), repr(layer)
    y = x.copy()
    out = ReLU(inplace=True)(y)
    assert out is y or np.shares_memory(out, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_default_initialisation_is_torchs():
    """U(±1/√fan_in) for Conv2d and Linear weights and biases (torch's kaiming_uniform_(a=√5))."""
    conv, linear = Conv2d(16, 32, 3, rng=0), Linear(300, 200, rng=0)
    for w, fan_in in ((conv.weight, 16 * 9), (conv.bias, 16 * 9), (linear.weight, 300), (linear.bias, 300)):
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() >= 0.9 * bound  # fills the interval, not a narrower one
    bound = 1 / math.sqrt(300)
    assert abs(linear.weight.std() / (bound / math.sqrt(3)) - 1) <= 6 / math.sqrt(2 * linear.weight.size)


# Cheap property (a tiny layer per example): 40 examples, deadline=None as the first example
# pays for torch's lazy initialisation.
@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 4),
    o=st.integers(1, 4),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
)
def test_spec_shapes_equal_real_shapes(c, o, k, s, p, d, h, w):
    """The shape-only pass gives the shape of the real computation, or the same ValueError."""
    conv = Conv2d(c, o, k, stride=s, padding=p, dilation=d, rng=0)
    layers = [conv, MaxPool2d(k, s, min(p, k // 2), d), BatchNorm2d(c), AdaptiveAvgPool2d((1, 2))]
    x = _input((2, c, h, w))
    for layer in layers:
        try:
            real = layer(x)
        except ValueError:
            with pytest.raises(ValueError):
                layer(TensorSpec(x.shape))
            continue
        assert layer(TensorSpec(x.shape)).shape == real.shape, repr(layer)


def test_tensor_spec():
    spec = TensorSpec((2, 3, 4, 5), "float64")
    assert spec.ndim == 4 and spec.size == 120 and spec.nbytes == 960
    assert spec.reshape(2, -1).shape == (2, 60)
    assert (spec + spec).shape == spec.shape
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        spec + TensorSpec((2, 3, 4, 6))
    with pytest.raises(ValueError, match="reshape"):
        spec.reshape(7, -1, 3)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\) for input of shape \(1, 3, 8, 8\)"):
        BatchNorm2d(4)(TensorSpec((1, 3, 8, 8)))  # the real forward's message


# ----------------------------------------------------------------------------- hooks
def test_forward_hooks_and_capture_intermediates():
    model = npresnet.resnet18(rng=0)
    seen = []
    handle = model.layer1.register_forward_hook(lambda m, i, o: seen.append((m, i.shape, o.shape)))
    x = _input((1, 3, 32, 32))
    model(x)
    assert seen == [(model.layer1, (1, 64, 8, 8), (1, 64, 8, 8))]
    handle.remove()
    model(x)
    assert len(seen) == 1

    out, layers = capture_intermediates(model, x, ["bn1", "relu", "fc"])
    assert list(layers) == ["bn1", "relu", "fc"]
    assert (layers["bn1"] < 0).any()  # kept as it was, though the in-place ReLU then overwrote it
    np.testing.assert_array_equal(layers["relu"], np.maximum(layers["bn1"], 0))
    np.testing.assert_array_equal(layers["fc"], out)
    _, everything = capture_intermediates(model, x)
    assert set(everything) == {n for n, _ in model.named_modules() if n}
    with pytest.raises(ValueError, match="layer9"):
        capture_intermediates(model, x, ["layer9"])
    with pytest.raises(ValueError):
        capture_intermediates(model, _input((1, 4, 32, 32)), ["conv1"])
    assert not any(m._forward_hooks for m in model.modules())  # nothing left behind, even after errors


# ----------------------------------------------------------------------------- load_state_dict
@pytest.fixture(scope="module")
def resnet18_state():
    return numpy_state_dict(torchvision_resnet("resnet18", seed=21))


def test_load_state_dict_reports_every_problem_at_once(resnet18_state):
    state = dict(resnet18_state)
    del state["fc.bias"], state["layer1.0.bn1.running_var"]
    state["extra.weight"] = np.zeros(3, np.float32)
    state["layer9.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    state["conv1.weight"] = state["conv1.weight"].transpose(1, 0, 2, 3)
    state["layer2.0.downsample.0.weight"] = state["layer2.0.downsample.0.weight"][:, :10]
    model = npresnet.resnet18(rng=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    for key in (
        "fc.bias",
        "layer1.0.bn1.running_var",
        "extra.weight",
        "layer9.0.conv1.weight",
        "conv1.weight",
        "layer2.0.downsample.0.weight",
    ):
        assert key in message, key
    assert "(3, 64, 7, 7)" in message and "(64, 3, 7, 7)" in message  # both shapes named
    assert "missing" in message and "unexpected" in message
    for key, value in model.state_dict().items():  # nothing was half-loaded
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_load_state_dict_non_strict(resnet18_state):
    state = dict(resnet18_state)
    del state["fc.bias"]
    state["extra.weight"] = np.zeros(3, np.float32)
    model = npresnet.resnet18(rng=0)
    fc_bias = model.fc.bias.copy()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert (missing, unexpected) == (["fc.bias"], ["extra.weight"])
    np.testing.assert_array_equal(model.fc.weight, state["fc.weight"])
    np.testing.assert_array_equal(model.fc.bias, fc_bias)
    state["fc.weight"] = state["fc.weight"][:10]
    with pytest.raises(WeightsError, match=r"fc\.weight"):
        model.load_state_dict(state, strict=False)  # a wrong shape is never tolerated


def test_load_state_dict_casts_float64_to_the_model_dtype(resnet18_state):
    state = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in resnet18_state.items()}
    model = npresnet.resnet18(init=False)
    model.load_state_dict(state)
    for key, value in model.state_dict().items():
        assert value.dtype == resnet18_state[key].dtype, key  # float32, and int64 counters
        np.testing.assert_array_equal(value, resnet18_state[key], err_msg=key)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(64, np.complex64),
        np.zeros(64, bool),
        np.empty(64, object),
        np.array(["x"] * 64),
    ],
)
def test_load_state_dict_rejects_non_float_dtypes(resnet18_state, bad):
    state = dict(resnet18_state)
    state["bn1.weight"] = bad
    with pytest.raises(WeightsError, match=rf"bn1\.weight.*{bad.dtype}"):
        npresnet.resnet18(init=False).load_state_dict(state)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8])
def test_load_state_dict_rejects_integer_weights(resnet18_state, dtype):
    state = dict(resnet18_state)
    state["bn1.weight"] = np.ones(64, dtype)
    with pytest.raises(WeightsError, match=r"bn1\.weight"):
        npresnet.resnet18(init=False).load_state_dict(state)


def test_load_state_dict_check_finite(resnet18_state):
    state = dict(resnet18_state)
    state["layer1.0.bn1.running_var"] = state["layer1.0.bn1.running_var"].copy()
    state["layer1.0.bn1.running_var"][3] = np.nan
    state["fc.weight"] = state["fc.weight"].copy()
    state["fc.weight"][0, 0] = -np.inf
    model = npresnet.resnet18(init=False)
    with pytest.raises(WeightsError) as info:
        model.load_state_dict(state, check_finite=True)
    assert "layer1.0.bn1.running_var" in str(info.value) and "fc.weight" in str(info.value)
    model.load_state_dict(state)  # by default, as torch, non-finite values load
    assert np.isnan(model.layer1[0].bn1.running_var[3]) and model.fc.weight[0, 0] == -np.inf


def test_check_state_dict_lists():
    own = {"a": np.zeros(2, np.float32), "b": np.zeros((2, 2), np.float32)}
    missing, unexpected, problems = check_state_dict(own, {"b": np.zeros(3, np.float32), "c": np.zeros(1)})
    assert missing == ["a"] and unexpected == ["c"]
    assert len(problems) == 1 and "b" in problems[0] and "(3,)" in problems[0] and "(2, 2)" in problems[0]


# ----------------------------------------------------------------------------- moving and casting
def test_to_float64_and_numpy(resnet18_state):
    model = npresnet.resnet18(init=False)
    model.load_state_dict(resnet18_state)
    x = _input((1, 3, 24, 20))
    out32 = model(x)
    reference = torch_model_of("resnet18", model)  # torchvision holding the same float32 weights
    assert_logits_within_bounds(reference, x, out32)
    assert model.to(dtype=np.float64) is model
    assert model.dtype == np.float64
    for key, value in model.state_dict().items():
        assert value.dtype == (np.int64 if key.endswith("num_batches_tracked") else np.float64), key
        np.testing.assert_array_equal(value, resnet18_state[key], err_msg=key)  # exact widening
    out64 = model(x.astype(np.float64))
    assert out64.dtype == np.float64
    assert relative_error(out64, torch_forward(reference.double(), x.astype(np.float64))) <= FLOAT64_TOL
    assert model.to("numpy") is model and model.backend == "numpy"
    assert all(type(v) is np.ndarray for v in model.state_dict().values())


@pytest.mark.parametrize("backend", available_backends())
def test_to_backend_round_trip(backend, resnet18_state):
    """On every backend present: model.to(backend) computes the exact result within the float32
    bound derived from the arithmetic (as on NumPy: two float32 results differ by both their
    rounding errors, so they are not compared with each other); back to NumPy is lossless."""
    model = npresnet.resnet18(init=False)
    model.load_state_dict(resnet18_state)
    x = _input((2, 3, 20, 28))
    reference = torch_model_of("resnet18", model)
    model.to(backend)
    assert model.backend == backend
    out = model(npresnet.to_backend(x, backend))
    assert_logits_within_bounds(reference, x, npresnet.to_numpy(out))
    model.to("numpy")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, resnet18_state[key], err_msg=key)


def test_to_cupy_without_a_gpu_says_why():
    if "cupy" in available_backends():
        pytest.skip("CuPy is usable here; test_to_backend_round_trip covers it")
    with pytest.raises(ValueError, match="cupy"):
        npresnet.resnet18(init=False).to("cupy")


def test_module_without_forward():
    class Empty(Module):
        pass

    with pytest.raises(NotImplementedError, match="Empty"):
        Empty()(np.zeros(1))
