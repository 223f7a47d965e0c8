"""``model(x)`` on every kind of input: it returns what torchvision returns, or a clear error.

Issue 6, "Inputs": wrong rank, wrong channel count (with a channels-last hint), non-float
dtypes (a uint8 image gets told to normalise), float64 into a float32 model, empty
batches, NaN/Inf, sizes from 1×1 up. The oracle is torchvision fed the same array: every
case either gives torchvision's shape and values (NaN where torchvision has NaN) or raises
TypeError/ValueError whose message names the offending shape or dtype — and then
torchvision refuses the input too, so npresnet never rejects what torchvision accepts
(one deliberate exception: torchvision returns an empty result for an *empty* array of
any dtype, such as a (0, 3, H, W) uint8 batch; npresnet refuses the dtype regardless).

Values: NaN and infinity masks are compared in float32 as they are (exactly); finite values
either with both libraries in float64 on the same input, within ``FLOAT64_TOL`` (the same input
gives the same answer; a float32 comparison of the two would compare their rounding errors), or,
for the tiny inputs and the finite image beside NaNs, npresnet's float32 logits within the
float32 bound derived from the arithmetic (``tests/_bounds.py``).
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import npresnet
from _bounds import assert_logits_within_bounds
from _torchvision import STAGES, STEM, numpy_state_dict, relative_error, torch_intermediates, torchvision_resnet
from npresnet.nn import capture_intermediates

NAMES = [*STEM, *STAGES, "avgpool", "fc"]
FLOAT64_TOL = 1e-10  # relative to max|reference|, both libraries in float64 (as tests/models/test_resnet.py)


@pytest.fixture(scope="module")
def models():
    """(npresnet, torchvision) ResNet-18 with the same randomised weights."""
    reference = torchvision_resnet("resnet18", seed=31)
    model = npresnet.resnet18(init=False)
    model.load_state_dict(numpy_state_dict(reference))
    return model, reference


@pytest.fixture(scope="module")
def models64(models):
    """The same two models in float64 (the float32 weights widened exactly)."""
    model, reference = models
    model64 = npresnet.resnet18(init=False)
    model64.load_state_dict(model.state_dict())
    return model64.to(dtype=np.float64), copy.deepcopy(reference).double()


def _input(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _torch_outcome(reference, x):
    """torchvision's logits for ``x`` (NumPy), or the exception it raised."""
    try:
        with torch.no_grad():
            return reference(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    except (RuntimeError, ValueError, TypeError) as exc:
        return exc


def _assert_same_masks(actual, expected, what="logits"):
    """Same shape and dtype, NaN exactly where torchvision has NaN, the same infinities."""
    assert actual.shape == expected.shape, what
    assert actual.dtype == expected.dtype, what
    nan, inf = np.isnan(expected), np.isinf(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan, err_msg=f"{what}: NaN masks differ")
    np.testing.assert_array_equal(actual[inf], expected[inf], err_msg=f"{what}: infinities differ")


def _assert_same_values(actual, expected, what="logits"):
    """:func:`_assert_same_masks`, and the finite values within FLOAT64_TOL: both float64 results."""
    _assert_same_masks(actual, expected, what)
    finite = np.isfinite(expected)
    if finite.any():  # an infinity where torchvision is finite makes this error infinite
        assert relative_error(actual[finite], expected[finite]) <= FLOAT64_TOL, what


# ----------------------------------------------------------------------------- the named cases
@pytest.mark.parametrize("shape", [(3, 32, 32), (32, 32), (1, 1, 3, 32, 32), (5,)])
def test_wrong_rank(models, shape):
    model, reference = models
    x = _input(shape)
    with pytest.raises(ValueError, match=re.escape(str(shape))) as info:
        model(x)
    assert "4-D" in str(info.value)
    assert isinstance(_torch_outcome(reference, x), Exception)


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (2, 4, 32, 32), (1, 0, 8, 8)])
def test_wrong_channel_count(models, shape):
    model, reference = models
    with pytest.raises(ValueError, match=re.escape(str(shape))) as info:
        model(_input(shape))
    assert "3 channels" in str(info.value) and "channels-last" not in str(info.value)
    assert isinstance(_torch_outcome(reference, _input(shape)), Exception)


def test_channels_last_gets_a_hint(models):
    model, _ = models
    with pytest.raises(ValueError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        model(_input((2, 32, 32, 3)))


def test_uint8_image_is_told_to_normalise(models):
    model, reference = models
    x = np.random.default_rng(0).integers(0, 256, (1, 3, 32, 32), dtype=np.uint8)
    with pytest.raises(TypeError, match="uint8") as info:
        model(x)
    assert "255" in str(info.value) and "normalis" in str(info.value)
    assert isinstance(_torch_outcome(reference, x), Exception)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64, np.float16, np.float64])
def test_other_dtypes_are_refused_by_name(models, dtype):
    """Integers, booleans, complex and a float dtype other than the model's: TypeError naming it
    (torchvision refuses all of these too; float64 into a float32 model included)."""
    model, reference = models
    x = _input((1, 3, 16, 16)).astype(dtype)
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        model(x)
    assert isinstance(_torch_outcome(reference, x), Exception)


def test_float64_input_names_both_dtypes_and_the_fix(models):
    model, _ = models
    with pytest.raises(TypeError, match=r"float64.*float32.*astype"):
        model(_input((1, 3, 16, 16), dtype=np.float64))


@pytest.mark.parametrize("x", [[[1.0, 2.0]], 3.0, None], ids=["list", "float", "None"])
def test_non_arrays_are_refused(models, x):
    model, _ = models
    with pytest.raises((TypeError, ValueError), match="input"):
        model(x)


def test_torch_tensor_is_refused_clearly(models):
    model, _ = models
    with pytest.raises(TypeError, match="Tensor"):
        model(torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize("hw", [(32, 32), (1, 1), (7, 45)])
def test_empty_batch_returns_an_empty_result(models, hw):
    """N=0: shape (0, num_classes), as torchvision returns."""
    model, reference = models
    x = _input((0, 3, *hw))
    out = model(x)
    expected = _torch_outcome(reference, x)
    assert out.shape == expected.shape == (0, 1000) and out.dtype == np.float32


def test_nan_and_inf_propagate_like_torchvision(models, models64):
    """NaN masks equal torchvision's at every stem layer and stage, not only at the logits
    (which are all NaN once any NaN reaches global pooling); the finite values too (in float64),
    and the finite image's float32 logits within their derived bound."""
    model, reference = models
    x = _input((3, 3, 40, 36))
    x[0, 1, 5, 7] = np.nan  # image 0: one NaN pixel
    x[1, 0, 20, 3], x[1, 2, 0, 0] = np.inf, -np.inf  # image 1: infinities (inf*w - inf*w' = NaN later)
    # image 2 stays finite: its logits must be finite and match
    handles, expected = [], {}
    for name in NAMES:

        def keep(_m, _i, out, name=name):
            expected[name] = out.detach().clone().numpy()

        handles.append(reference.get_submodule(name).register_forward_hook(keep))
    ref = _torch_outcome(reference, x)
    for h in handles:
        h.remove()
    out, layers = capture_intermediates(model, x, NAMES)
    for name in NAMES:
        _assert_same_masks(layers[name], expected[name], name)
    _assert_same_masks(out, ref)
    assert np.isnan(layers["conv1"][0]).any() and not np.isnan(layers["conv1"][0]).all()  # a local NaN patch
    assert np.isfinite(out[2]).all()
    assert_logits_within_bounds(reference, x[2:], out[2:])  # the bound holds in any batch
    model64, reference64 = models64
    ref64, expected64 = torch_intermediates(reference64, x.astype(np.float64), NAMES)
    out64, layers64 = capture_intermediates(model64, x.astype(np.float64), NAMES)
    for name in NAMES:
        _assert_same_values(layers64[name], expected64[name], name)
    _assert_same_values(out64, ref64)


@pytest.mark.parametrize("hw", [(1, 1), (1, 2), (2, 1), (3, 3), (5, 8), (33, 1)])
def test_tiny_inputs(models, hw):
    model, reference = models
    x = _input((2, 3, *hw))
    out = model(x)
    _assert_same_masks(out, _torch_outcome(reference, x))
    assert_logits_within_bounds(reference, x, out)


# ----------------------------------------------------------------------------- the property
DTYPES = [np.float32, np.float32, np.float32, np.float64, np.float16, np.uint8, np.int64, np.bool_, np.complex64]


@st.composite
def inputs(draw):
    """Arrays of rank 2–5, mostly (N, 3, H, W) float32 with N, H, W from 0 up, some NaN/Inf."""
    rank = draw(st.sampled_from([4, 4, 4, 4, 3, 5, 2]))
    shape = (
        [draw(st.integers(0, 2))]
        + [draw(st.sampled_from([3, 3, 3, 1, 4]))]
        + [draw(st.integers(0, 40)) for _ in range(2)]
    )
    if rank == 3:
        shape = shape[1:]
    elif rank == 5:
        shape = shape + [draw(st.integers(1, 3))]
    elif rank == 2:
        shape = shape[2:]
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    if x.size and draw(st.booleans()):
        flat = x.reshape(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if np.dtype(dtype).kind in "iub":
        x = np.nan_to_num(x, nan=0, posinf=200, neginf=0)
        x = np.abs(x).astype(dtype) if np.dtype(dtype).kind != "b" else x > 0
    return x.astype(dtype)


# Each example is one small forward pass in each library (sizes <= 40): 100 examples run in a
# few seconds and cover every branch (rank, channels, dtype, N=0, H or W in {0, 1}, NaN/Inf).
# deadline=None: the first example pays for torch's lazy initialisation.
@settings(max_examples=100, deadline=None)
@given(x=inputs())
@example(x=np.zeros((0, 3, 1, 1), np.float32))
@example(x=np.full((1, 3, 1, 1), np.nan, np.float32))
@example(x=np.zeros((1, 3, 0, 5), np.float32))
def test_every_input_gives_torchvisions_answer_or_a_clear_error(models, models64, x):
    model, reference = models
    expected = _torch_outcome(reference, x)
    try:
        out = model(x)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        assert str(tuple(x.shape)) in message or x.dtype.name in message, message
        # torchvision computes nothing for an empty array and so accepts even an empty uint8
        # batch; npresnet checks rank, channels and dtype first, whatever the size.
        if x.size:
            assert isinstance(expected, Exception), f"torchvision accepts {x.shape} {x.dtype}; npresnet: {message}"
        return
    assert not isinstance(expected, Exception), f"npresnet accepted {x.shape} {x.dtype}; torchvision: {expected}"
    _assert_same_masks(out, expected)
    model64, reference64 = models64  # the values: x is float32 here (the model refuses any other dtype)
    _assert_same_values(model64(x.astype(np.float64)), _torch_outcome(reference64, x.astype(np.float64)))
