"""batch_norm, linear, relu (the layers without windows) against torch.nn.functional and
independent NumPy expressions, on every backend."""

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import npresnet.functional as nf


def _t(a):
    return None if a is None else torch.from_numpy(a.copy())


@st.composite
def batch_norm_cases(draw):
    """(input, running_mean, running_var, weight, bias, momentum, eps) on the host, float64."""
    ndim = draw(st.integers(2, 4))
    C = draw(st.integers(1, 4))
    # at least 2 values per channel, as training needs
    shape = (draw(st.integers(1, 3)), C) + tuple(draw(st.integers(1, 4)) for _ in range(ndim - 2))
    if np.prod(shape) // C < 2:
        shape = (shape[0] + 1,) + shape[1:]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale, offset = draw(st.sampled_from([1.0, 1e-3, 100.0])), draw(st.sampled_from([0.0, 5.0]))
    x = rng.normal(offset, scale, shape)
    rm, rv = rng.normal(0, 1, C), rng.uniform(0.1, 3, C)
    w = rng.normal(1, 0.5, C) if draw(st.booleans()) else None
    b = rng.normal(0, 0.5, C) if draw(st.booleans()) else None
    momentum = draw(st.sampled_from([0.1, 0.0, 1.0]) | st.floats(0, 1))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return x, rm, rv, w, b, momentum, eps


@given(case=batch_norm_cases())
def test_batch_norm_inference_matches_torch(backend, case):
    x, rm, rv, w, b, momentum, eps = case
    args = [backend.put(a) for a in (x, rm, rv, w, b)]
    got = backend.get(nf.batch_norm(*args, training=False, momentum=momentum, eps=eps))
    want = F.batch_norm(_t(x), _t(rm), _t(rv), _t(w), _t(b), training=False, momentum=momentum, eps=eps).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    # the running statistics are not touched in inference
    assert np.array_equal(backend.get(args[1]), rm) and np.array_equal(backend.get(args[2]), rv)


@given(case=batch_norm_cases())
def test_batch_norm_training_matches_torch_and_updates_running_stats(backend, case):
    x, rm, rv, w, b, momentum, eps = case
    args = [backend.put(a) for a in (x, rm, rv, w, b)]
    got = backend.get(nf.batch_norm(*args, training=True, momentum=momentum, eps=eps))
    t_rm, t_rv = _t(rm), _t(rv)
    want = F.batch_norm(_t(x), t_rm, t_rv, _t(w), _t(b), training=True, momentum=momentum, eps=eps).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(want).max()))
    # in place, on the backend's arrays, as torch does
    np.testing.assert_allclose(backend.get(args[1]), t_rm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(backend.get(args[2]), t_rv.numpy(), rtol=1e-12, atol=1e-14)
    # and by the definition: new = (1 - momentum) * old + momentum * batch, unbiased variance
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(
        backend.get(args[1]),
        (1 - momentum) * rm + momentum * x.mean(axis=axes),
        rtol=1e-12,
        atol=1e-12 * max(1, np.abs(x).max()),
    )
    np.testing.assert_allclose(
        backend.get(args[2]), (1 - momentum) * rv + momentum * x.var(axis=axes, ddof=1), rtol=1e-10, atol=1e-14
    )


def test_batch_norm_running_var_is_unbiased_and_momentum_weights_the_new_value(backend):
    """A hand-checkable case: channel values 1, 3 -> batch mean 2, unbiased var 2 (biased 1)."""
    x = backend.put(np.array([[1.0], [3.0]]))
    rm, rv = backend.put(np.array([10.0])), backend.put(np.array([10.0]))
    out = backend.get(
        nf.batch_norm(x, rm, rv, training=True, momentum=0.25, eps=1e-12)
    )  # eps > 0 in training, as torch
    np.testing.assert_allclose(out, [[-1.0], [1.0]])  # by sqrt(biased variance 1 + 1e-12), 1 within rtol
    np.testing.assert_allclose(backend.get(rm), [0.75 * 10 + 0.25 * 2])
    np.testing.assert_allclose(backend.get(rv), [0.75 * 10 + 0.25 * 2])


def test_batch_norm_training_without_running_stats(backend):
    x = np.random.default_rng(0).normal(size=(4, 3, 2, 2))
    got = backend.get(nf.batch_norm(backend.put(x), None, None, training=True))
    want = F.batch_norm(_t(x), None, None, training=True).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@given(case=batch_norm_cases())
@example(case=(np.array([[5.001], [4.999], [5.0]]), np.zeros(1), np.ones(1), None, None, 0.1, 1e-5))
def test_batch_norm_float32_matches_torch(backend, case):
    """Within float32 rounding of the computation's scale. Both libraries compute
    ``x * a + (b - mean * a)`` with ``a = w / sqrt(var + eps)``; when |mean| >> std the two
    terms cancel, so the rounding is relative to ``|x| |a| + |mean| |a| + |b|``, not to the
    output (a mean of 5 with std 1e-3 leaves ~3 significant digits in float32, in torch too)."""
    x, rm, rv, w, b = (None if a is None else a.astype(np.float32) for a in case[:5])
    momentum, eps = case[5:]
    for training in (False, True):
        args = [backend.put(a) for a in (x, rm, rv, w, b)]
        got = backend.get(nf.batch_norm(*args, training=training, momentum=momentum, eps=eps))
        want = F.batch_norm(_t(x), _t(rm), _t(rv), _t(w), _t(b), training=training, momentum=momentum, eps=eps).numpy()
        assert got.dtype == np.float32
        x64 = x.astype(np.float64)
        axes = (0,) + tuple(range(2, x.ndim))
        mean, var = (x64.mean(axis=axes), x64.var(axis=axes)) if training else (rm, rv)
        a = (1.0 if w is None else np.abs(w)) / np.sqrt(var.astype(np.float64) + eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        magnitude = (np.abs(x64) + np.abs(mean).reshape(shape)) * a.reshape(shape) + (
            0 if b is None else np.abs(b).reshape(shape)
        )
        tol = 32 * np.finfo(np.float32).eps * magnitude
        assert np.all(np.abs(got - want.astype(np.float64)) <= tol), np.max(np.abs(got - want) / tol)


@st.composite
def linear_cases(draw):
    lead = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    fin, fout = draw(st.integers(1, 16)), draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.uniform(-1, 1, lead + (fin,))
    w = rng.uniform(-1, 1, (fout, fin))
    b = rng.uniform(-1, 1, fout) if draw(st.booleans()) else None
    return x, w, b


@given(case=linear_cases(), dtype=st.sampled_from([np.float64, np.float32]))
@example(case=(np.ones(3), np.ones((2, 3)), None), dtype=np.float64)  # 1-D input
def test_linear_matches_torch_and_definition(backend, case, dtype):
    x, w, b = (None if a is None else a.astype(dtype) for a in case)
    got = backend.get(nf.linear(*(backend.put(a) for a in (x, w, b))))
    want = F.linear(_t(x), _t(w), _t(b)).numpy()
    exact = np.einsum("...i,oi->...o", x.astype(np.float64), w.astype(np.float64)) + (0 if b is None else b)
    assert got.shape == want.shape == x.shape[:-1] + (w.shape[0],) and got.dtype == dtype
    K, eps = w.shape[1] + 1, np.finfo(dtype).eps
    bound = K * eps * (np.abs(x) @ np.abs(w).T + (0 if b is None else np.abs(b)))  # gamma_{K+1}-style
    assert np.all(np.abs(got - exact) <= bound) and np.all(np.abs(want - exact) <= bound)


@given(
    x=hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.float16]),
        hnp.array_shapes(min_dims=0, max_dims=4),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=16),
    )
)
def test_relu_matches_torch_incl_nan_and_inf(backend, x):
    got = backend.get(nf.relu(backend.put(x)))
    want = F.relu(torch.from_numpy(x.copy())).numpy()
    assert got.dtype == x.dtype and got.shape == x.shape
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.isnan(got), np.isnan(x))  # NaN stays NaN, nothing else becomes NaN


def test_relu_inplace_returns_the_input(backend):
    x = backend.put(np.array([-1.0, 0.0, 2.0, np.nan]))
    out = nf.relu(x, inplace=True)
    assert out is x
    assert np.array_equal(backend.get(x), [0.0, 0.0, 2.0, np.nan], equal_nan=True)
