"""Backward of every layer function against PyTorch's autograd, on every backend.

Oracles: ``torch.autograd`` on the same float64 values (every property), central finite
differences in float64 (small cases, an oracle that knows nothing of either implementation),
and the adjoint identity ``<im2col(x), y> == <x, col2im(y)>``.

Bounds. float64: scale-relative error ``max|ours - torch| / max|torch| <= 1e-10``. float32: each
gradient entry is a sum of ``n`` products; computed in any order it is within
``gamma_n * sum|terms|`` of the exact value (Higham 3.1). For conv2d the test computes that bound
elementwise (the same backward on ``|g|``, ``|x|``, ``|w|`` gives ``sum|terms|``); so for linear and
the three poolings, whose oracle is given the float32 values the float32 run gets (then only the
backward's own roundings separate the two). Batch norm's bound follows its formula step by step
(see the test).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import npresnet.functional as nf
from _bounds import gamma
from _examples import with_examples
from _torchvision import relative_error
from npresnet.testing import ConvConfig, PoolConfig, conv2d_configs, pool2d_configs

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

F64 = 1e-10


def _t(a, grad=False):
    return None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _torch_grads(fn, arrays, grad_output):
    """Run ``fn(*tensors)`` under autograd and return the gradients of ``<fn(...), grad_output>``."""
    tensors = [_t(a, grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(torch.from_numpy(np.asarray(grad_output, dtype=np.float64)))
    return [None if t is None else t.grad.numpy() for t in tensors]


# --------------------------------------------------------------------------- conv2d, im2col, col2im
CONV_EDGE = [
    ConvConfig((1, 2, 5, 4), (2, 2, 2, 4), True, (1, 1), "same", (1, 1), 1),  # 'same', odd pad bottom/right
    ConvConfig((1, 1, 9, 9), (2, 1, 7, 3), True, (2, 2), (3, 1), (1, 1), 1),  # stride does not divide the span
    ConvConfig((3, 4, 5), (6, 1, 3, 3), True, (2, 1), (1, 1), (1, 2), 3),  # depthwise x2, unbatched
    ConvConfig((2, 2, 3, 1), (3, 2, 3, 3), False, (1, 1), (0, 1), (1, 1), 1),  # window just fits
]


def _conv_case(config, seed, dtype):
    x, w, b = config.arrays(seed=seed, dtype=np.float64)
    out_shape = config.output_shape()
    g = np.random.default_rng(seed + 1).uniform(-1, 1, out_shape)
    return x, w, b, g


@with_examples(CONV_EDGE, dtype=np.float64)
@given(config=conv2d_configs(), dtype=st.sampled_from([np.float64, np.float32]))
def test_conv2d_backward_matches_autograd(backend, config, dtype):
    x, w, b, g = _conv_case(config, 0, dtype)
    kw = config.kwargs()
    expected = _torch_grads(lambda x, w, b: TF.conv2d(x, w, b, **kw), (x, w, b), g)
    put = lambda a: backend.put(a.astype(dtype))
    got = nf.conv2d_backward(put(g), put(x), put(w), **kw)
    names = ("grad_input", "grad_weight", "grad_bias")
    if dtype == np.float64:
        for name, ours, ref in zip(names, got, expected):
            if ref is not None:
                assert relative_error(backend.get(ours), ref) <= F64, (name, config)
        return
    # float32: |ours - exact| <= gamma_n * (the same gradients of |g|, |x|, |w|), elementwise
    magnitude = _torch_grads(lambda x, w, b: TF.conv2d(x, w, b, **kw), (abs(x), abs(w), None), abs(g))
    O, Cg, kh, kw_ = config.weight_shape
    n_input = O // config.groups * kh * kw_  # terms per input pixel, at most
    n_weight = int(np.prod(config.output_shape())) // O  # N*out_h*out_w terms per weight
    for name, ours, ref, mag, n in zip(names, got, expected, magnitude + [None], (n_input, n_weight)):
        bound = 2 * (gamma(n + 1) * mag) + 2 * np.finfo(np.float32).eps * abs(ref) + 1e-30
        assert np.all(abs(backend.get(ours).astype(np.float64) - ref) <= bound), (name, config)
    if b is not None:  # grad_bias: a sum of N*out_h*out_w values of g
        axes = tuple(i for i in range(g.ndim) if i != g.ndim - 3)  # all but the channel axis
        bound = 2 * gamma(n_weight + 1) * abs(g).sum(axis=axes)
        assert np.all(abs(backend.get(got[2]).astype(np.float64) - expected[2]) <= bound + 1e-30)
    assert backend.get(got[2]).dtype == np.float32


FOLD_EDGE = [c for c in CONV_EDGE if not isinstance(c.padding, str)]


@with_examples(FOLD_EDGE)
@given(config=conv2d_configs(same_and_valid=False))
def test_col2im_is_torch_fold(backend, config):
    """col2im mirrors torch.nn.functional.fold: same arguments, same output."""
    H, W = config.input_shape[-2:]
    kw = dict(
        kernel_size=config.weight_shape[2:], dilation=config.dilation, padding=config.padding, stride=config.stride
    )
    x = np.zeros(config.input_shape)
    cols_shape = nf.im2col(x, **kw).shape
    y = np.random.default_rng(0).uniform(-1, 1, cols_shape)
    expected = TF.fold(torch.from_numpy(y), (H, W), **kw).numpy()
    got = backend.get(nf.col2im(backend.put(y), (H, W), **kw))
    assert got.shape == expected.shape
    assert relative_error(got, expected) <= F64


@with_examples(FOLD_EDGE, seed=0)
@given(config=conv2d_configs(same_and_valid=False), seed=st.integers(0, 2**16))
def test_col2im_is_adjoint_of_im2col(backend, config, seed):
    """<im2col(x), y> == <x, col2im(y)> for random x, y: col2im is im2col's transpose."""
    H, W = config.input_shape[-2:]
    kw = dict(
        kernel_size=config.weight_shape[2:], dilation=config.dilation, padding=config.padding, stride=config.stride
    )
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, config.input_shape)
    cols = backend.get(nf.im2col(backend.put(x), **kw))
    y = rng.uniform(-1, 1, cols.shape)
    back = backend.get(nf.col2im(backend.put(y), (H, W), **kw))
    lhs, rhs = np.sum(cols * y), np.sum(x * back)
    scale = np.sum(abs(cols * y)) + 1e-300
    assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)


def test_col2im_adds_overlapping_windows():
    """3x3 windows, stride 1, on a 4x4 image: an all-ones column matrix folds back to the window counts."""
    ones = np.ones((1, 9, 4))
    counts = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]], dtype=float)
    np.testing.assert_array_equal(nf.col2im(ones, 4, 3)[0, 0], counts)


def test_col2im_rejects_a_shape_that_does_not_fit():
    with pytest.raises(ValueError, match=r"col2im: input of shape \(1, 9, 5\)"):
        nf.col2im(np.zeros((1, 9, 5)), 4, 3)
    with pytest.raises(ValueError, match="conv2d_backward: grad_output"):
        nf.conv2d_backward(np.zeros((1, 2, 3, 3)), np.zeros((1, 1, 5, 5)), np.zeros((2, 1, 3, 3)), padding=1)


# --------------------------------------------------------------------------- pooling
MAX_EDGE = [
    PoolConfig("max", (2, 1, 7, 7), (3, 3), (2, 2), (1, 1), (1, 1), False),  # the ResNet stem pool
    PoolConfig("max", (1, 2, 5, 4), (2, 2), (2, 2), (0, 0), (1, 1), True),  # ceil-mode partial window
    PoolConfig("max", (1, 1, 3, 6), (2, 3), (1, 2), (0, 1), (2, 1), False),  # dilated, just fits
]


def _pool_input(config, seed, ties):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: most windows hold several equal maxima
        return rng.integers(-1, 2, config.input_shape).astype(np.float64)
    return rng.uniform(-1, 1, config.input_shape)


@with_examples(MAX_EDGE, seed=0, ties=True)
@given(config=pool2d_configs("max"), seed=st.integers(0, 2**16), ties=st.booleans())
def test_max_pool2d_indices_are_torch_indices(backend, config, seed, ties):
    """Values and indices equal torch's exactly, ties included (the first max in scan order)."""
    x = _pool_input(config, seed, ties)
    out, idx = nf.max_pool2d(backend.put(x), return_indices=True, **config.kwargs())
    t_out, t_idx = TF.max_pool2d(torch.from_numpy(x), return_indices=True, **config.kwargs())
    np.testing.assert_array_equal(backend.get(out), t_out.numpy())
    np.testing.assert_array_equal(backend.get(idx), t_idx.numpy())
    assert backend.get(idx).dtype == np.int64
    plain = nf.max_pool2d(backend.put(x), **config.kwargs())
    np.testing.assert_array_equal(backend.get(plain), t_out.numpy())


def test_max_pool2d_ties_pick_the_first_max_as_torch():
    """A constant image: every window is one big tie; torch reports each window's first (top-left) element."""
    x = np.zeros((1, 1, 5, 5))
    _, idx = nf.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    _, t_idx = TF.max_pool2d(torch.from_numpy(x), 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(idx, t_idx.numpy())
    np.testing.assert_array_equal(idx[0, 0], [[0, 1, 3], [5, 6, 8], [15, 16, 18]])


@with_examples(MAX_EDGE, seed=0, ties=True, dtype=np.float64)
@given(
    config=pool2d_configs("max"),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_max_pool2d_backward_matches_autograd(backend, config, seed, ties, dtype):
    x = _pool_input(config, seed, ties)
    g = np.random.default_rng(seed + 1).uniform(-1, 1, config.output_shape())
    x, g = x.astype(dtype).astype(np.float64), g.astype(dtype).astype(np.float64)  # what the run gets
    # torch 2.14 writes out of bounds (heap corruption) for a dilated window wholly in the padding;
    # test_max_pool2d_backward_drops_windows_that_saw_no_input covers those
    assume(not np.isneginf(nf.max_pool2d(x, **config.kwargs())).any())
    (expected,) = _torch_grads(lambda x: TF.max_pool2d(x, **config.kwargs()), (x,), g)
    _, idx = nf.max_pool2d(backend.put(x.astype(dtype)), return_indices=True, **config.kwargs())
    got = backend.get(nf.max_pool2d_backward(backend.put(g.astype(dtype)), idx, x.shape))
    assert got.dtype == dtype and got.shape == x.shape
    if dtype == np.float64:
        assert relative_error(got, expected) <= F64
        return
    # float32: each input gathers the (exact) gradients of the windows it won, at most one per tap,
    # so at most kh*kw - 1 additions: within gamma_{kh*kw} * sum|g| of them, elementwise
    (magnitude,) = _torch_grads(lambda x: TF.max_pool2d(x, **config.kwargs()), (x,), abs(g))
    kh, kw = config.kernel_size
    assert np.all(abs(got.astype(np.float64) - expected) <= gamma(kh * kw) * magnitude)


def test_max_pool2d_backward_drops_windows_that_saw_no_input():
    """kernel 2, dilation 3, padding 1 on a 2x2 input: the window's taps are rows/columns -1 and 2,
    both outside. Its output is -inf, and its gradient reaches no input element."""
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    out, idx = nf.max_pool2d(x, 2, stride=2, padding=1, dilation=3, return_indices=True)
    assert out.shape == (1, 1, 1, 1) and np.isneginf(out).all()
    t_out, t_idx = TF.max_pool2d(torch.from_numpy(x), 2, stride=2, padding=1, dilation=3, return_indices=True)
    np.testing.assert_array_equal(idx, t_idx.numpy())  # torch's forward agrees; its backward corrupts memory
    np.testing.assert_array_equal(nf.max_pool2d_backward(np.ones((1, 1, 1, 1)), idx, x.shape), np.zeros_like(x))


@given(config=pool2d_configs("avg"), seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float64, np.float32]))
def test_avg_pool2d_backward_matches_autograd(backend, config, seed, dtype):
    x = np.random.default_rng(seed).uniform(-1, 1, config.input_shape)
    g = np.random.default_rng(seed + 1).uniform(-1, 1, config.output_shape()).astype(dtype).astype(np.float64)
    (expected,) = _torch_grads(lambda x: TF.avg_pool2d(x, **config.kwargs()), (x,), g)
    kw = config.kwargs()
    got = backend.get(nf.avg_pool2d_backward(backend.put(g.astype(dtype)), x.shape, **kw))
    assert got.dtype == dtype and got.shape == x.shape
    if dtype == np.float64:
        assert relative_error(got, expected) <= F64, config
        return
    # float32: g / divisor (the divisor's cast and the division: 2 roundings), then kh row-offset
    # additions and kw column-offset ones (at most kh - 1 + kw - 1 roundings on any path), so within
    # gamma_{kh+kw} * sum|g / divisor| elementwise (the same backward of |g|)
    (magnitude,) = _torch_grads(lambda x: TF.avg_pool2d(x, **kw), (x,), abs(g))
    magnitude = abs(magnitude)  # a divisor_override may be negative
    kh, kw_ = config.kernel_size
    assert np.all(abs(got.astype(np.float64) - expected) <= gamma(kh + kw_) * magnitude), config


@given(
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    out=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    lead=st.sampled_from([(2, 3), (1, 1), (3,)]),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_adaptive_avg_pool2d_backward_matches_autograd(backend, H, W, out, lead, dtype):
    x = np.random.default_rng(0).uniform(-1, 1, (*lead, H, W))
    g = np.random.default_rng(1).uniform(-1, 1, (*lead, *out)).astype(dtype).astype(np.float64)
    (expected,) = _torch_grads(lambda x: TF.adaptive_avg_pool2d(x, out), (x,), g)
    got = backend.get(nf.adaptive_avg_pool2d_backward(backend.put(g.astype(dtype)), x.shape))
    assert got.shape == x.shape and got.dtype == dtype
    if dtype == np.float64:
        assert relative_error(got, expected) <= F64
        return
    # float32: a cell first sums g / len over the (at most out_w) column bins that hold it -- a
    # rounded division per term, out_w - 1 additions -- then those sums / len over the (at most
    # out_h) row bins: every element within gamma_{out_h + out_w + 2} times the same backward of |g|
    (magnitude,) = _torch_grads(lambda x: TF.adaptive_avg_pool2d(x, out), (x,), abs(g))
    assert np.all(abs(got.astype(np.float64) - expected) <= gamma(sum(out) + 2) * magnitude)


# --------------------------------------------------------------------------- batch norm, linear, relu
def _batch_norm_backward_bounds(x, g, w, rm, rv, training, eps=1e-5):
    """Elementwise bounds on the float32 error of ``nf.batch_norm_backward``'s three results.

    The arguments are the float32 values as float64 (exact); ``w`` may be None. Each step of the
    implementation's formula, per channel of ``M`` values, commits at most these (first order in
    ``u``, reductions in any order, Higham Lemma 3.1, deterministic):

    * mean, ``M - 1`` additions and a division: ``e_mean = gamma_M · mean|x|`` (eval: the running
      mean, exact);
    * var, two-pass as NumPy's and CuPy's ``var`` compute it (its own mean, the deviations, their
      squares, the mean of those): each square carries 3 roundings, the sum ``M - 1``, the division
      1, and squares about a mean off by ``e`` sum to ``M (var + e²)``:
      ``e_var = gamma_{M+3} (var + e_mean²) + e_mean²`` (eval: 0);
    * ``invstd = 1/sqrt(var + eps)``, eps cast to float32: relative ``r_inv = (e_var + u eps)/(2 t) + u/2 + 2u``
      with ``t = var + eps`` (a relative error halves through the square root);
    * ``x_hat = (x - mean) invstd``: ``e_xhat = (e_mean + u |x - mean|) invstd + |x_hat| (r_inv + u)``;
      ``scale = invstd · w``: relative ``r_s = r_inv + u``;
    * ``grad_bias = Σ g``: ``gamma_M Σ|g|``; ``grad_weight = Σ g x_hat``: ``Σ|g| e_xhat + gamma_M Σ|g x_hat|``;
    * training, ``grad_input = (M g - Σg - x_hat Σgx_hat) · (scale/M)``: the bracket's four roundings
      (``M g``, two subtractions, a product) are each at most ``u A`` with ``A = M|g| + |Σg| + |x_hat Σgx_hat|``,
      and its inputs carry the errors above; ``scale/M`` and the product add ``2u``, relative;
      eval, ``g · scale``: relative ``r_s + u``.
    """
    u = 2.0**-24
    axes = (0, *range(2, x.ndim))
    M = x.size // x.shape[1]

    def c(v):  # a (C,) vector broadcast over x
        return v.reshape((1, -1) + (1,) * (x.ndim - 2))

    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        e_mean = gamma(M) * abs(x).mean(axis=axes)
        e_var = gamma(M + 3) * (var + e_mean**2) + e_mean**2
    else:
        mean, var, e_mean, e_var = rm, rv, np.zeros_like(rm), np.zeros_like(rv)
    t = var + eps
    invstd = 1 / np.sqrt(t)
    r_inv = (e_var + u * eps) / (2 * t) + u / 2 + 2 * u
    xhat = (x - c(mean)) * c(invstd)
    e_xhat = (c(e_mean) + u * abs(x - c(mean))) * c(invstd) + abs(xhat) * c(r_inv + u)
    s = invstd if w is None else invstd * w
    r_s = r_inv + u
    gb, gw = g.sum(axis=axes), (g * xhat).sum(axis=axes)
    e_gb = gamma(M) * abs(g).sum(axis=axes)
    e_gw = (abs(g) * e_xhat).sum(axis=axes) + gamma(M) * abs(g * xhat).sum(axis=axes)
    if training:
        bracket = M * g - c(gb) - xhat * c(gw)
        A = M * abs(g) + c(abs(gb)) + abs(xhat * c(gw))
        e_bracket = 4 * u * A + c(e_gb) + c(abs(gw)) * e_xhat + abs(xhat) * c(e_gw)
        e_input = (e_bracket + abs(bracket) * c(r_s + 2 * u)) * c(abs(s) / M)
    else:
        e_input = abs(g) * c(abs(s) * (r_s + u))
    return e_input, e_gw, e_gb


@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
    affine=st.booleans(),
    training=st.booleans(),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_batch_norm_backward_matches_autograd(backend, shape, affine, training, seed, dtype):
    if training and shape[0] * shape[2] * shape[3] == 1:
        shape = (2, *shape[1:])  # training needs more than one value per channel
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, shape) * rng.uniform(0.1, 3) + rng.uniform(-2, 2)
    C = shape[1]
    w, b = (rng.uniform(0.5, 1.5, C), rng.uniform(-1, 1, C)) if affine else (None, None)
    rm, rv = rng.uniform(-1, 1, C), rng.uniform(0.5, 2, C)
    g = rng.uniform(-1, 1, shape)
    # the oracle gets the values the run gets
    x, w, b, rm, rv, g = (None if a is None else a.astype(dtype).astype(np.float64) for a in (x, w, b, rm, rv, g))

    def fn(x, w, b):
        return TF.batch_norm(x, torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy()), w, b, training=training)

    expected = _torch_grads(fn, (x, w, b), g)
    put = lambda a: None if a is None else backend.put(a.astype(dtype))
    got = nf.batch_norm_backward(put(g), put(x), put(w), put(rm), put(rv), training=training)
    # float64: the input gradient cancels (it is g minus its projections; with 2 values per channel it
    # is ~0), so the error is measured against the size of its terms, max|g| * max|weight| / std
    invstd = 1 / np.sqrt((x.var(axis=(0, 2, 3)) if training else rv) + 1e-5)
    term_scale = [np.abs(g).max() * np.max(invstd * (1 if w is None else abs(w))), 0, 0]
    bounds = _batch_norm_backward_bounds(x, g, w, rm, rv, training)  # float32, elementwise

    def check(ours, ref, i):
        ours = backend.get(ours)
        assert ours.dtype == dtype, i
        error = np.abs(ours.astype(np.float64) - ref)
        if dtype == np.float64:
            assert error.max() <= F64 * max(term_scale[i], np.abs(ref).max()), i
        else:
            assert np.all(error <= bounds[i]), i

    check(got[0], expected[0], 0)
    if affine:
        check(got[1], expected[1], 1)
        check(got[2], expected[2], 2)
    if not affine:  # the gradients of a unit weight and zero bias, as if they were there
        ones = _torch_grads(fn, (x, np.ones(C), np.zeros(C)), g)
        check(got[1], ones[1], 1)
        check(got[2], ones[2], 2)


@given(
    lead=st.sampled_from([(3,), (2, 3), (1,)]),
    fin=st.integers(1, 6),
    fout=st.integers(1, 6),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_linear_backward_matches_autograd(backend, lead, fin, fout, dtype):
    rng = np.random.default_rng(0)
    x, w, b = rng.uniform(-1, 1, (*lead, fin)), rng.uniform(-1, 1, (fout, fin)), rng.uniform(-1, 1, fout)
    g = rng.uniform(-1, 1, (*lead, fout))
    expected = _torch_grads(TF.linear, (x, w, b), g)
    put = lambda a: backend.put(a.astype(dtype))
    got = nf.linear_backward(put(g), put(x), put(w))
    if dtype == np.float64:
        for ours, ref in zip(got, expected):
            assert relative_error(backend.get(ours), ref) <= F64
        return
    # float32, elementwise (Higham 3.1): the inputs are rounded (u each, a product of two: 2u) and every
    # entry is a sum of n products, so it is within gamma_{n+2} * sum|terms| of the exact value
    M = int(np.prod(lead))
    g2, x2 = abs(g).reshape(M, fout), abs(x).reshape(M, fin)
    magnitudes = [(abs(g) @ abs(w), fout), (g2.T @ x2, M), (g2.sum(axis=0), M)]
    for ours, ref, (magnitude, n) in zip(got, expected, magnitudes):
        error = abs(backend.get(ours).astype(np.float64) - ref)
        assert np.all(error <= gamma(n + 2) * magnitude)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)), seed=st.integers(0, 2**16))
def test_relu_backward_matches_autograd(backend, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(np.float64)  # exact zeros: the gradient there is 0, as torch
    x.flat[0] = np.nan  # NaN passes its gradient through, as torch's threshold_backward
    g = rng.uniform(-1, 1, shape)
    (expected,) = _torch_grads(TF.relu, (x,), g)
    out = nf.relu(backend.put(x))
    np.testing.assert_array_equal(backend.get(nf.relu_backward(backend.put(g), out)), expected)


# --------------------------------------------------------------------------- log_softmax, cross_entropy
@given(
    N=st.integers(1, 5),
    C=st.integers(1, 7),
    smoothing=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    scale=st.sampled_from([1.0, 30.0]),
    seed=st.integers(0, 2**16),
    unbatched=st.booleans(),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_cross_entropy_and_backward_match_torch(backend, N, C, smoothing, reduction, scale, seed, unbatched, dtype):
    rng = np.random.default_rng(seed)
    z = (rng.uniform(-1, 1, (N, C)) * scale).astype(dtype).astype(np.float64)  # exactly the `dtype` input
    t = rng.integers(0, C, N)
    if unbatched:
        z, t = z[0], t[0]
    loss_t_shape = () if reduction != "none" or unbatched else (N,)
    g = rng.uniform(0.5, 1.5, loss_t_shape).astype(dtype).astype(np.float64)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    (expected_grad,) = _torch_grads(lambda z: TF.cross_entropy(z, torch.tensor(t), **kw), (z,), g)
    expected = TF.cross_entropy(torch.from_numpy(z), torch.tensor(t), **kw).numpy()
    expected_lsm = TF.log_softmax(torch.from_numpy(z), dim=-1).numpy()
    zb, tb = backend.put(z.astype(dtype)), backend.put(np.asarray(t))
    loss = backend.get(nf.cross_entropy(zb, tb, **kw))
    assert loss.shape == expected.shape and loss.dtype == dtype
    grad = backend.get(nf.cross_entropy_backward(backend.put(g.astype(dtype)), zb, tb, **kw))
    lsm = backend.get(nf.log_softmax(zb, dim=-1))
    bounds = _cross_entropy_bounds(z, t, g, smoothing, reduction, dtype)
    for name, ours, oracle, bound in zip(
        ("loss", "grad", "log_softmax"), (loss, grad, lsm), (expected, expected_grad, expected_lsm), bounds
    ):
        error = np.abs(ours.astype(np.float64) - oracle)
        assert (error <= bound).all(), f"{name}: error {error.max():.2e}, bound {np.min(bound):.2e}"


def _cross_entropy_bounds(z, t, g, smoothing, reduction, dtype):
    """Elementwise rounding bounds of log_softmax, the loss and its gradient computed in ``dtype`` from the
    exactly representable logits ``z`` (npresnet.functional.loss: shifted = z - max, then
    ``shifted - log(sum(exp(shifted)))``; the loss a q-weighted sum; the gradient ``(softmax - q) * g / N``).

    With ``u`` the unit roundoff and ``gamma(n)`` the bound of ``n`` chained roundings: the shift rounds
    once (``u|s|``), exp and log are within an ulp or so (``2u``), the sum of ``C`` positive terms
    is within ``gamma(C)`` relative, which reaches the log-sum-exp ``lse`` as an absolute error, so
    ``|Δ log_softmax_i| <= 2u|s_i| + 2u|lse| + gamma(C + 2)``. The loss adds a weighted sum (``gamma(C + 2)``
    of its magnitude) and the reduction's ``gamma(N)``; the gradient ``p_i = exp(log_softmax_i)``
    carries ``p_i`` times that error and three roundings of ``|p_i - q_i|``.
    """
    u = np.finfo(dtype).eps / 2
    z2 = np.atleast_2d(z)
    N, C = z2.shape
    s = z2 - z2.max(axis=1, keepdims=True)  # (N, C)
    lse = np.log(np.exp(s).sum(axis=1, keepdims=True))  # (N, 1)
    lsm = s - lse
    d_lsm = 2 * u * np.abs(s) + 2 * u * np.abs(lse) + gamma(C + 2, u)  # (N, C)
    q = np.full((N, C), smoothing / C)
    q[np.arange(N), np.atleast_1d(t)] += 1 - smoothing
    rows = (q * d_lsm).sum(axis=1) + gamma(C + 2, u) * (q * np.abs(lsm)).sum(axis=1)  # (N,) per-sample loss
    losses = -(q * lsm).sum(axis=1)
    if reduction == "mean":
        loss_bound = rows.mean() + gamma(N + 1, u) * np.abs(losses).mean()
    elif reduction == "sum":
        loss_bound = rows.sum() + gamma(N + 1, u) * np.abs(losses).sum()
    else:
        loss_bound = rows if z.ndim == 2 else rows[0]
    p = np.exp(lsm)
    scale = np.abs(np.broadcast_to(np.asarray(g).reshape(-1, 1) if np.ndim(g) else g, (N, 1)))
    scale = scale / (N if reduction == "mean" else 1)
    grad_bound = scale * (p * (d_lsm + 2 * u) + 4 * u * np.abs(p - q) + u * q)
    lsm_bound = d_lsm
    if z.ndim == 1:
        grad_bound, lsm_bound = grad_bound[0], lsm_bound[0]
    return loss_bound, grad_bound, lsm_bound


def test_cross_entropy_rejects_bad_targets():
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\)"):
        nf.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer array"):
        nf.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        nf.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.5)


def test_torch_positional_calls_that_would_mean_something_else_are_refused():
    """torch's third positional argument of cross_entropy is ``weight`` and log_softmax's ``dim`` defaults to
    ``None`` (an axis picked from ndim); here both are refused instead of read another way (docs/guide/layers.md)."""
    z, t = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(TypeError, match="positional"):
        nf.cross_entropy(z, t, np.ones(3))
    with pytest.raises(TypeError, match="positional"):
        nf.cross_entropy_backward(1.0, z, t, "sum")
    with pytest.raises(TypeError, match="dim"):
        nf.log_softmax(z)


# --------------------------------------------------------------------------- finite differences
def _finite_difference(f, x, h=1e-6):
    """Central differences of the scalar ``f`` at every element of ``x`` (float64)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f()
        x[i] = old - h
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


FD = 1e-6  # central differences with h=1e-6 on O(1) values: truncation ~h², rounding ~1e-16/h


@settings(max_examples=8)
@given(config=conv2d_configs(max_batch=1, max_channels_per_group=2, max_groups=2, max_kernel=3, max_extra=2))
def test_conv2d_backward_matches_finite_differences(config):
    x, w, b, g = _conv_case(config, 3, np.float64)
    kw = config.kwargs()
    loss = lambda: float(np.sum(nf.conv2d(x, w, b, **kw) * g))
    gx, gw, gb = nf.conv2d_backward(g, x, w, **kw)
    assert relative_error(gx, _finite_difference(loss, x)) <= FD
    assert relative_error(gw, _finite_difference(loss, w)) <= FD
    if b is not None:
        assert relative_error(gb, _finite_difference(loss, b)) <= FD


@settings(max_examples=8)
@given(config=pool2d_configs(max_batch=1, max_channels=2, max_extra=2), seed=st.integers(0, 2**16))
def test_pool_backward_matches_finite_differences(config, seed):
    # distinct values spaced far more than h apart: no max changes within the finite difference
    x = np.random.default_rng(seed).permutation(int(np.prod(config.input_shape))).reshape(config.input_shape) * 0.01
    x = x.astype(np.float64)
    g = np.random.default_rng(seed + 1).uniform(-1, 1, config.output_shape())
    kw = config.kwargs()
    if config.kind == "max":
        g[np.isneginf(nf.max_pool2d(x, **kw))] = 0  # windows wholly in the padding: no input, no gradient
        loss = lambda: float(np.sum(nf.max_pool2d(x, **kw) * g, where=g != 0))
        _, idx = nf.max_pool2d(x, return_indices=True, **kw)
        grad = nf.max_pool2d_backward(g, idx, x.shape)
    else:
        loss = lambda: float(np.sum(nf.avg_pool2d(x, **kw) * g))
        grad = nf.avg_pool2d_backward(g, x.shape, **kw)
    assert relative_error(grad, _finite_difference(loss, x)) <= FD


@settings(max_examples=8)
@given(
    shape=st.tuples(st.integers(2, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    seed=st.integers(0, 2**16),
)
def test_batch_norm_and_cross_entropy_backward_match_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.uniform(-1, 1, shape), rng.uniform(0.5, 1.5, shape[1]), rng.uniform(-1, 1, shape[1])
    g = rng.uniform(-1, 1, shape)
    loss = lambda: float(np.sum(nf.batch_norm(x, None, None, w, b, training=True) * g))
    gx, gw, gb = nf.batch_norm_backward(g, x, w)
    # the input gradient may cancel to nearly 0: bound it against the size of its terms, |g| * w / std
    term_scale = np.abs(g).max() * np.max(w / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5))
    assert np.abs(gx - _finite_difference(loss, x)).max() <= FD * term_scale
    assert relative_error(gw, _finite_difference(loss, w)) <= FD
    assert relative_error(gb, _finite_difference(loss, b)) <= FD
    z, t = rng.uniform(-3, 3, (shape[0], 4)), rng.integers(0, 4, shape[0])
    ce = lambda: float(nf.cross_entropy(z, t, label_smoothing=0.2))
    assert relative_error(nf.cross_entropy_backward(1.0, z, t, label_smoothing=0.2), _finite_difference(ce, z)) <= FD


@given(
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    out=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    data=st.data(),
)
def test_adaptive_avg_pool2d_backward_keeps_a_nonfinite_gradient_in_its_bin(backend, H, W, out, value, data):
    # autograd spreads each output's gradient over its own bin only; NaN and infinities included
    x = np.random.default_rng(0).uniform(-1, 1, (2, H, W))
    g = np.random.default_rng(1).uniform(-1, 1, (2, *out))
    where = (data.draw(st.integers(0, 1)), data.draw(st.integers(0, out[0] - 1)), data.draw(st.integers(0, out[1] - 1)))
    g[where] = value
    (expected,) = _torch_grads(lambda x: TF.adaptive_avg_pool2d(x, out), (x,), g)
    got = backend.get(nf.adaptive_avg_pool2d_backward(backend.put(g), x.shape))
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.array_equal(got[np.isinf(expected)], expected[np.isinf(expected)])
    finite = np.isfinite(expected)
    assert relative_error(got[finite], expected[finite]) <= F64
