"""npresnet._emulation: the CuPy stand-in refuses what CuPy refuses, counts launches and synchronisations,
matches the installed CuPy's API, runs kernels by their twins and cuBLAS calls on raw addresses, and
measures the GPU-native fused path's launch and synchronisation budgets and the precision it asks for."""

import inspect
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npresnet
from npresnet import _emulation
from npresnet._emulation import Float64PromotionError, allow_float64, count
from npresnet._emulation import cupy as cp
from npresnet._emulation._ufunc import BY_NAME
from npresnet.backend import to_backend, to_numpy
from npresnet.fast import fuse
from npresnet.fast.conv import FusedConv
from npresnet.fast.cuda.gemm import compute_type, grouped_gemm
from npresnet.fast.device import DeviceOps
from npresnet.nn import Conv2d
from npresnet.workspace import default_workspace_bytes, device_workspace_bytes


def dev(array):
    return cp.asarray(np.asarray(array))


# --------------------------------------------------------------------------- refusals, as CuPy
@pytest.mark.parametrize("convert", [np.asarray, np.array, lambda x: np.add(np.ones(3), x, out=np.empty(3))])
def test_implicit_conversion_to_the_host_is_refused(convert):
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed|Unsupported type"):
        convert(dev([1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    "read, expected",
    [
        (float, 2.0),
        (int, 2),
        (bool, True),
        (lambda x: x.item(), 2.0),
        (lambda x: x.tolist(), 2.0),
        (lambda x: 1 if x else 0, 1),
        (repr, "array(2.)"),
    ],
)
def test_reading_a_value_on_the_host_works_and_is_one_synchronisation(read, expected):
    x = dev([1.0, 2.0]).max()  # a 0-d device array, as CuPy's reductions give
    assert isinstance(x, cp.ndarray) and x.shape == ()
    with count() as c:
        assert read(x) == expected
    assert c.syncs == 1 and c["d2h"] == 1 and c.launches == 0


def test_truth_value_follows_cupy():
    with pytest.raises(ValueError, match="more than one element is ambiguous"):
        bool(dev([1.0, 2.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning, match="empty array is ambiguous"):
            bool(dev(np.zeros(0)))
    with pytest.raises(TypeError):
        range(dev(3)[()])  # CuPy arrays have no __index__


@pytest.mark.parametrize(
    "mix",
    [
        lambda d, h: d + h,
        lambda d, h: h + d,
        lambda d, h: h * d,
        lambda d, h: d @ h.reshape(3, 1),
        lambda d, h: h.reshape(1, 3) @ d,
        lambda d, h: cp.maximum(d, h),
        lambda d, h: np.maximum(d, h),
        lambda d, h: cp.where(d > 0, h, 0.0),
        lambda d, h: cp.matmul(d, h),
        lambda d, h: cp.copyto(d, h),
    ],
)
def test_host_and_device_arrays_do_not_mix(mix):
    d, h = dev(np.ones(3, np.float32)), np.ones(3, np.float32)
    with pytest.raises((TypeError, ValueError), match="Unsupported type|non-scalar numpy.ndarray|not allowed"):
        mix(d, h)


def test_in_place_update_of_a_host_array_by_a_device_array_is_refused():
    h = np.ones(3)
    with pytest.raises(TypeError):
        h += dev(np.ones(3))
    with pytest.raises(TypeError, match="Implicit conversion"):
        h[:] = dev(np.ones(3))
    assert np.array_equal(h, np.ones(3))


def test_assigning_a_host_array_into_a_device_array_is_a_transfer():
    """CuPy accepts ``dev[...] = host`` (it copies the host array over first)."""
    d = cp.zeros((2, 3), dtype=np.float32)
    with count() as c:
        d[1] = np.arange(3, dtype=np.float32)
    assert c["h2d"] == 1 and c["copy"] == 1
    assert np.array_equal(d.get(), [[0, 0, 0], [0, 1, 2]])


def test_numpy_functions_dispatch_only_where_cupy_implements_them():
    d = dev(np.arange(6.0).reshape(2, 3))
    assert isinstance(np.sum(d), cp.ndarray) and float(np.sum(d)) == 15.0
    out = cp.zeros((2, 3))
    np.copyto(out, d)
    assert np.array_equal(out.get(), d.get())
    # CuPy has no nanpercentile: NumPy finds no implementation for the device array
    with pytest.raises(TypeError, match="no implementation found for 'numpy.nanpercentile'"):
        np.nanpercentile(d, 50)
    # as_strided is not dispatched by NumPy at all: it converts, which CuPy refuses
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.lib.stride_tricks.as_strided(d, (3,), (8,))
    # add.at is CuPy's scatter_add; multiply.at does not exist in CuPy
    np.add.at(d, np.array([0, 0]), 1.0)
    assert d.get()[0].tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(NotImplementedError, match="cupy_multiply.at"):
        np.multiply.at(d, np.array([0]), 2.0)


def test_ufuncs_take_only_cupys_keywords():
    d = dev(np.arange(3.0))
    with pytest.raises(TypeError, match="Wrong arguments"):
        cp.maximum(d, 1.0, where=d > 0)
    out = cp.empty(3)
    assert cp.maximum(d, 1.0, out=out) is out and out.get().tolist() == [1.0, 1.0, 2.0]


def test_fresh_memory_is_poisoned():
    """Uninitialised device memory is not zero: reading it before writing it shows as NaN."""
    assert np.isnan(cp.empty((2, 2), dtype=np.float32).get()).all()
    assert (cp.empty(3, dtype=np.int64).get() == np.iinfo(np.int64).max).all()


# --------------------------------------------------------------------------- float64 creep
@pytest.mark.parametrize(
    "op",
    [
        lambda a: a + cp.zeros(3),  # zeros() defaults to float64
        lambda a: a * np.float64(2.0),  # a NumPy float64 scalar is strongly typed (NEP 50)
        lambda a: cp.matmul(a.reshape(1, 3), cp.ones((3, 1))),
        lambda a: cp.where(a > 0, a, cp.zeros(3)),
        lambda a: cp.bincount(cp.arange(3), weights=a),
    ],
)
def test_float64_creeping_into_float32_raises(op):
    a = dev(np.ones(3, np.float32))
    with pytest.raises(Float64PromotionError, match="float64 result from float32"):
        op(a)
    with allow_float64():
        assert op(a).dtype == np.float64


@pytest.mark.parametrize(
    "op, dtype",
    [
        (lambda a: a * 2.5, np.float32),  # Python floats are weak scalars
        (lambda a: a.astype(np.float64), np.float64),  # explicit
        (lambda a: a.sum(dtype=np.float64), np.float64),
        (lambda a: cp.arange(3).mean(), np.float64),  # integers to float64 is no creep
        (lambda a: a / a.dtype.type(3), np.float32),
    ],
)
def test_explicit_float64_and_weak_scalars_are_allowed(op, dtype):
    assert op(dev(np.ones(3, np.float32))).dtype == dtype


# --------------------------------------------------------------------------- values and counts
def test_values_are_numpys():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    da, db = dev(a), dev(b)
    assert np.array_equal((da @ db).get(), a @ b)
    assert np.array_equal(cp.maximum(da, 0.0).get(), np.maximum(a, 0.0))
    assert np.array_equal(da.var(axis=1).get(), a.var(axis=1))
    assert np.array_equal(da[:, ::2].T.get(), a[:, ::2].T)
    da[0, 1:3] += 1.0
    a[0, 1:3] += 1.0
    assert np.array_equal(da.get(), a)


def test_get_array_module_tells_device_arrays_from_host_ones():
    """The namespace's ``get_array_module`` calls Python's ``any``, not the namespace's own ``any`` reduction."""
    x = dev(np.zeros(3, np.float32))
    assert cp.get_array_module(x) is cp and cp.get_array_module(np.zeros(3), x) is cp
    assert cp.get_array_module(np.zeros(3), 1.0) is np and cp.get_array_module() is np


def test_views_are_free_and_copies_count():
    a = cp.zeros((4, 6), dtype=np.float32)
    with count() as c:
        a.reshape(6, 4), a.T, a[1:3, ::2], a[None], cp.broadcast_to(a[0], (3, 6))
    assert c.launches == 0
    with count() as c:
        a.T.reshape(24)  # cannot be a view
        a.astype(np.float32, copy=False)  # no-op
        a.astype(np.float64)
        a[cp.arange(2)]  # gather, after the arange
    assert (c["copy"], c["elementwise"], c["gather"], c.launches) == (2, 1, 1, 4)


def test_regions_nest_and_nothing_is_counted_outside():
    a = cp.ones(3)
    with count() as outer:
        a + 1.0
        with count() as inner:
            a * 2.0
    a - 1.0
    assert (outer.launches, inner.launches) == (2, 1)


# --------------------------------------------------------------------------- the API matches CuPy's
def _real_cupy():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed: the emulation cannot be compared with it")
    return cupy


def _public_functions():
    namespace = {name: value for name, value in vars(cp).items() if not name.startswith("_")}
    stride_tricks = {f"lib.stride_tricks.{n}": v for n, v in vars(cp.lib.stride_tricks).items() if callable(v)}
    return {**namespace, **stride_tricks}


def _lookup(module, dotted):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


@pytest.mark.parametrize("name", sorted(n for n, v in _public_functions().items() if inspect.isfunction(v)))
def test_every_emulated_function_has_cupys_signature(name):
    """The emulation never offers a function or an argument CuPy lacks (CuPy imports without a device)."""
    real = _lookup(_real_cupy(), name)
    emulated = _public_functions()[name]
    try:
        expected = inspect.signature(real)
    except (TypeError, ValueError):  # a compiled CuPy function (matmul is a GUFunc): its name is all we check
        return
    got = inspect.signature(emulated)
    assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == [
        (p.name, p.kind, p.default) for p in expected.parameters.values()
    ], f"cupy.{name}{expected} but emulated {got}"


def test_every_emulated_name_exists_in_cupy():
    cupy = _real_cupy()
    missing = [name for name in _public_functions() if _try_lookup(cupy, name) is None]
    assert not missing
    for name, emulated in BY_NAME.items():
        real = getattr(cupy, name)
        assert isinstance(real, cupy.ufunc) and (real.nin, real.nout) == (emulated.nin, emulated.nout), name
    methods = {n for n in vars(cp.ndarray) if not n.startswith("_")}
    assert methods <= set(dir(cupy.ndarray)), sorted(methods - set(dir(cupy.ndarray)))
    assert not hasattr(cupy.ndarray, "__index__") and not hasattr(cp.ndarray, "__index__")


def _try_lookup(module, dotted):
    try:
        return _lookup(module, dotted)
    except AttributeError:
        return None


# --------------------------------------------------------------------------- the CuPy branches of npresnet
def test_workspace_default_is_read_from_the_emulated_device():
    assert default_workspace_bytes(cp) == device_workspace_bytes(_emulation.DEVICE_TOTAL_BYTES)


# --------------------------------------------------------------------------- budgets of the fused path
def _device_conv_counts(k, C, residual=False, stride=1, groups=1):
    """Counts of one GPU-native convolution: NHWC (2, 12, 12, C) -> 8 channels, k×k, 'same' padding, ReLU."""
    weight = cp.asarray(np.ones((groups, k * k * C // groups, 8 // groups), np.float32))
    conv = FusedConv(weight, cp.zeros(8, dtype=np.float32), (k, k), (stride,) * 2, (k // 2,) * 2, (1, 1), groups)
    x = cp.zeros((2, 12, 12, C), dtype=np.float32)
    out = cp.zeros(conv.output_shape(x.shape), dtype=np.float32)
    ops = DeviceOps(cp, np.float32)
    with count() as c:
        ops.conv(conv, x, out, residual, True, lambda n, slot: cp.empty(n, dtype=np.float32), 1 << 30)
    assert c.syncs == 0 and c.transfers == 0
    return c


@pytest.mark.parametrize("residual", [False, True])
def test_pointwise_convolution_is_one_gemm_and_one_epilogue(residual):
    """A stride-1 1×1 convolution reads the activation as its GEMM operand: no gather, no copy."""
    c = _device_conv_counts(1, 64, residual)
    assert (c["gemm"], c["kernel"], c.launches) == (1, 1, 2)
    assert set(c.kernels) == {"bias_residual_relu<float, float>"}


_GATHERED = [  # (k, C, stride, groups): every convolution but the pointwise one
    (k, C, stride, groups)
    for k in (1, 3, 5, 7)
    for C, stride, groups in ((64, 1, 1), (2, 2, 1), (8, 1, 4), (64, 2, 1))
    if (k, stride, groups) != (1, 1, 1)
]


@pytest.mark.parametrize("k, C, stride, groups", _GATHERED)
def test_launches_per_convolution_are_constant_in_the_kernel_size(k, C, stride, groups):
    """Any other convolution, any kernel size, few channels (the stem) or many, grouped or not:
    one gather, one GEMM (one strided-batched call for all groups), one epilogue."""
    c = _device_conv_counts(k, C, residual=True, stride=stride, groups=groups)
    assert (c["kernel"], c["gemm"], c.launches) == (2, 1, 3), dict(c.by_kind)
    assert c.kernels == {"im2col_nhwc<float>": 1, "bias_residual_relu<float, float>": 1}


def test_row_window_columns_on_cupy_match_numpy_bit_for_bit():
    """FusedConv's own row-window gather (the stem's) reads runs as void items on NumPy only; on a CuPy
    array it takes the strided-view copies. Both fill the same columns, so the outputs agree exactly,
    with the output rows split into bands (a 2000-byte workspace) as well as whole."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((1, 7 * 7 * 3, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    x = rng.standard_normal((2, 3, 21, 18)).astype(np.float32)  # NCHW, read as NHWC through a transpose
    for budget in (2000, 1 << 30):
        outs = []
        for xp, to in ((np, np.asarray), (cp, dev)):
            conv = FusedConv(to(weight), to(bias), (7, 7), (2, 2), (3, 3), (1, 1), 1)
            assert conv.uses_row_windows(3)
            out = xp.empty((2, 11, 9, 8), dtype=np.float32)
            conv(to(x).transpose(0, 2, 3, 1), out, relu=True, workspace_bytes=budget)
            outs.append(to_numpy(out))
        np.testing.assert_array_equal(outs[0], outs[1])
        assert outs[0].max() > 0  # something was computed


def _resnet50_fused_counts(**fuse_kwargs):
    model = npresnet.resnet50(rng=0, dtype=np.float32).to("cupy-emulated")
    fused = fuse(model, **fuse_kwargs)
    x = to_backend(np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32), "cupy-emulated")
    fused(x)  # the first call allocates the activation buffers
    with count() as c:
        logits = fused(x)
    return c, to_numpy(logits), model


RESNET50_CONVOLUTIONS = 53
RESNET50_FUSED_LAUNCHES = 131


@pytest.mark.parametrize("winograd", [True, False])
def test_resnet50_fused_forward_launch_budget(winograd):
    """ResNet-50's fused forward on the device: 131 launches at batch 1, 64×64, 2.5 per convolution.

    Derived, not measured: one copy of the input to NHWC; per convolution one GEMM and one epilogue,
    plus one gather for each of the 20 that are not stride-1 1×1 (the stem, the sixteen 3×3, the
    three strided downsamples); one max pool; the head's average pool, fc GEMM and fc bias. No
    host synchronisation and no transfer: the forward never waits for the device. Winograd is a
    CPU technique and changes nothing here."""
    c, logits, model = _resnet50_fused_counts(winograd=winograd)
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    gathered = [m for m in convs if not (m.kernel_size == (1, 1) and m.stride == (1, 1))]
    assert (len(convs), len(gathered)) == (RESNET50_CONVOLUTIONS, 20)
    assert c.syncs == 0 and c.transfers == 0
    assert c["copy"] == 1 and c["gemm"] == len(convs) + 1
    assert c.kernels["im2col_nhwc<float>"] == len(gathered)
    assert c.kernels["bias_residual_relu<float, float>"] == len(convs) + 1
    assert c.kernels["max_pool_nhwc<float>"] == c.kernels["global_avg_pool_nhwc<float, float>"] == 1
    assert c.launches == 1 + len(gathered) + 2 * len(convs) + 1 + 3 == RESNET50_FUSED_LAUNCHES, dict(c.by_kind)
    assert c.launches <= 4 * RESNET50_CONVOLUTIONS
    assert logits.shape == (1, 1000) and np.isfinite(logits).all()


# --------------------------------------------------------------------------- precision modes
@pytest.mark.parametrize(
    "precision, compute",
    [(None, "CUBLAS_COMPUTE_32F"), ("float32", "CUBLAS_COMPUTE_32F"), ("tf32", "CUBLAS_COMPUTE_32F_FAST_TF32")],
)
def test_precision_names_the_cublas_compute_type_of_every_product(precision, compute):
    """float32 asks cuBLAS for CUBLAS_COMPUTE_32F on every product (never TF32 unless chosen)."""
    c, _, _ = _resnet50_fused_counts(precision=precision)
    assert c.gemm_types == {("CUDA_R_32F", "CUDA_R_32F", compute): RESNET50_CONVOLUTIONS + 1}


def test_float64_products_are_float64():
    model = npresnet.resnet18(rng=0, dtype=np.float64).to("cupy-emulated")
    x = to_backend(np.zeros((1, 3, 32, 32)), "cupy-emulated")
    with count() as c:
        fuse(model)(x)
    assert set(c.gemm_types) == {("CUDA_R_64F", "CUDA_R_64F", "CUBLAS_COMPUTE_64F")}


@pytest.mark.parametrize(
    "dtype, backend, precision, words",
    [
        ("float32", "numpy", "tf32", "needs a CuPy backend"),
        ("float64", "cupy-emulated", "tf32", "needs a float32 model"),
        ("float64", "cupy-emulated", "float32", "needs a float32 model"),
        ("float32", "cupy-emulated", "bfloat16", "expected None or one of"),
    ],
)
def test_a_precision_the_model_cannot_run_is_refused(dtype, backend, precision, words):
    model = npresnet.resnet18(rng=0, dtype=dtype).to(backend)
    with pytest.raises(ValueError, match=f"precision={precision!r}.*{words}"):
        fuse(model, precision=precision)


# --------------------------------------------------------------------------- RawModule and cuBLAS stand-ins
def _kernels32():
    from npresnet.fast.cuda import SOURCES

    (unit,) = [u for u in SOURCES if u.filename == "epilogue.cu"]
    return cp.RawModule(code=unit.source, name_expressions=unit.name_expressions).get_function(
        "bias_residual_relu<float, float>"
    )


def _epilogue_args(**changes):
    """Arguments of ``bias_residual_relu<float, float>`` over a (3, 4) matrix, by parameter name, some changed."""
    acc = dev(np.arange(12, dtype=np.float32).reshape(3, 4) - 5)
    args = dict(
        acc=acc, bias=dev(np.ones(4, np.float32)), residual=acc, out=cp.empty((3, 4), dtype=np.float32),
        M=np.int64(3), O=np.int32(4), has_residual=np.int32(0), relu=np.int32(1),
    )  # fmt: skip
    args.update(changes)
    return tuple(args.values())


def test_a_raw_kernel_launch_runs_its_twin_as_one_launch():
    kernel, args = _kernels32(), _epilogue_args()
    with count() as c:
        kernel((1,), (4,), args)  # 4 threads for 12 elements: the grid-stride loop takes 3 trips
    assert (c.launches, c["kernel"], c.kernels["bias_residual_relu<float, float>"], c.syncs) == (1, 1, 1, 0)
    expected = np.maximum(np.arange(12, dtype=np.float32).reshape(3, 4) - 5 + 1, 0)
    np.testing.assert_array_equal(args[3].get(), expected)


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(O=4), "'O' is declared int; got int"),  # a Python int reaches the kernel as 64 bits
        (dict(M=np.int32(3)), "'M' is declared long long; got int32"),
        (dict(bias=dev(np.ones(4))), "'bias' points to A .float32.; got a contiguous float64"),
        (dict(out=cp.empty((4, 3), dtype=np.float32).T), "non-contiguous float32"),
        (dict(acc=np.zeros((3, 4), np.float32)), "'acc' is a pointer; got ndarray"),
    ],
)
def test_a_raw_kernel_refuses_arguments_the_gpu_would_misread(change, words):
    with pytest.raises(TypeError, match=words):
        _kernels32()((1,), (32,), _epilogue_args(**change))


def test_a_raw_kernel_reading_outside_its_buffer_fails():
    """A launch told of more elements than its arrays hold reads past them: an error, as a fault on a GPU."""
    with pytest.raises(IndexError, match="outside"):
        _kernels32()((1,), (32,), _epilogue_args(M=np.int64(4)))


def test_only_sources_with_twins_can_be_loaded():
    with pytest.raises(NotImplementedError, match="twins"):
        cp.RawModule(code='extern "C" __global__ void f() {}', name_expressions=("f",))


def test_cublas_and_runtime_constants_are_cupys():
    cupy = _real_cupy()
    for name in dir(cp.cuda.cublas):
        if name.startswith("CUBLAS_"):
            assert getattr(cupy.cuda.cublas, name) == getattr(cp.cuda.cublas, name), name
    for name in ("CUDA_R_16F", "CUDA_R_32F", "CUDA_R_64F"):
        assert getattr(cupy.cuda.runtime, name) == getattr(cp.cuda.runtime, name), name
    for name in ("gemmEx", "gemmStridedBatchedEx", "getPointerMode", "setPointerMode"):
        assert callable(getattr(cupy.cuda.cublas, name))
    assert callable(cupy.cuda.device.get_cublas_handle)


@settings(max_examples=30, deadline=None)
@given(
    G=st.integers(1, 4), M=st.integers(0, 9), Kg=st.integers(1, 7), Og=st.integers(1, 5),
    dtype=st.sampled_from([np.float32, np.float64]),
)  # fmt: skip
def test_grouped_gemm_writes_each_group_beside_the_others(G, M, Kg, Og, dtype):
    """grouped_gemm through the emulated cuBLAS (rebuilt from addresses, leading dimensions and strides)
    equals the per-group product, written into unwritten (NaN) memory: C is not read."""
    rng = np.random.default_rng(G * 100 + M)
    a, b = rng.standard_normal((G, M, Kg)).astype(dtype), rng.standard_normal((G, Kg, Og)).astype(dtype)
    out = cp.empty((M, G * Og), dtype=dtype)
    grouped_gemm(cp, dev(a), dev(b), out, compute_type(dtype))
    expected = np.concatenate([a[g].astype(np.float64) @ b[g] for g in range(G)], axis=1)
    # K-term dot products, each within Kg·u·sum|terms| of exact (any order)
    bound = Kg * np.finfo(dtype).eps * np.concatenate([np.abs(a[g]) @ np.abs(b[g]) for g in range(G)], axis=1)
    assert (np.abs(out.get() - expected) <= bound).all()


@pytest.mark.parametrize(
    "mistake, error, words",
    [
        (dict(lda=2), ValueError, "leading dimension 2 < 3"),
        (dict(Atype=1, Btype=1, Ctype=1, computeType=70), TypeError, "CUDA_R_64F but the allocation holds float32"),
        (dict(strideA=13), IndexError, "outside its allocation"),
        (dict(computeType=70), ValueError, "CUBLAS_COMPUTE_64F with A CUDA_R_32F.*NOT_SUPPORTED"),
    ],
)
def test_emulated_cublas_refuses_what_would_read_garbage(mistake, error, words):
    """A (3, 4) @ (4, 2) column-major product, two batches, with one argument wrong."""
    A, B, C = (cp.zeros(s, dtype=np.float32) for s in ((2, 4, 3), (2, 2, 4), (2, 2, 3)))
    one, zero = np.ones((), np.float32), np.zeros((), np.float32)
    args = dict(
        handle=1, transa=0, transb=0, m=3, n=2, k=4, alpha=one.ctypes.data, A=A.data.ptr, Atype=0, lda=3,
        strideA=12, B=B.data.ptr, Btype=0, ldb=4, strideB=8, beta=zero.ctypes.data, C=C.data.ptr, Ctype=0,
        ldc=3, strideC=6, batchCount=2, computeType=68, algo=-1,
    )  # fmt: skip
    cp.cuda.cublas.gemmStridedBatchedEx(**args)  # correct as given
    args.update(mistake)  # strideA=13: the second matrix would end one element past A
    with pytest.raises(error, match=words):
        cp.cuda.cublas.gemmStridedBatchedEx(**args)
