"""The shape-only pass equals the forward: for drawn layer configurations, valid and invalid,
``layer(TensorSpec(shape))`` has the shape of ``layer(x)``, or both raise the same error type
with the same message.

The oracle is the real forward on real arrays (itself tested against torch elsewhere); the
two issue counterexamples are pinned as plain tests.
"""

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from npresnet.nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, TensorSpec


def _outcome(fn):
    try:
        return "ok", tuple(fn().shape)
    except (ValueError, TypeError) as exc:
        return type(exc).__name__, str(exc)


def _assert_spec_equals_forward(layer, shape, dtype="float32"):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    real = _outcome(lambda: layer(x))
    spec = _outcome(lambda: layer(TensorSpec(shape, dtype)))
    assert spec == real, (layer, shape)
    return real


def test_strided_same_padding_is_refused_by_both():
    kind, message = _assert_spec_equals_forward(Conv2d(3, 4, 3, stride=2, padding="same"), (1, 3, 16, 16))
    assert kind == "ValueError" and "same" in message


def test_max_pool_padding_beyond_half_the_kernel_is_refused_by_both():
    kind, message = _assert_spec_equals_forward(MaxPool2d(3, 1, padding=2), (1, 3, 8, 8))
    assert kind == "ValueError" and "padding" in message


pairs = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
shapes4 = st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 12), st.integers(1, 12))
shapes = st.one_of(shapes4, shapes4.map(lambda s: s[1:]), st.tuples(st.integers(1, 4), st.integers(1, 6)))


@st.composite
def conv_layers(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c, o = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    padding = draw(
        st.one_of(
            st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)), st.sampled_from(["same", "valid"])
        )
    )
    return Conv2d(
        c,
        o,
        draw(pairs),
        stride=draw(pairs),
        padding=padding,
        dilation=draw(st.integers(1, 2)),
        groups=groups,
        bias=draw(st.booleans()),
        rng=0,
    )


@st.composite
def pool_layers(draw):
    k = draw(pairs)
    kh = k if isinstance(k, int) else k[0]
    return MaxPool2d(
        k,
        stride=draw(st.one_of(st.none(), pairs)),
        padding=draw(st.integers(0, kh // 2 + 1)),
        dilation=draw(st.integers(1, 2)),
        ceil_mode=draw(st.booleans()),
    )


layers = st.one_of(
    conv_layers(),
    pool_layers(),
    st.builds(
        AdaptiveAvgPool2d,
        st.one_of(
            st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)), st.tuples(st.none(), st.integers(1, 3))
        ),
    ),
    st.builds(Linear, st.integers(1, 12), st.integers(1, 4), bias=st.booleans(), rng=st.just(0)),
    st.builds(BatchNorm2d, st.integers(1, 6)),
    st.builds(ReLU, st.booleans()),
)


def _fit_channels(layer, shape):
    """``shape`` with the channel (or feature) axis the layer expects, so windows, not channels, decide."""
    channels = getattr(layer, "in_channels", getattr(layer, "num_features", None))
    if isinstance(layer, Linear):
        return (*shape[:-1], layer.in_features)
    if channels is None or len(shape) < 3:
        return shape
    return (*shape[:-3], channels, *shape[-2:])


@settings(max_examples=300, deadline=None)
@given(layer=layers, shape=shapes, fit=st.integers(0, 3), dtype=st.sampled_from(["float32", "float32", "float64"]))
def test_spec_shape_equals_forward_shape_or_the_same_error(layer, shape, fit, dtype):
    """Drawn layers on drawn shapes (3-D and 4-D, channel counts that mostly match and sometimes
    not, windows that may not fit, a dtype that may not match the float32 weights): the spec pass
    answers exactly what the forward answers."""
    if fit:
        shape = _fit_channels(layer, shape)
    kind, _ = _assert_spec_equals_forward(layer, shape, dtype)
    event(f"{type(layer).__name__}: {kind}")  # --hypothesis-show-statistics: both outcomes are drawn


@pytest.mark.parametrize("size", [7, 16, 31, 64])
def test_a_whole_resnet_spec_equals_its_forward(size):
    import npresnet

    model = npresnet.resnet18(init=False)
    _assert_spec_equals_forward(model, (1, 3, size, size))
