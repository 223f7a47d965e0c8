"""conv2d's im2col workspace is bounded: large requests are chunked, never allocated whole.

The oracle for values is the unchunked computation (and torch); the oracle for memory is
tracemalloc, which sees NumPy's allocations. The bound is the explicit ``workspace_bytes``
argument (no global to patch); its default per backend is checked against the sizing rule.
"""

import tracemalloc
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import npresnet.functional as nf
import npresnet.workspace as ws
from _bounds import gamma
from npresnet.testing import conv2d_configs


@settings(max_examples=100, deadline=None)
@given(config=conv2d_configs(), budget=st.integers(1, 4096))
def test_chunked_conv2d_equals_unchunked(config, budget):
    """Any budget, down to one byte (one output row of one image per chunk), gives the same result."""
    x, w, b = config.arrays()
    whole = nf.conv2d(x, w, b, **config.kwargs(), workspace_bytes=1 << 40)
    chunked = nf.conv2d(x, w, b, **config.kwargs(), workspace_bytes=budget)
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
    out, peak = _peak_bytes(lambda: nf.conv2d(x, w, padding=1, workspace_bytes=budget))
    output = out.nbytes
    # output + one chunk (columns plus its GEMM result, within the budget), with slack for small arrays
    assert peak < output + budget + 2**18, (peak, full_cols)
    assert peak < full_cols / 2
    # the values, against torch in float64 on the same float32 arrays: each output is a sum of
    # K = 16*3*3 products, within gamma_K * sum|terms| in any order (Higham, Lemma 3.1)
    x64, w64 = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64))
    exact = F.conv2d(x64, w64, padding=1).numpy()
    magnitude = F.conv2d(x64.abs(), w64.abs(), padding=1).numpy()
    assert np.all(np.abs(out - exact) <= gamma(16 * 9) * magnitude)


def test_unbounded_request_would_take_the_whole_buffer():
    """The same conv without chunking does allocate the whole column buffer: the bound above is real."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 120, 120), dtype=np.float32)
    w = rng.standard_normal((16, 16, 3, 3), dtype=np.float32)
    _, peak = _peak_bytes(lambda: nf.conv2d(x, w, padding=1, workspace_bytes=2**30))
    assert peak > 16 * 9 * 2 * 120 * 120 * 4


def test_the_default_is_the_backend_default_and_bad_values_are_refused():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    assert ws.default_workspace_bytes(np) == ws.default_workspace_bytes() == ws.NUMPY_WORKSPACE_BYTES
    np.testing.assert_array_equal(nf.conv2d(x, w), nf.conv2d(x, w, workspace_bytes=ws.NUMPY_WORKSPACE_BYTES))
    for bad in (0, -1, 1.5, "4MB", True):
        with pytest.raises(ValueError, match="workspace_bytes"):
            nf.conv2d(x, w, workspace_bytes=bad)
    assert not hasattr(nf, "WORKSPACE_BYTES")  # no module global left to patch


@given(
    free=st.integers(0, 2**40), fraction=st.floats(0.01, 1.0), floor=st.integers(1, 2**30), cap=st.integers(1, 2**36)
)
def test_device_workspace_is_a_bounded_fraction_of_free_memory(free, fraction, floor, cap):
    """The CuPy sizing rule on made-up numbers: never above the free memory, never 0, and otherwise
    ``fraction`` of the free memory clamped to ``[floor, cap]``."""
    got = ws.device_workspace_bytes(free, fraction, floor, cap)
    assert 1 <= got <= max(free, 1)
    if free >= max(floor, 1) and floor <= cap:
        assert got == min(max(int(free * fraction), floor), cap)


def test_device_workspace_on_typical_gpus():
    GiB, MiB = 2**30, 2**20
    assert ws.device_workspace_bytes(79 * GiB) == 4 * GiB  # an idle H100: the cap
    assert ws.device_workspace_bytes(8 * GiB) == 2 * GiB  # a quarter of what is free
    assert ws.device_workspace_bytes(40 * MiB) == 16 * MiB  # nearly full: the floor
    assert ws.device_workspace_bytes(10 * MiB) == 10 * MiB  # never more than is free


def test_cupy_default_reads_the_device_free_memory():
    """default_workspace_bytes(cupy) asks the driver and the memory pool (a stand-in module here, no GPU)."""

    fake = types.ModuleType("cupy")  # only what default_workspace_bytes reads
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(memGetInfo=lambda: (6 * 2**30, 80 * 2**30)))
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 2 * 2**30)
    assert ws.default_workspace_bytes(fake) == 2 * 2**30  # a quarter of 6 + 2 GiB


def test_the_layer_passes_its_workspace_to_the_backward_pass_too():
    """``nn.Conv2d(workspace_bytes=...)`` bounds the backward's columns as it bounds the forward's."""
    from npresnet import nn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 120, 120), dtype=np.float32)  # 1.8 MB
    full_cols = 16 * 9 * 2 * 120 * 120 * 4  # the whole column buffer: 16.6 MB
    grads = {}
    for budget in (2**20, 1 << 40):
        layer = nn.Conv2d(16, 16, 3, padding=1, bias=False, rng=0, workspace_bytes=budget)
        layer.train()
        grad_out = np.ones_like(layer(x))
        grads[budget], peak = _peak_bytes(lambda layer=layer, g=grad_out: layer.backward(g))
        if budget == 2**20:  # grad_input + one chunk of columns and its products, never the whole buffer
            assert peak < x.nbytes + 4 * budget + 2**18 < full_cols / 2, peak
        else:
            assert peak > full_cols, peak  # unbounded: the bound above is real
    # The same gradient up to rounding: each grad_input element is a 16-term dot product (W.T @ grad_out) then
    # 9 slice-adds (col2im), and each way is within γ_25·(|W|.T @ |grad_out| summed the same way) of the exact
    # value (Higham's deterministic bound, n = 16 + 9 roundings in a chain), so the two differ by at most twice that.
    magnitude = nf.conv2d_backward(
        np.abs(grad_out).astype(np.float64), x.astype(np.float64), np.abs(layer.weight).astype(np.float64), padding=1
    )[0]
    assert np.all(np.abs(grads[2**20] - grads[1 << 40]) <= 2 * gamma(25) * magnitude)
