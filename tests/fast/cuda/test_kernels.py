"""The CUDA kernels of npresnet.fast.cuda, checked without a GPU.

- Compilation: every source compiles with NVRTC for sm_80 and sm_90 (CuPy's options), and a
  planted syntax, type or resource error fails with NVRTC's message naming the line.
- Index math: each kernel's NumPy twin, the same statements over every thread of a launch,
  matches the reference layer of npresnet.functional over random geometries, writes every
  output element exactly once, and reads only inside its input (Buffer raises otherwise).
  Launches are drawn small (1-3 blocks of 1-64 threads), so the grid-stride loops take
  several trips.
- Translation: the CUDA source compiled for the CPU with g++ (tests/_cuda_host.py) gives
  bit-for-bit the twins' results, in float32, float64 and float16 storage (float32 arithmetic).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npresnet import functional as F
from npresnet.fast.cuda import SOURCES, epilogue, im2col, pool
from npresnet.fast.cuda.grid import Buffer, Launch, launch_config
from npresnet.fast.fold import gemm_weight
from npresnet.shapes import conv_output_size

EPS = np.finfo(np.float64).eps
U32 = 2.0**-24  # float32 unit roundoff
_CTYPE = {np.float32: "float", np.float64: "double", np.float16: "__half"}
_ARITH = {np.float32: np.float32, np.float64: np.float64, np.float16: np.float32}  # as npresnet.fast.cuda.launch
_MANGLED = {"float": "f", "double": "d", "__half": "6__half"}  # Itanium mangling of each template argument


def _both(dtype):
    """The template arguments ``"T, A"`` of a kernel taking the storage and the arithmetic type."""
    return f"{_CTYPE[dtype]}, {_CTYPE[_ARITH[dtype]]}"


# --------------------------------------------------------------------------- strategies
@st.composite
def launches(draw):
    return Launch(draw(st.integers(1, 3)), draw(st.sampled_from([1, 7, 32, 64])))


@st.composite
def windows(draw, pooling=False):
    """(kh, kw), (sy, sx), (ph, pw), (dy, dx) and an (H, W) that fits at least one window.

    Pooling padding is at most half the kernel, as torch requires."""
    kernel = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = tuple(draw(st.integers(0, k // 2 if pooling else 2)) for k in kernel)
    # smallest size with a window: d*(k - 1) + 1 <= size + 2p
    hw = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 7)) for k, p, d in zip(kernel, padding, dilation))
    return kernel, stride, padding, dilation, hw


def _values(rng, shape):
    return rng.standard_normal(shape)  # float64: the twins are exact or within a stated bound


def _assert_written_once(buffer: Buffer, name: str):
    counts = np.bincount(buffer.stores, minlength=3)
    assert buffer.stores.min() == 1 == buffer.stores.max(), f"{name}: stores per element {counts.tolist()[:3]}…"


# --------------------------------------------------------------------------- grid
@given(total=st.integers(0, 10**6), block=st.integers(1, 1024), max_blocks=st.integers(1, 100))
def test_launch_config_covers_total_with_capped_grid(total, block, max_blocks):
    grid, b = launch_config(total, block, max_blocks)
    assert b == block and 1 <= grid <= max_blocks
    assert grid == max_blocks or grid * block >= total  # uncapped: one trip; capped: the loop covers the rest


def test_buffer_refuses_out_of_bounds_access():
    buf = Buffer(np.zeros(4))
    with pytest.raises(IndexError, match=r"\[4\] outside \[0, 4\)"):
        buf[np.array([1, 4])]
    with pytest.raises(IndexError, match=r"\[-1\]"):
        buf[np.array([-1])] = 1.0


# --------------------------------------------------------------------------- im2col
def _im2col(launch, x_nhwc, kernel, stride, padding, dilation, groups):
    N, H, W, C = x_nhwc.shape
    out_h, out_w = (conv_output_size(*a) for a in zip((H, W), kernel, stride, padding, dilation))
    x, cols = Buffer(x_nhwc), Buffer(np.full((groups, N * out_h * out_w, kernel[0] * kernel[1] * C // groups), np.nan))
    im2col.im2col_nhwc(launch, x, cols, N, H, W, C, out_h, out_w, *kernel, *stride, *padding, *dilation, groups)
    return cols


@given(launch=launches(), geometry=windows(), N=st.integers(1, 2), Cg=st.integers(1, 3), groups=st.integers(1, 3))
def test_im2col_twin_matches_functional_im2col(launch, geometry, N, Cg, groups):
    kernel, stride, padding, dilation, (H, W) = geometry
    C = Cg * groups
    x = _values(np.random.default_rng(0), (N, C, H, W))
    cols = _im2col(launch, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), kernel, stride, padding, dilation, groups)
    _assert_written_once(cols, "cols")
    ref = F.im2col(x, kernel, dilation, padding, stride)  # (N, C*kh*kw, L), rows (c, i, j)
    (kh, kw), L = kernel, ref.shape[-1]
    ref = ref.reshape(N, groups, Cg, kh, kw, L).transpose(1, 0, 5, 3, 4, 2)  # (groups, N, L, kh, kw, Cg)
    np.testing.assert_array_equal(cols.array, ref.reshape(groups, N * L, kh * kw * Cg))


@given(launch=launches(), geometry=windows(), Cg=st.integers(1, 3), Og=st.integers(1, 3), groups=st.integers(1, 3))
def test_im2col_twin_columns_times_fused_weight_is_conv2d(launch, geometry, Cg, Og, groups):
    """The column layout agrees with the fused path's weight layout (npresnet.fast.fold.gemm_weight)."""
    kernel, stride, padding, dilation, (H, W) = geometry
    rng = np.random.default_rng(1)
    x, w = _values(rng, (2, Cg * groups, H, W)), _values(rng, (Og * groups, Cg, *kernel))
    cols = _im2col(launch, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), kernel, stride, padding, dilation, groups)
    wg = gemm_weight(w, groups)  # (groups, K, Og)
    out = np.concatenate(list(cols.array @ wg), axis=-1)  # (M, O), groups side by side
    ref = F.conv2d(x, w, None, stride, padding, dilation, groups)  # (N, O, out_h, out_w)
    ref = ref.transpose(0, 2, 3, 1).reshape(out.shape)
    # both are K-term float64 dot products, in different orders: each within K*eps*sum|terms| of exact
    K = wg.shape[1]
    bound = 2 * K * EPS * np.concatenate(list(np.abs(cols.array) @ np.abs(wg)), axis=-1)
    assert (np.abs(out - ref) <= bound).all()


# --------------------------------------------------------------------------- epilogue
@given(
    launch=launches(),
    M=st.integers(1, 40),
    O=st.integers(1, 9),
    has_residual=st.booleans(),
    relu=st.booleans(),
    in_place=st.booleans(),
)
def test_epilogue_twin_matches_its_numpy_definition(launch, M, O, has_residual, relu, in_place):
    rng = np.random.default_rng(2)
    acc, bias, residual = _values(rng, (M, O)), _values(rng, O), _values(rng, (M, O))
    expected = acc + bias
    if has_residual:
        expected = expected + residual
    if relu:
        expected = np.maximum(expected, 0)
    acc_buf = Buffer(acc.copy())
    out = acc_buf if in_place else Buffer(np.full((M, O), np.nan))
    # without a residual the kernel gets a pointer it must not read: an empty buffer fails on any read
    res_buf = Buffer(residual if has_residual else np.empty(0))
    epilogue.bias_residual_relu(launch, acc_buf, Buffer(bias), res_buf, out, M, O, int(has_residual), int(relu))
    _assert_written_once(out, "out")
    np.testing.assert_array_equal(out.array, expected)  # the same IEEE operations in the same order


def test_epilogue_twin_relu_keeps_nan():
    acc = np.array([[np.nan, -1.0, 2.0]])
    out = Buffer(np.zeros((1, 3)))
    epilogue.bias_residual_relu(Launch(1, 4), Buffer(acc), Buffer(np.zeros(3)), Buffer(acc), out, 1, 3, 0, 1)
    np.testing.assert_array_equal(out.array, [[np.nan, 0.0, 2.0]])


@given(launch=launches(), M=st.integers(1, 40), O=st.integers(1, 9), has_residual=st.booleans())
def test_epilogue_twin_float16_storage_computes_in_float32_and_rounds_once(launch, M, O, has_residual):
    """float16 storage: the float32 product and bias plus the float16 shortcut, summed in float32,
    rounded once to float16 (the NumPy definition in the kernel's comment, operation by operation)."""
    rng = np.random.default_rng(8)
    acc, bias = _values(rng, (M, O)).astype(np.float32), _values(rng, O).astype(np.float32)
    residual = _values(rng, (M, O)).astype(np.float16)
    v = acc + bias
    if has_residual:
        v = v + residual.astype(np.float32)
    expected = np.maximum(v, np.float32(0)).astype(np.float16)
    out = Buffer(np.full((M, O), np.nan, dtype=np.float16))
    res_buf = Buffer(residual if has_residual else np.empty(0, np.float16))
    epilogue.bias_residual_relu(launch, Buffer(acc), Buffer(bias), res_buf, out, M, O, int(has_residual), 1)
    _assert_written_once(out, "out")
    assert out.array.dtype == np.float16
    np.testing.assert_array_equal(out.array, expected)
    # against float64: two float32 additions (each within U32 of a partial sum <= m), ReLU (1-Lipschitz),
    # one rounding to float16 (within U16 of the float32 value, or half a subnormal step, 2**-25)
    exact = np.maximum(acc.astype(np.float64) + bias + (residual if has_residual else 0), 0)
    m = np.abs(acc) + np.abs(bias) + (np.abs(residual.astype(np.float64)) if has_residual else 0)
    float32_error = 2 * U32 * m
    assert (np.abs(out.array - exact) <= 2.0**-11 * (exact + float32_error) + float32_error + 2.0**-25).all()


# --------------------------------------------------------------------------- pooling
@given(launch=launches(), geometry=windows(pooling=True), N=st.integers(1, 2), C=st.integers(1, 4), ceil=st.booleans())
def test_max_pool_twin_matches_functional_max_pool2d(launch, geometry, N, C, ceil):
    kernel, stride, padding, dilation, (H, W) = geometry
    x = _values(np.random.default_rng(3), (N, C, H, W)) - 10  # all negative: zero padding would win
    ref = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil)  # (N, C, out_h, out_w)
    out_h, out_w = ref.shape[-2:]
    out = Buffer(np.full((N, out_h, out_w, C), np.nan))
    x_nhwc = Buffer(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    pool.max_pool_nhwc(launch, x_nhwc, out, N, H, W, C, out_h, out_w, *kernel, *stride, *padding, *dilation)
    _assert_written_once(out, "out")
    np.testing.assert_array_equal(out.array, ref.transpose(0, 2, 3, 1))  # a max is exact


def test_max_pool_twin_propagates_nan_as_functional():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 1, 2] = np.nan
    ref = F.max_pool2d(x, 3, 2, 1)
    out = Buffer(np.zeros((1, 2, 2, 1)))
    pool.max_pool_nhwc(
        Launch(1, 32), Buffer(x.reshape(1, 4, 4, 1).copy()), out, 1, 4, 4, 1, 2, 2, 3, 3, 2, 2, 1, 1, 1, 1
    )
    assert np.isnan(ref).sum() == 2
    np.testing.assert_array_equal(out.array[..., 0], ref[:, 0])


@given(launch=launches(), N=st.integers(1, 3), C=st.integers(1, 5), H=st.integers(1, 6), W=st.integers(1, 6))
def test_global_avg_pool_twin_matches_adaptive_avg_pool2d(launch, N, C, H, W):
    x = _values(np.random.default_rng(4), (N, C, H, W))
    out = Buffer(np.full((N, C), np.nan))
    x_nhwc = Buffer(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    pool.global_avg_pool_nhwc(launch, x_nhwc, out, N, H * W, C)
    _assert_written_once(out, "out")
    ref = F.adaptive_avg_pool2d(x, 1)[..., 0, 0]  # (N, C)
    # two sums of H*W terms in different orders, then one division: each within H*W*eps*sum|x|/HW
    bound = 2 * (H * W + 1) * EPS * np.abs(x).mean(axis=(2, 3))
    assert (np.abs(out.array - ref) <= bound).all()


@given(launch=launches(), geometry=windows(pooling=True), C=st.integers(1, 4))
def test_pooling_twins_on_float16_storage(launch, geometry, C):
    """Max pooling of float16 values is exact; the average pool reads float16 and sums in float32."""
    kernel, stride, padding, dilation, (H, W) = geometry
    N = 2
    x = (_values(np.random.default_rng(9), (N, C, H, W)) - 10).astype(np.float16)
    ref = F.max_pool2d(x.astype(np.float64), kernel, stride, padding, dilation)
    out_h, out_w = ref.shape[-2:]
    out = Buffer(np.full((N, out_h, out_w, C), np.nan, dtype=np.float16))
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    pool.max_pool_nhwc(launch, Buffer(x_nhwc), out, N, H, W, C, out_h, out_w, *kernel, *stride, *padding, *dilation)
    _assert_written_once(out, "out")
    np.testing.assert_array_equal(out.array, ref.transpose(0, 2, 3, 1))
    mean = Buffer(np.full((N, C), np.nan, dtype=np.float32))
    pool.global_avg_pool_nhwc(launch, Buffer(x_nhwc), mean, N, H * W, C)
    _assert_written_once(mean, "mean")
    exact = x.astype(np.float64).mean(axis=(2, 3))
    # H*W float32 additions and one division, each within u32 of a partial sum of at most sum|x|
    assert mean.array.dtype == np.float32
    assert (np.abs(mean.array - exact) <= (H * W + 1) * U32 * np.abs(x.astype(np.float64)).mean(axis=(2, 3))).all()


# --------------------------------------------------------------------------- NVRTC
@pytest.fixture
def compile_cuda():
    """The NVRTC compile helper; skipped with the reason where CuPy (the gpu and test extras) is absent."""
    pytest.importorskip("cupy", reason="compiling kernels needs CuPy: pip install 'npresnet[gpu]'")
    from npresnet.fast.cuda.nvrtc import compile_cuda

    return compile_cuda


def _arch_params():
    from npresnet.fast.cuda.nvrtc import ARCHITECTURES

    return [pytest.param(a, id=f"sm_{a}") for a in ARCHITECTURES]


@pytest.mark.parametrize("arch", _arch_params())
@pytest.mark.parametrize("unit", SOURCES, ids=lambda u: u.filename)
def test_every_kernel_compiles_for_each_architecture(compile_cuda, unit, arch):
    compiled = compile_cuda(unit.source, unit.name_expressions, arch, unit.filename)
    assert compiled.cubin[:4] == b"\x7fELF"
    assert int.from_bytes(compiled.cubin[18:20], "little") == 190  # e_machine: EM_CUDA
    assert set(compiled.lowered) == set(unit.name_expressions)
    for expression, symbol in compiled.lowered.items():
        kernel, arguments = expression.rstrip(">").split("<")
        mangled = "".join(_MANGLED[a.strip()] for a in arguments.split(","))
        assert f"{len(kernel)}{kernel}I{mangled}E" in symbol  # Itanium mangling: name, template arguments
        assert symbol.encode() in compiled.cubin


def _plant(source: str, line_text: str, replacement: str) -> tuple[str, int]:
    """``source`` with the one line containing ``line_text`` rewritten; returns it and that line's number."""
    lines = source.split("\n")
    (number,) = [n for n, line in enumerate(lines, 1) if line_text in line]
    lines[number - 1] = lines[number - 1].replace(line_text, replacement)
    return "\n".join(lines), number


@pytest.mark.parametrize(
    "line_text, replacement, message",
    [
        ("cols[idx] = v;", "cols[idx] = v", 'expected a ";"'),  # syntax: the error is reported on the next line
        ("T v = 0;", "T* v = 0.5;", "cannot be used to initialize"),  # type
    ],
    ids=["syntax", "type"],
)
def test_planted_error_fails_naming_its_line(compile_cuda, line_text, replacement, message):
    from npresnet.fast.cuda.nvrtc import KernelCompileError

    broken, number = _plant(im2col.SOURCE, line_text, replacement)
    number += message.startswith("expected")
    with pytest.raises(KernelCompileError, match=rf"(?s)im2col\.cu\({number}\): error: .*{message}"):
        compile_cuda(broken, im2col.NAME_EXPRESSIONS, 80, "im2col.cu")


@pytest.mark.parametrize("arch", _arch_params())
def test_too_much_shared_memory_fails_at_compile_time(compile_cuda, arch):
    """ptxas runs inside NVRTC with -arch=sm_XX: 64 KiB of static shared memory exceeds the 48 KiB limit."""
    from npresnet.fast.cuda.nvrtc import KernelCompileError

    greedy = epilogue.SOURCE + (
        'extern "C" __global__ void greedy(float* y) {\n'
        "    __shared__ float s[16384];\n"
        "    s[threadIdx.x] = y[threadIdx.x];\n"
        "    __syncthreads();\n"
        "    y[threadIdx.x] = s[16383 - threadIdx.x];\n"
        "}\n"
    )
    with pytest.raises(KernelCompileError, match="uses too much shared data"):
        compile_cuda(greedy, epilogue.NAME_EXPRESSIONS, arch, "greedy.cu")


# --------------------------------------------------------------------------- the C itself, on the CPU
@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """Every kernel compiled with g++ (tests/_cuda_host.py): ``{name_expression: launch}``."""
    from _cuda_host import build, gxx_missing

    if gxx_missing():
        pytest.skip(gxx_missing())
    directory = tmp_path_factory.mktemp("cuda_host")
    return {name: launch for unit in SOURCES for name, launch in build(unit, directory).items()}


def _ptr(array):
    return ctypes.c_void_p(array.ctypes.data)


def _c_ints(*values):
    return [ctypes.c_int(v) for v in values]


@given(
    launch=launches(),
    geometry=windows(),
    Cg=st.integers(1, 3),
    groups=st.integers(1, 2),
    dtype=st.sampled_from([np.float32, np.float64, np.float16]),
)
def test_host_compiled_im2col_matches_its_twin(host_kernels, launch, geometry, Cg, groups, dtype):
    kernel, stride, padding, dilation, (H, W) = geometry
    N, C = 2, Cg * groups
    x = _values(np.random.default_rng(5), (N, H, W, C)).astype(dtype)
    twin = _im2col(launch, x, kernel, stride, padding, dilation, groups).array
    cols = np.full(twin.shape, np.nan, dtype=dtype)
    out_h, out_w = (conv_output_size(*a) for a in zip((H, W), kernel, stride, padding, dilation))
    sizes = _c_ints(N, H, W, C, out_h, out_w, *kernel, *stride, *padding, *dilation, groups)
    run = host_kernels[f"im2col_nhwc<{_CTYPE[dtype]}>"]
    run(launch.gridDim_x, launch.blockDim_x, _ptr(x), _ptr(cols), *sizes)
    np.testing.assert_array_equal(cols, twin)


@given(
    launch=launches(),
    geometry=windows(pooling=True),
    C=st.integers(1, 3),
    dtype=st.sampled_from([np.float32, np.float64, np.float16]),
)
def test_host_compiled_pooling_matches_its_twins(host_kernels, launch, geometry, C, dtype):
    kernel, stride, padding, dilation, (H, W) = geometry
    N = 2
    x = _values(np.random.default_rng(6), (N, H, W, C)).astype(dtype)
    x[0, 0, 0, 0] = np.nan  # a max must propagate it
    out_h, out_w = (conv_output_size(*a) for a in zip((H, W), kernel, stride, padding, dilation))
    twin = Buffer(np.zeros((N, out_h, out_w, C), dtype=dtype))
    pool.max_pool_nhwc(launch, Buffer(x), twin, N, H, W, C, out_h, out_w, *kernel, *stride, *padding, *dilation)
    out = np.full(twin.array.shape, np.nan, dtype=dtype)
    sizes = _c_ints(N, H, W, C, out_h, out_w, *kernel, *stride, *padding, *dilation)
    host_kernels[f"max_pool_nhwc<{_CTYPE[dtype]}>"](launch.gridDim_x, launch.blockDim_x, _ptr(x), _ptr(out), *sizes)
    np.testing.assert_array_equal(out, twin.array)

    twin = Buffer(np.zeros((N, C), dtype=_ARITH[dtype]))  # float16 storage: float32 means
    pool.global_avg_pool_nhwc(launch, Buffer(x), twin, N, H * W, C)
    out = np.full((N, C), np.nan, dtype=_ARITH[dtype])
    run = host_kernels[f"global_avg_pool_nhwc<{_both(dtype)}>"]
    run(launch.gridDim_x, launch.blockDim_x, _ptr(x), _ptr(out), *_c_ints(N, H * W, C))
    np.testing.assert_array_equal(out, twin.array)


@given(
    launch=launches(),
    M=st.integers(1, 20),
    O=st.integers(1, 5),
    has_residual=st.booleans(),
    relu=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64, np.float16]),
)
def test_host_compiled_epilogue_matches_its_twin(host_kernels, launch, M, O, has_residual, relu, dtype):
    rng = np.random.default_rng(7)
    acc, bias = (_values(rng, s).astype(_ARITH[dtype]) for s in ((M, O), (O,)))  # the arithmetic type
    residual = _values(rng, (M, O)).astype(dtype)  # the storage type, as the output
    acc[0, 0] = np.nan  # relu must keep it
    twin = Buffer(np.zeros((M, O), dtype=dtype))
    flags = int(has_residual), int(relu)
    epilogue.bias_residual_relu(launch, Buffer(acc), Buffer(bias), Buffer(residual), twin, M, O, *flags)
    out = np.full((M, O), np.nan, dtype=dtype)
    run = host_kernels[f"bias_residual_relu<{_both(dtype)}>"]
    args = _ptr(acc), _ptr(bias), _ptr(residual), _ptr(out), ctypes.c_longlong(M), *_c_ints(O, *flags)
    run(launch.gridDim_x, launch.blockDim_x, *args)
    np.testing.assert_array_equal(out, twin.array)
