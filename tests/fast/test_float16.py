"""The fused path's ``precision="float16"`` mode (float16 storage, float32 arithmetic), on the emulated CuPy.

What runs here is the mode's plumbing and its numerics as the emulation models them: every
kernel launch is checked against its C parameter types (a float32 array passed as ``__half*``
raises), every cuBLAS call against its data and compute types, float64 anywhere raises, and
the logits are compared with torchvision's float64 forward within the bound derived in
``tests/_rounding/`` (:func:`float16_storage_error_bounds`). The emulated cuBLAS sums in
float32 with NumPy's BLAS (float16 inputs and their products are exact in float32), so what a
GPU adds is cuBLAS's own summation order: within the same bound. Nothing here has run on a GPU.
"""

import numpy as np
import pytest
import torch

import npresnet
from _rounding import float16_storage_error_bounds
from _torchvision import numpy_state_dict, torchvision_resnet
from npresnet._emulation import count
from npresnet._emulation import cupy as cp
from npresnet.backend import to_backend, to_numpy
from npresnet.fast import fuse
from npresnet.fast.cuda.gemm import grouped_gemm

EMULATED = "cupy-emulated"


def _pair(name, seed):
    tv = torchvision_resnet(name, seed=seed, dtype=torch.float32)
    model = npresnet.ARCHITECTURES[name](dtype="float32")
    model.load_state_dict(numpy_state_dict(tv))
    return tv, model.to(EMULATED)


@pytest.fixture(scope="module")
def resnet18():
    tv, model = _pair("resnet18", seed=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 48)).astype(np.float32)
    rng = np.random.default_rng(1)
    rows, classes = np.repeat([0, 1], 4), rng.choice(1000, 8, replace=False)
    exact, bounds = float16_storage_error_bounds(tv, x, lambda z: z[rows, classes])
    return model, x, (rows, classes), exact, bounds


def _logits(model, x):
    return to_numpy(fuse(model, precision="float16")(to_backend(x, EMULATED)))


def test_float16_logits_are_within_the_derived_bound(resnet18):
    model, x, (rows, classes), exact, bounds = resnet18
    out = _logits(model, x)
    assert out.dtype == np.float32 and out.shape == (2, 1000)
    error = np.abs(out[rows, classes].astype(np.float64) - exact)
    assert (error <= bounds).all(), f"float16-mode error {error.max():.2e} above its bound"
    # the bound is the float16 one: far above float32's rounding, far below the logits' scale
    assert bounds.min() > 100 * 2.0**-24 * np.abs(exact).max() and bounds.max() < 0.1 * np.abs(exact).max()


def test_float16_mode_stores_float16_and_keeps_the_launch_budget():
    """ResNet-50 at 64×64: every kernel runs on __half storage (the emulated launch checks each pointer's
    type), every convolution's product reads float16 and writes float32 with CUBLAS_COMPUTE_32F, the fc
    product is float32; the launches are float32 mode's, and the forward never synchronises."""
    model = npresnet.resnet50(rng=0, dtype=np.float32).to(EMULATED)
    x = to_backend(np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32), EMULATED)
    counts = {}
    for precision in ("float32", "float16"):
        fused = fuse(model, precision=precision)
        fused(x)  # the first call allocates
        with count() as c:
            logits = fused(x)
        counts[precision] = c
    c16, c32 = counts["float16"], counts["float32"]
    assert logits.dtype == np.float32
    assert c16.syncs == 0 and c16.transfers == 0
    assert c16.launches == c32.launches and dict(c16.by_kind) == dict(c32.by_kind)
    assert dict(c16.kernels) == {
        "im2col_nhwc<__half>": 20,
        "bias_residual_relu<__half, float>": 53,
        "max_pool_nhwc<__half>": 1,
        "global_avg_pool_nhwc<__half, float>": 1,
        "bias_residual_relu<float, float>": 1,  # the fc bias, on float32 logits
    }
    assert c16.gemm_types == {
        ("CUDA_R_16F", "CUDA_R_32F", "CUBLAS_COMPUTE_32F"): 53,
        ("CUDA_R_32F", "CUDA_R_32F", "CUBLAS_COMPUTE_32F"): 1,
    }


def test_grouped_gemm_of_float16_writes_float32_sums():
    """float16 operands, float32 output: the products are exact in float32, and each of the K-term sums is
    within K·u32·sum|terms| of float64's."""
    rng = np.random.default_rng(3)
    G, M, K, Og = 3, 5, 40, 4
    a, b = rng.standard_normal((G, M, K)).astype(np.float16), rng.standard_normal((G, K, Og)).astype(np.float16)
    out = cp.empty((M, G * Og), dtype=np.float32)
    grouped_gemm(cp, cp.asarray(a), cp.asarray(b), out, "CUBLAS_COMPUTE_32F")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    expected = np.concatenate([a64[g] @ b64[g] for g in range(G)], axis=1)
    bound = K * 2.0**-24 * np.concatenate([np.abs(a64[g]) @ np.abs(b64[g]) for g in range(G)], axis=1)
    assert out.dtype == np.float32 and (np.abs(out.get() - expected) <= bound).all()
    with pytest.raises(TypeError, match="float16 to float32"):
        grouped_gemm(cp, cp.asarray(a), cp.asarray(b), cp.empty((M, G * Og), dtype=np.float64), "CUBLAS_COMPUTE_32F")


def test_buffer_bytes_counts_the_float32_accumulator_and_clear_buffers_releases_it():
    """float16 mode holds float32 mode's activation and column buffers in half the bytes, not its float32
    residual product (workspace slot 1), and one float32 accumulator the size of the largest product.
    ResNet-18 at 64×64, batch 1: the largest product is the stem's, 64 channels at 32×32; the largest
    residual product is layer1's, 64 channels at 16×16."""
    model = npresnet.resnet18(rng=0, dtype=np.float32).to(EMULATED)
    x = to_backend(np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32), EMULATED)
    held = {}
    for precision in ("float32", "float16"):
        fused = fuse(model, precision=precision)
        fused(x)
        held[precision] = fused.buffer_bytes()
    accumulator, residual_product = 4 * 64 * 32 * 32, 4 * 64 * 16 * 16
    assert held["float16"] == (held["float32"] - residual_product) // 2 + accumulator
    fused.clear_buffers()
    assert fused.buffer_bytes() == 0
    fused(x)
    assert fused.buffer_bytes() == held["float16"]
