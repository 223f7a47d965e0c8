"""conv2d's im2col workspace is bounded: large requests are chunked, never allocated whole.

The oracle for values is the unchunked computation (and torch); the oracle for memory is
tracemalloc, which sees NumPy's allocations.
"""
import contextlib
import tracemalloc

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import npresnet.functional as nf
from npresnet.testing import conv2d_configs


@contextlib.contextmanager
def workspace_budget(value):
    saved, nf.WORKSPACE_BYTES = nf.WORKSPACE_BYTES, value
    try:
        yield
    finally:
        nf.WORKSPACE_BYTES = saved


@settings(max_examples=100, deadline=None)
@given(config=conv2d_configs(), budget=st.integers(1, 4096))
def test_chunked_conv2d_equals_unchunked(config, budget):
    """Any budget, down to one byte (one output row of one image per chunk), gives the same result."""
    x, w, b = config.arrays()
    whole = nf.conv2d(x, w, b, **config.kwargs())
    with workspace_budget(budget):
        chunked = nf.conv2d(x, w, b, **config.kwargs())
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-12)


def _peak_bytes(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_workspace_stays_under_the_budget():
    """A 3×3 conv whose columns would take 16.6 MB runs within padded input + output + a 1 MB budget."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 120, 120), dtype=np.float32)  # 1.8 MB
    w = rng.standard_normal((16, 16, 3, 3), dtype=np.float32)
    full_cols = 16 * 9 * 2 * 120 * 120 * 4  # bytes of the whole column buffer: 16.6 MB
    budget = 2**20
    with workspace_budget(budget):
        out, peak = _peak_bytes(lambda: nf.conv2d(x, w, padding=1))
    padded, output = 2 * 16 * 122 * 122 * 4, out.nbytes
    # padded input + output + one chunk of columns + its GEMM result, with slack for small arrays
    assert peak < padded + output + 2 * budget + 2 * output / 120 * 8 + 2**18, (peak, full_cols)
    assert peak < full_cols / 2
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_unbounded_request_would_take_the_whole_buffer():
    """The same conv without chunking does allocate the whole column buffer: the bound above is real."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 120, 120), dtype=np.float32)
    w = rng.standard_normal((16, 16, 3, 3), dtype=np.float32)
    with workspace_budget(2**30):
        _, peak = _peak_bytes(lambda: nf.conv2d(x, w, padding=1))
    assert peak > 16 * 9 * 2 * 120 * 120 * 4
