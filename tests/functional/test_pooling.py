"""max_pool2d, avg_pool2d, adaptive_avg_pool2d: shapes against the formula and PyTorch,
values against the float64 oracle (npresnet.testing) and torch.nn.functional, on every backend."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st

import npresnet.functional as nf
from _examples import with_examples
from npresnet.testing import (
    AdaptivePoolConfig,
    PoolConfig,
    adaptive_pool_configs,
    assert_pool2d_matches,
    pool2d_configs,
    reference_adaptive_avg_pool2d,
)

EDGE_CASES = [
    # ceil mode would add a third window, but it starts in the right padding: dropped (2 outputs)
    PoolConfig("max", (1, 1, 5, 5), (2, 2), (3, 3), (1, 1), (1, 1), True),
    PoolConfig("avg", (1, 1, 5, 5), (2, 2), (3, 3), (1, 1), (1, 1), True, True),
    # ceil mode keeps a partial last window (stride 2 does not divide the span 3); its overhang
    # past the input is not counted by count_include_pad
    PoolConfig("avg", (1, 2, 5, 4), (2, 2), (2, 2), (0, 0), (1, 1), True, True),
    PoolConfig("max", (1, 2, 5, 4), (2, 2), (2, 2), (0, 0), (1, 1), True),
    # the ResNet stem pool: 3x3, stride 2, padding 1 on an odd size
    PoolConfig("max", (2, 1, 7, 7), (3, 3), (2, 2), (1, 1), (1, 1), False),
    # window that just fits (dilated 2x2 over a 3-wide input); non-square everything
    PoolConfig("max", (1, 1, 3, 6), (2, 3), (1, 2), (0, 1), (2, 1), False),
    PoolConfig("avg", (2, 3, 4), (3, 2), None, (1, 0), (1, 1), False, False),  # unbatched, stride=None
    PoolConfig("avg", (1, 1, 5, 5), (3, 3), (2, 2), (1, 1), (1, 1), True, False, -4),  # negative divisor
]


def _torch_pool(config, x):
    fn = F.max_pool2d if config.kind == "max" else F.avg_pool2d
    return fn(torch.from_numpy(x), **config.kwargs()).numpy()


def _ours(config):
    return nf.max_pool2d if config.kind == "max" else nf.avg_pool2d


@with_examples(EDGE_CASES)
@given(config=pool2d_configs())
def test_pool_shape_is_formula_and_torch(backend, config):
    x = np.zeros(config.input_shape)
    got = _ours(config)(backend.put(x), **config.kwargs())
    assert got.shape == config.output_shape() == _torch_pool(config, x).shape
    assert got.dtype == x.dtype


@with_examples(EDGE_CASES)
@given(config=pool2d_configs())
def test_pool_matches_float64_oracle(backend, config):
    """Max pooling exactly; average pooling within the rounding of a kh*kw-term sum."""
    assert_pool2d_matches(_ours(config), config, convert=backend.put)


@with_examples(EDGE_CASES, seed=0)
@given(config=pool2d_configs(), seed=st.integers(0, 2**16))
def test_pool_float32_matches_torch(backend, config, seed):
    """float32 vs float32 torch: max pooling bit for bit; average pooling within
    2 * (kh*kw + 1) * eps * max|x| (each side's sum-and-divide rounding)."""
    x = np.random.default_rng(seed).uniform(-1, 1, config.input_shape).astype(np.float32)
    got = backend.get(_ours(config)(backend.put(x), **config.kwargs()))
    want = _torch_pool(config, x)
    assert got.dtype == np.float32 and got.shape == want.shape
    if config.kind == "max":
        assert np.array_equal(got, want)
    else:
        kh, kw = config.kernel_size
        tol = 2 * (kh * kw + 1) * np.finfo(np.float32).eps * np.abs(x).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    assert_pool2d_matches(_ours(config), config, dtype=np.float32, seed=seed, convert=backend.put)


@given(config=pool2d_configs("max"), seed=st.integers(0, 2**16))
@example(config=PoolConfig("max", (1, 1, 2, 2), (3, 3), (1, 1), (1, 1), (1, 1), False), seed=0)
def test_max_pool_padding_is_minus_infinity(backend, config, seed):
    """With all inputs negative a zero-padded max pool would output 0 at the borders;
    padding must never win, so every output is an input value (or -inf for an all-padding
    dilated window), exactly as in torch."""
    x = np.random.default_rng(seed).uniform(-10, -1, config.input_shape)
    got = backend.get(nf.max_pool2d(backend.put(x), **config.kwargs()))
    assert np.all(got < 0)
    assert np.all(np.isin(got[np.isfinite(got)], x))
    assert np.array_equal(got, _torch_pool(config, x))


@given(config=pool2d_configs(), data=st.data())
def test_pool_nan_propagates_like_torch(backend, config, data):
    x = np.random.default_rng(0).uniform(-1, 1, config.input_shape)
    idx = tuple(data.draw(st.integers(0, n - 1)) for n in x.shape)
    x[idx] = np.nan
    got = backend.get(_ours(config)(backend.put(x), **config.kwargs()))
    want = _torch_pool(config, x)
    assert np.isnan(want).any() or not np.isnan(got).any()  # the NaN may sit outside every window
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert np.array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_float16_matches_torch(backend, kind):
    config = PoolConfig(kind, (2, 3, 7, 6), (3, 2), (2, 2), (1, 1), (1, 1), True)
    x = np.random.default_rng(1).uniform(-4, 4, config.input_shape).astype(np.float16)
    got = backend.get(_ours(config)(backend.put(x), **config.kwargs()))
    want = _torch_pool(config, x)
    assert got.dtype == np.float16
    if kind == "max":
        assert np.array_equal(got, want)
    else:  # torch accumulates float16 in float32, we in float16: a few float16 ulps apart
        np.testing.assert_allclose(got, want, rtol=0, atol=8 * np.finfo(np.float16).eps * 4)


# --------------------------------------------------------------------------- adaptive
ADAPTIVE_EDGES = [
    AdaptivePoolConfig((1, 2, 7, 7), 1),  # global average pooling, as in ResNet's head
    AdaptivePoolConfig((1, 1, 5, 7), (3, 3)),  # overlapping bins: 5 and 7 not multiples of 3
    AdaptivePoolConfig((2, 3, 2), (5, 4)),  # output larger than input (bins repeat), unbatched
    AdaptivePoolConfig((1, 1, 4, 6), (None, 4)),  # None keeps the input height
]


def _adaptive_examples(test):
    for config in ADAPTIVE_EDGES:
        test = example(config=config)(test)
    return test


@_adaptive_examples
@given(config=adaptive_pool_configs())
def test_adaptive_avg_pool_matches_oracle_and_torch(backend, config):
    x = np.random.default_rng(0).uniform(-1, 1, config.input_shape)
    got = backend.get(nf.adaptive_avg_pool2d(backend.put(x), config.output_size))
    oracle = reference_adaptive_avg_pool2d(x, config.output_size)
    want = F.adaptive_avg_pool2d(torch.from_numpy(x), config.output_size).numpy()
    assert got.shape == oracle.shape == want.shape
    # a bin has at most H*W terms; both sides round a sum and a division in float64
    tol = 4 * (x.shape[-1] * x.shape[-2] + 1) * np.finfo(np.float64).eps
    np.testing.assert_allclose(got, oracle, rtol=0, atol=tol)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


@given(config=adaptive_pool_configs())
def test_adaptive_avg_pool_float32_matches_torch(backend, config):
    x = np.random.default_rng(0).uniform(-1, 1, config.input_shape).astype(np.float32)
    got = backend.get(nf.adaptive_avg_pool2d(backend.put(x), config.output_size))
    want = F.adaptive_avg_pool2d(torch.from_numpy(x), config.output_size).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * (x.shape[-1] * x.shape[-2] + 1) * np.finfo(np.float32).eps)


@given(config=adaptive_pool_configs(), data=st.data())
def test_adaptive_avg_pool_nan_and_inf_reach_only_their_bins(backend, config, data):
    # torch averages each bin's own cells, so a NaN or an infinity shows only in the bins that hold it
    # (two averaging-matrix products would spread it everywhere: 0 * nan is NaN)
    x = np.random.default_rng(0).uniform(-1, 1, config.input_shape)
    for value in data.draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=3)):
        x[tuple(data.draw(st.integers(0, n - 1)) for n in x.shape)] = value
    with np.errstate(invalid="ignore"):  # inf and -inf in one bin: NaN, with NumPy's warning
        got = backend.get(nf.adaptive_avg_pool2d(backend.put(x), config.output_size))
    want = F.adaptive_avg_pool2d(torch.from_numpy(x), config.output_size).numpy()
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[np.isinf(want)], want[np.isinf(want)])  # same infinities, same signs
    finite = np.isfinite(want)
    assert not finite.all() or np.isfinite(got).all()
    tol = 4 * (x.shape[-1] * x.shape[-2] + 1) * np.finfo(np.float64).eps  # as the finite test above
    np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=tol)
