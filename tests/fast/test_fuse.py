"""The fused inference path (npresnet.fast) against torchvision, and its parts against torch.

Oracles: torchvision's ResNets (seeded, batch norms randomised, eval mode) for whole
models; ``torch.nn.functional.conv2d`` followed by ``batch_norm`` for a single fused
convolution (im2col or Winograd); ``numpy.correlate`` for the Winograd matrices; the
unchunked fused path for the chunked one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import npresnet
from _rounding import logit_bounds
from _torchvision import ARCHITECTURE_NAMES, numpy_state_dict, relative_error, torch_forward, torchvision_resnet
from npresnet.fast import fuse
from npresnet.fast.conv import FusedConv
from npresnet.fast.fold import fold_batch_norm, gemm_weight
from npresnet.fast.winograd import WinogradConv, winograd_matrices, winograd_weight
from npresnet.nn import BatchNorm2d, Conv2d
from npresnet.workspace import workspace_chunks

F64_TOL = 1e-10  # max |fused - torch| / max |torch|, both in float64


def assert_within_float32_bounds(out, tv, x, mode="fused", winograd=True):
    """``out`` (N, classes), a float32 forward of ``tv``'s weights on ``x``, is within the float32
    error bound derived from the arithmetic (tests/_rounding/) of the exact logits, on a sample;
    ``winograd``: the fused path's option it was built with."""
    (rows, classes), exact, bounds = logit_bounds(tv, x, mode=mode, winograd=winograd)
    error = np.abs(out[rows, classes].astype(np.float64) - exact)
    assert (error <= bounds).all(), f"float32 error {error.max():.2e} above its bound at {np.argmax(error / bounds)}"
    return bounds


def _pair_models(name, dtype=torch.float32, seed=0, **kwargs):
    """(torchvision model, npresnet model with the same weights)."""
    tv = torchvision_resnet(name, seed=seed, dtype=dtype, **kwargs)
    np_dtype = "float64" if dtype == torch.float64 else "float32"
    model = npresnet.ARCHITECTURES[name](dtype=np_dtype, **kwargs)
    model.load_state_dict(numpy_state_dict(tv))
    return tv, model


def _input(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.fixture(scope="module")
def resnet18_pair():
    return _pair_models("resnet18", seed=1)


@pytest.fixture(scope="module")
def resnet50_pair():
    return _pair_models("resnet50", seed=2)


# --------------------------------------------------------------------------- whole models
@pytest.mark.parametrize("name", ARCHITECTURE_NAMES)
def test_every_architecture_matches_torchvision_float32(name, backend):
    """Within float32 rounding of torchvision-in-float64: the error bound is derived from the
    arithmetic of the fused path (im2col or Winograd, batch norm folded), per logit; it grows with
    depth on its own, so one rule serves ResNet-18 and ResNet-152. Runs on every backend (CuPy
    skipped with the reason where no GPU is usable).
    """
    tv, model = _pair_models(name)
    x = _input((2, 3, 40, 48))
    out = backend.get(fuse(model.to(backend.name))(backend.put(x)))
    assert out.dtype == np.float32 and out.shape == (2, 1000)
    assert_within_float32_bounds(out, tv, x)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_float64_matches_torchvision_to_1e_10(name, backend):
    tv, model = _pair_models(name, dtype=torch.float64)
    x = _input((2, 3, 33, 29), dtype=np.float64)
    out = backend.get(fuse(model.to(backend.name))(backend.put(x)))
    assert out.dtype == np.float64
    assert relative_error(out, torch_forward(tv, x)) < F64_TOL


@pytest.fixture(scope="module")
def resnet18_pair64():
    return _pair_models("resnet18", dtype=torch.float64, seed=1)


@pytest.fixture(scope="module")
def resnet50_pair64():
    return _pair_models("resnet50", dtype=torch.float64, seed=2)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 70), w=st.integers(1, 70))
def test_resnet18_any_input_size(resnet18_pair64, n, h, w):
    """Every input size, odd and tiny ones included, in float64: the geometry is exact."""
    tv, model = resnet18_pair64
    x = _input((n, 3, h, w), dtype=np.float64, seed=h * 100 + w)
    assert relative_error(fuse(model)(x), torch_forward(tv, x)) < F64_TOL


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 64), w=st.integers(1, 64))
def test_resnet50_any_input_size(resnet50_pair64, n, h, w):
    tv, model = resnet50_pair64
    x = _input((n, 3, h, w), dtype=np.float64, seed=h * 100 + w)
    assert relative_error(fuse(model)(x), torch_forward(tv, x)) < F64_TOL


def test_batch_one_and_many_agree_with_each_other_and_torch(resnet18_pair):
    """An image's logits do not depend on its batch beyond float32 rounding: batch of 5 and batch of
    1 (where the algorithm may differ: few Winograd tiles go to im2col) are each within the derived
    bound of the exact logits, so within twice the bound of each other."""
    tv, model = resnet18_pair
    fused = fuse(model)
    x = _input((5, 3, 37, 41))
    many = fused(x)
    bounds = assert_within_float32_bounds(many, tv, x)
    single = np.concatenate([fused(x[i : i + 1]) for i in range(5)])
    assert_within_float32_bounds(single, tv, x)
    (rows, classes), _, _ = logit_bounds(tv, x, mode="fused")
    assert (np.abs(single[rows, classes] - many[rows, classes]) <= 2 * bounds).all()


def test_fuse_with_a_small_workspace_is_the_fast_path(resnet18_pair):
    tv, model = resnet18_pair
    fused = fuse(model, workspace_bytes=1000)
    assert fused.workspace_bytes == 1000
    x = _input((2, 3, 29, 35))
    assert_within_float32_bounds(fused(x), tv, x)
    assert not hasattr(model, "fuse")  # the model knows nothing of fusion: npresnet.fast.fuse(model) is the API


def test_profile_times_every_step_in_order_and_computes_nothing_else(resnet50_pair):
    """fused.profile(x): one record per step, named as torchvision names the modules, in forward order,
    with shapes matching the reference model's activations and MACs matching the direct formula."""
    _, model = resnet50_pair
    fused = fuse(model)
    x = _input((2, 3, 64, 64))
    records = fused.profile(x)
    convs = [n for n, m in model.named_modules() if isinstance(m, Conv2d)]
    names = [r.name for r in records]
    assert names[:2] == ["conv1", "maxpool"] and names[-1] == "avgpool+fc"
    expected = []  # the model's convolutions in module order, each block's downsample moved first (it runs first)
    for name in convs[1:]:
        if name.endswith("downsample.0"):
            block = name[: -len(".downsample.0")]
            first = next(i for i, n in enumerate(expected) if n.startswith(block + "."))
            expected.insert(first, name)
        else:
            expected.append(name)
    assert names[2:-1] == expected
    _, acts = npresnet.capture_intermediates(model, x, convs)
    for r in records:
        assert r.seconds >= 0 and all(v >= 0 for v in r.phases.values())
        if r.name in acts:
            N, C, H, W = acts[r.name].shape
            assert r.out_shape == (N, H, W, C), r
            conv = model.get_submodule(r.name)
            kh, kw = conv.kernel_size
            assert r.macs == N * H * W * C * kh * kw * conv.in_channels // conv.groups
            assert set(r.phases) <= {"gather", "transform", "gemm", "epilogue"} and r.phases
    kinds = {r.kind for r in records}
    assert {"im2col", "pointwise", "winograd", "maxpool", "head"} <= kinds
    assert records[-1].out_shape == (2, 1000)


def test_empty_batch(resnet18_pair):
    _, model = resnet18_pair
    out = fuse(model)(np.zeros((0, 3, 32, 32), dtype=np.float32))
    assert out.shape == (0, 1000) and out.dtype == np.float32


def test_stem_without_maxpool_padding_matches_torchvision():
    tv, _ = _pair_models("resnet18", seed=3)
    tv.maxpool.padding = 0  # the variant: 112 -> 55 at 224
    model = npresnet.resnet18(maxpool_padding=0)
    model.load_state_dict(numpy_state_dict(tv))
    x = _input((2, 3, 45, 38))
    assert_within_float32_bounds(fuse(model)(x), tv, x)


def test_dilation_variant_matches_torchvision():
    tv, model = _pair_models("resnet50", seed=4, replace_stride_with_dilation=[False, True, True])
    x = _input((1, 3, 36, 30))
    assert_within_float32_bounds(fuse(model)(x), tv, x)


def test_chunked_workspace_gives_identical_logits():
    """A 1-byte budget (one output row per chunk everywhere) computes the same sums as no bound.

    Identical up to the order BLAS adds within a product, which may depend on the number of
    rows it is given; in float64 that leaves ~1e-15, far below any indexing mistake.
    """
    tv, model = _pair_models("resnet50", dtype=torch.float64, seed=5)
    x = _input((3, 3, 45, 52), dtype=np.float64)
    whole = fuse(model, workspace_bytes=1 << 40)(x)
    tiny = fuse(model, workspace_bytes=1)(x)
    assert relative_error(tiny, whole) < 1e-13
    assert relative_error(whole, torch_forward(tv, x)) < F64_TOL


def test_repeated_calls_reuse_buffers_without_aliasing_outputs(resnet18_pair):
    _, model = resnet18_pair
    fused = fuse(model)
    a, b = _input((2, 3, 32, 32), seed=5), _input((2, 3, 32, 32), seed=6)
    first = fused(a)
    kept = first.copy()
    fused(b)
    held = fused.buffer_bytes()
    second = fused(a)
    np.testing.assert_array_equal(first, kept)  # the second call did not write into the first's logits
    np.testing.assert_array_equal(second, first)
    assert fused.buffer_bytes() == held  # nothing new allocated at the same input size


def test_fused_is_a_snapshot_and_does_not_touch_the_model(resnet18_pair):
    _, model = resnet18_pair
    before = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    fuse(model)(_input((1, 3, 32, 32)))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


# --------------------------------------------------------------------------- input checks
@pytest.mark.parametrize(
    "x, error, words",
    [
        (np.zeros((3, 32, 32), np.float32), ValueError, "4-D"),
        (np.zeros((1, 32, 32, 3), np.float32), ValueError, "channels-last"),
        (np.zeros((1, 3, 32, 32), np.uint8), TypeError, "floating"),
        (np.zeros((1, 3, 32, 32), np.float64), TypeError, "float32"),
        ([[0.0]], TypeError, "list"),
    ],
)
def test_bad_input_is_refused_clearly(resnet18_pair, x, error, words):
    with pytest.raises(error, match=words):
        fuse(resnet18_pair[1])(x)


def test_too_small_input_names_the_shape():
    model = npresnet.resnet18(maxpool_padding=0)
    with pytest.raises(ValueError, match="too small"):
        fuse(model)(np.zeros((1, 3, 2, 2), np.float32))


def test_bad_workspace_bytes(resnet18_pair):
    for bad in (0, -5, 2.5, "1MB"):
        with pytest.raises(ValueError, match="workspace_bytes"):
            fuse(resnet18_pair[1], workspace_bytes=bad)


# --------------------------------------------------------------------------- one fused convolution
def _random_bn(num, rng, dtype):
    bn = BatchNorm2d(num, dtype=dtype)
    bn.weight[...] = rng.uniform(0.5, 1.5, num)
    bn.bias[...] = rng.normal(0, 0.5, num)
    bn.running_mean[...] = rng.normal(0, 0.5, num)
    bn.running_var[...] = rng.uniform(0.3, 3, num)
    return bn


def _assert_conv_and_epilogue(conv, x, expected, budget, rng):
    """``conv`` (NHWC in, written into ``out``) equals ``expected`` (NHWC), alone and with its
    epilogue (residual add, then ReLU), in float64."""
    out = np.full(expected.shape, np.nan)
    conv(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), out, workspace_bytes=budget)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)

    identity = rng.standard_normal(expected.shape)
    out = identity.copy()
    conv(x.transpose(0, 2, 3, 1), out, residual=True, relu=True, workspace_bytes=budget)  # non-contiguous input too
    np.testing.assert_allclose(out, np.maximum(expected + identity, 0), rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    groups=st.sampled_from([1, 2, 4]),
    k=st.sampled_from([1, 2, 3, 5]),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    pad=st.integers(0, 3),
    budget=st.sampled_from([1, 200, 5000, 1 << 30]),
    bias=st.booleans(),
    row_windows=st.booleans(),
)
def test_fused_conv_equals_torch_conv_then_batch_norm(
    data, groups, k, stride, dilation, pad, budget, bias, row_windows
):
    """FusedConv(NHWC) == batch_norm(conv2d(x)) in float64, any geometry, any workspace bound,
    with the per-offset copies and (where they apply) the row-window copies of the stem."""
    cg, og = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    C, O = cg * groups, og * groups
    span = dilation * (k - 1) + 1
    H = data.draw(st.integers(max(1, span - 2 * pad), 12))
    W = data.draw(st.integers(max(1, span - 2 * pad), 12))
    N = data.draw(st.integers(0, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    conv = Conv2d(C, O, k, stride, pad, dilation, groups, bias=bias, dtype="float64", rng=rng)
    bn = _random_bn(O, rng, "float64")
    x = rng.standard_normal((N, C, H, W))

    with torch.no_grad():
        t = torch.nn.functional.conv2d(
            torch.from_numpy(x),
            torch.from_numpy(conv.weight),
            None if conv.bias is None else torch.from_numpy(conv.bias),
            stride,
            pad,
            dilation,
            groups,
        )
        t = torch.nn.functional.batch_norm(
            t,
            torch.from_numpy(bn.running_mean),
            torch.from_numpy(bn.running_var),
            torch.from_numpy(bn.weight),
            torch.from_numpy(bn.bias),
            eps=bn.eps,
        )
    expected = t.numpy().transpose(0, 2, 3, 1)  # NHWC

    weight, b = fold_batch_norm(conv, bn)
    fused = FusedConv(
        gemm_weight(weight, groups), b, (k, k), (stride, stride), (pad, pad), (dilation, dilation), groups
    )
    fused.row_window_max = 1 << 20 if row_windows else 0
    assert fused.output_shape((N, H, W, C)) == expected.shape
    _assert_conv_and_epilogue(fused, x, expected, budget, rng)


@settings(max_examples=60, deadline=None)
@given(N=st.integers(0, 5), out_h=st.integers(1, 20), row_bytes=st.integers(1, 100), budget=st.integers(1, 3000))
def test_chunks_cover_every_output_row_once_within_the_budget(N, out_h, row_bytes, budget):
    seen = np.zeros((N, out_h), dtype=int)
    for n0, n1, y0, y1 in workspace_chunks(N, out_h, row_bytes, budget):
        seen[n0:n1, y0:y1] += 1
        assert (n1 - n0) * (y1 - y0) * row_bytes <= max(budget, row_bytes)  # one row is the floor
        assert y1 - y0 == out_h or n1 - n0 == 1  # whole images, or rows of one image: contiguous output
    assert (seen == 1).all()


def test_fold_matches_the_batch_norm_formula():
    rng = np.random.default_rng(0)
    conv = Conv2d(3, 4, 3, bias=True, dtype="float32", rng=rng)
    bn = _random_bn(4, rng, "float32")
    weight, bias = fold_batch_norm(conv, bn)
    assert weight.dtype == bias.dtype == np.float64
    for o in range(4):
        scale = float(bn.weight[o]) / np.sqrt(float(bn.running_var[o]) + bn.eps)
        np.testing.assert_allclose(weight[o], conv.weight[o].astype(np.float64) * scale, rtol=1e-15)
        np.testing.assert_allclose(
            bias[o], (float(conv.bias[o]) - float(bn.running_mean[o])) * scale + float(bn.bias[o]), rtol=1e-13
        )


# --------------------------------------------------------------------------- Winograd
@pytest.mark.parametrize("m", [2, 4])
def test_winograd_matrices_compute_the_correlation(m):
    """Aᵀ[(G g) ⊙ (Bᵀ d)] is the 3-tap correlation of m + 2 inputs, for any d and g."""
    AT, G, BT = winograd_matrices(m)
    assert AT.shape == (m, m + 2) and G.shape == (m + 2, 3) and BT.shape == (m + 2, m + 2)
    for T in (AT, BT):  # dyadic input and output transforms: exact in float32, no error of their own
        assert np.array_equal(T.astype(np.float32), T) and np.array_equal(T * 2**3, np.round(T * 2**3))
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), np.correlate(d, g, "valid"), rtol=0, atol=1e-13)


def _conv_bn_torch(x, conv, bn, pad):
    """batch_norm(conv2d(x)) by torch, NCHW in, NHWC out."""
    with torch.no_grad():
        t = torch.nn.functional.conv2d(
            torch.from_numpy(x),
            torch.from_numpy(conv.weight),
            None if conv.bias is None else torch.from_numpy(conv.bias),
            1,
            pad,
        )
        t = torch.nn.functional.batch_norm(
            t,
            torch.from_numpy(bn.running_mean),
            torch.from_numpy(bn.running_var),
            torch.from_numpy(bn.weight),
            torch.from_numpy(bn.bias),
            eps=bn.eps,
        )
    return t.numpy().transpose(0, 2, 3, 1)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    m=st.sampled_from([2, 4]),
    pad=st.integers(0, 3),
    budget=st.sampled_from([1, 300, 5000, 1 << 30]),
    bias=st.booleans(),
)
def test_winograd_conv_equals_torch_conv_then_batch_norm(data, m, pad, budget, bias):
    """WinogradConv == batch_norm(conv2d(x)) in float64 to 1e-10: any size (tiles cropped at the
    border), padding, batch (0 included) and workspace bound (bands of tile rows), with and without
    the residual/ReLU epilogue. (Float32 against the derived bound: tests/fast/test_winograd.py.)"""
    C, O = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    H = data.draw(st.integers(max(1, 3 - 2 * pad), 13))
    W = data.draw(st.integers(max(1, 3 - 2 * pad), 13))
    N = data.draw(st.integers(0, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    conv = Conv2d(C, O, 3, 1, pad, bias=bias, dtype="float64", rng=rng)
    bn = _random_bn(O, rng, "float64")
    x = rng.standard_normal((N, C, H, W))
    expected = _conv_bn_torch(x, conv, bn, pad)

    weight, b = fold_batch_norm(conv, bn)
    wino = WinogradConv(winograd_weight(weight, m), b, (pad, pad))  # no fallback: Winograd at any size
    assert wino.m == m and wino.output_shape((N, H, W, C)) == expected.shape
    _assert_conv_and_epilogue(wino, x, expected, budget, rng)


@pytest.mark.parametrize("winograd, m", [("F4", 4), ("F2", 2)])
def test_fuse_uses_winograd_for_stride_1_3x3_convolutions_only(resnet50_pair, winograd, m):
    _, model = resnet50_pair
    fused, plain = fuse(model, winograd=winograd), fuse(model, winograd=False)
    assert (fused.winograd, plain.winograd) == (f"F{m}", False)
    convs = [c for b in fused.blocks for c in b.convs + [b.downsample] if c is not None]
    wino = [c for c in convs if isinstance(c, WinogradConv)]
    assert len(wino) == 3 + 3 + 5 + 2  # every bottleneck's 3×3 except the first of layers 2–4 (stride 2)
    assert all(c.m == m and c.U.shape[0] == (m + 2) ** 2 and isinstance(c.fallback, FusedConv) for c in wino)
    assert not any(isinstance(c, WinogradConv) for b in plain.blocks for c in b.convs)
    assert isinstance(fused.stem, FusedConv)


def test_auto_winograd_holds_both_tiles_and_each_call_runs_the_cheaper(resnet18_pair):
    """winograd="auto": every stride-1 3×3 convolution is F(4×4) → F(2×2) → im2col, and a call runs
    F(4×4) only if it has MIN_TILES tiles and the cost n²(T·C·O + 30·C·O + 24·T·(C+O)), written out
    here, is not above F(2×2)'s (where F(2×2) would run); F(2×2) against im2col by its tile count alone."""
    fused = fuse(resnet18_pair[1], winograd="auto")
    assert fused.winograd == "F4+F2"
    convs = [c for b in fused.blocks for c in b.convs if isinstance(c, WinogradConv)]
    assert len(convs) == 16 - 3  # every 3×3 of the eight blocks but the stride-2 first of layers 2–4
    assert all(c.m == 4 and c.fallback.m == 2 for c in convs)
    assert all(isinstance(c.fallback.fallback, FusedConv) for c in convs)

    def cost(n, T, C):
        return n * n * (T * C * C + 30 * C * C + 24 * T * 2 * C)

    by_channels = {c.in_channels: c for c in convs}
    # (N, side, C): tiles of F(4×4) and F(2×2), and which runs
    for N, side, C, runs in [(8, 56, 64, 4), (8, 14, 256, 4), (1, 14, 256, 2), (2, 14, 256, 2), (1, 7, 512, None)]:
        conv, shape = by_channels[C], (N, side, side, C)
        T4, T2 = N * ((side + 3) // 4) ** 2, N * ((side + 1) // 2) ** 2
        four = T4 >= 20 and not (T2 >= 24 and cost(6, T4, C) > cost(4, T2, C))
        assert (four, not four and T2 >= 24) == (runs == 4, runs == 2)
        assert conv.uses_winograd(shape) == four  # else the call goes to F(2×2) ...
        assert conv.fallback.uses_winograd(shape) == (T2 >= 24)  # ... which runs it or hands it to im2col


def test_auto_winograd_with_both_tiles_and_im2col_in_one_pass_matches_torchvision():
    """winograd="auto", batch 4 at 64×64: layer1 (16×16) runs F(4×4), layer2 (8×8) F(2×2), layers 3–4 im2col;
    float64 to 1e-10 and float32 within the bound covering every algorithm a layer may run."""
    tv, model = _pair_models("resnet18", seed=7)
    x = _input((4, 3, 64, 64))
    fused = fuse(model, winograd="auto")
    ran = {}
    for block in fused.blocks:
        conv = block.convs[-1]  # a stride-1 3×3 convolution of each stage
        side = 16 * 64 // conv.in_channels  # 16, 8, 4, 2: each stage halves the side, doubles the channels
        shape = (4, side, side, conv.out_channels)
        ran[conv.in_channels] = 4 if conv.uses_winograd(shape) else 2 if conv.fallback.uses_winograd(shape) else 0
    assert ran == {64: 4, 128: 2, 256: 0, 512: 0}
    assert_within_float32_bounds(fused(x), tv, x, winograd="auto")
    tv64, model64 = _pair_models("resnet18", dtype=torch.float64, seed=7)
    out64 = fuse(model64, winograd="auto")(x.astype(np.float64))
    assert relative_error(out64, torch_forward(tv64, x.astype(np.float64))) < F64_TOL


@pytest.mark.parametrize("winograd", ["F3", "f4", 4, 2.0, "", "on", None, "Auto"])
def test_bad_winograd_choice_is_refused_naming_the_argument(resnet18_pair, winograd):
    with pytest.raises(ValueError, match=r"^fuse: winograd=.*expected True, False, 'F2', 'F4' or 'auto'$"):
        fuse(resnet18_pair[1], winograd=winograd)


@pytest.mark.parametrize("winograd", ["F4", "F2"])
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_winograd_at_every_eligible_layer_matches_torchvision(name, winograd, monkeypatch):
    """With the few-tiles fallback off, Winograd runs at every stride-1 3×3 layer, even 1×1 ones:
    float64 to 1e-10, and float32 within the bound derived from the arithmetic of that variant,
    as the whole-model test."""
    monkeypatch.setattr("npresnet.fast.winograd.MIN_TILES", {2: 0, 4: 0})
    tv, model = _pair_models(name, seed=5)
    x = _input((2, 3, 40, 48))
    assert_within_float32_bounds(fuse(model, winograd=winograd)(x), tv, x, winograd=winograd)
    tv64, model64 = _pair_models(name, dtype=torch.float64, seed=5)
    out64 = fuse(model64, winograd=winograd)(x.astype(np.float64))
    assert relative_error(out64, torch_forward(tv64, x.astype(np.float64))) < F64_TOL


# --------------------------------------------------------------------------- the GPU-native path (emulated CuPy)
def test_device_path_in_chunks_of_one_image_equals_one_chunk_and_torch():
    """A 1-byte workspace on the device: one image per chunk (gather, GEMM, epilogue each), the same
    logits as one chunk for all, and torchvision's to 1e-10, in float64."""
    tv, model = _pair_models("resnet18", dtype=torch.float64, seed=6)
    model.to("cupy-emulated")
    x = _input((3, 3, 33, 29), dtype=np.float64)
    xd = npresnet.to_backend(x, "cupy-emulated")
    whole = npresnet.to_numpy(fuse(model, workspace_bytes=1 << 40)(xd))
    tiny = npresnet.to_numpy(fuse(model, workspace_bytes=1)(xd))
    assert relative_error(tiny, whole) < 1e-13  # the same sums; BLAS's order may depend on the row count
    assert relative_error(whole, torch_forward(tv, x)) < F64_TOL


def test_device_profile_names_the_device_steps():
    model = npresnet.resnet18(rng=0).to("cupy-emulated")
    records = fuse(model).profile(npresnet.to_backend(_input((1, 3, 32, 32)), "cupy-emulated"))
    assert [r.kind for r in records[:2]] == ["im2col", "maxpool"] and records[-1].kind == "head"
    assert {r.kind for r in records} == {"im2col", "maxpool", "head"}  # ResNet-18 has no stride-1 1×1
    assert all(set(r.phases) == {"gather", "gemm", "epilogue"} for r in records if r.kind == "im2col")
