"""im2col and conv2d: shapes against the formula and PyTorch, values against the float64
oracle (npresnet.testing.reference_conv2d) and torch.nn.functional, on every backend."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import npresnet.functional as nf
from _examples import with_examples
from npresnet.testing import (
    ConvConfig,
    assert_conv2d_matches,
    conv2d_configs,
    conv2d_error_bound,
    reference_conv2d,
)

# torch warns that it copies the input for 'same' with an even kernel; that is its business.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

# Configurations that break naive implementations, always run first.
EDGE_CASES = [
    # stride 2 does not divide the span 224+6-7 = 223 (the ResNet stem; CS231n's assert rejects it)
    ConvConfig((1, 1, 224, 9), (2, 1, 7, 3), True, (2, 2), (3, 1), (1, 1), 1),
    # window that just fits: H + 2p == dilated kernel, one output row/column
    ConvConfig((2, 2, 3, 1), (3, 2, 3, 3), False, (1, 1), (0, 1), (1, 1), 1),
    ConvConfig((1, 2, 1, 2), (2, 2, 2, 2), True, (1, 1), (1, 0), (2, 1), 1),
    # non-square kernel, stride, dilation and padding, each axis different (height/width mix-ups)
    ConvConfig((1, 2, 6, 9), (3, 2, 2, 3), True, (1, 2), (0, 2), (3, 1), 1),
    # 'same' with an even kernel and odd dilation: the odd padding goes bottom/right
    ConvConfig((1, 2, 5, 4), (2, 2, 2, 4), True, (1, 1), "same", (1, 1), 1),
    # depthwise (groups == channels) with channel multiplier 2, and unbatched input
    ConvConfig((3, 4, 5), (6, 1, 3, 3), True, (2, 1), (1, 1), (1, 2), 3),
    ConvConfig((1, 2, 4, 4), (2, 2, 1, 1), False, (3, 3), "valid", (1, 1), 1),  # 1x1, stride 3 > span
]


def _torch_conv(config, x, w, b):
    t = lambda a: None if a is None else torch.from_numpy(a)
    return F.conv2d(t(x), t(w), t(b), **config.kwargs()).numpy()


@with_examples(EDGE_CASES)
@given(config=conv2d_configs())
def test_conv2d_shape_is_formula_and_torch(backend, config):
    x, w, b = config.arrays()
    got = nf.conv2d(backend.put(x), backend.put(w), backend.put(b), **config.kwargs())
    assert got.shape == config.output_shape() == _torch_conv(config, x, w, b).shape
    assert got.dtype == x.dtype
    if config.padding == "same":
        assert got.shape[-2:] == config.input_shape[-2:]


@with_examples(EDGE_CASES)
@given(config=conv2d_configs())
def test_conv2d_matches_float64_oracle(backend, config):
    """Within gamma_{K+1} * (|x| conv |w| + |b|) of the naive loop: ~1e-14 relative for K <= ~100."""
    assert_conv2d_matches(nf.conv2d, config, dtype=np.float64, convert=backend.put)


@with_examples(EDGE_CASES, seed=0)
@given(config=conv2d_configs(), seed=st.integers(0, 2**16))
def test_conv2d_float32_matches_torch(backend, config, seed):
    """float32 npresnet vs float32 torch: each within the float32 rounding bound of the exact
    result (gamma_{K+1} * (|x| conv |w| + |b|), eps = 1.2e-7), so within twice that of each other."""
    x, w, b = config.arrays(seed, np.float32)
    got = backend.get(nf.conv2d(backend.put(x), backend.put(w), backend.put(b), **config.kwargs()))
    want = _torch_conv(config, x, w, b)
    assert got.dtype == np.float32 and got.shape == want.shape
    bound = conv2d_error_bound(config, x, w, b, np.float32)
    assert np.all(np.abs(got.astype(np.float64) - want) <= 2 * bound), np.max(np.abs(got - want) / bound)
    exact = reference_conv2d(x, w, b, **config.kwargs())
    assert np.all(np.abs(got - exact) <= bound)  # and each is within its own rounding of the exact value
    assert np.all(np.abs(want - exact) <= bound)


@given(config=conv2d_configs(same_and_valid=False))
def test_im2col_equals_torch_unfold_exactly(backend, config):
    x, _, _ = config.arrays()
    kh, kw = config.weight_shape[2:]
    kwargs = dict(dilation=config.dilation, padding=config.padding, stride=config.stride)
    got = backend.get(nf.im2col(backend.put(x), (kh, kw), **kwargs))
    want = F.unfold(torch.from_numpy(x), (kh, kw), **kwargs).numpy()
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_im2col_layout_by_index_formula(backend):
    """Row c*kh*kw + i*kw + j, column oy*out_w + ox holds x[c, oy*sy - ph + i*dy, ox*sx - pw + j*dx]
    (zero outside): checked element by element on a non-square case."""
    C, H, W, (kh, kw), (sy, sx), (ph, pw), (dy, dx) = 2, 5, 7, (2, 3), (2, 1), (1, 2), (2, 1)
    x = np.arange(C * H * W, dtype=np.float64).reshape(C, H, W) + 1
    cols = backend.get(nf.im2col(backend.put(x), (kh, kw), (dy, dx), (ph, pw), (sy, sx)))
    out_h, out_w = (H + 2 * ph - dy * (kh - 1) - 1) // sy + 1, (W + 2 * pw - dx * (kw - 1) - 1) // sx + 1
    assert cols.shape == (C * kh * kw, out_h * out_w)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                for oy in range(out_h):
                    for ox in range(out_w):
                        iy, ix = oy * sy - ph + i * dy, ox * sx - pw + j * dx
                        want = x[c, iy, ix] if 0 <= iy < H and 0 <= ix < W else 0
                        assert cols[c * kh * kw + i * kw + j, oy * out_w + ox] == want


@given(config=conv2d_configs(max_groups=2, unbatched=False))
def test_conv2d_non_contiguous_input(backend, config):
    """Transposed (non-contiguous) views compute the same convolution as contiguous arrays
    (up to rounding: BLAS may sum in another order for another layout)."""
    x, w, b = config.arrays()
    xt = backend.put(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    wt = backend.put(np.asfortranarray(w))
    got = backend.get(nf.conv2d(xt, wt, backend.put(b), **config.kwargs()))
    want = backend.get(nf.conv2d(backend.put(x), backend.put(w), backend.put(b), **config.kwargs()))
    assert np.all(np.abs(got - want) <= 2 * conv2d_error_bound(config, x, w, b, np.float64))


def test_conv2d_empty_batch(backend):
    x, w = np.zeros((0, 2, 5, 5)), np.zeros((3, 2, 3, 3))
    assert nf.conv2d(backend.put(x), backend.put(w)).shape == (0, 3, 3, 3)


def test_conv2d_float16_matches_torch(backend):
    config = ConvConfig((2, 4, 6, 5), (4, 2, 3, 3), True, (1, 2), (1, 1), (1, 1), 2)
    x, w, b = config.arrays(0, np.float16)
    got = backend.get(nf.conv2d(backend.put(x), backend.put(w), backend.put(b), **config.kwargs()))
    assert got.dtype == np.float16
    want = _torch_conv(config, x, w, b)
    bound = conv2d_error_bound(config, x, w, b, np.float16)
    assert np.all(np.abs(got.astype(np.float64) - want) <= 2 * bound)
