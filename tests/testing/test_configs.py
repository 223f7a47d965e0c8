"""npresnet.testing, the reusable kit: its oracle is right, its strategies only draw valid
configurations, and its assertion helper passes correct convolutions and fails wrong ones."""

import doctest

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

import npresnet.functional as nf
import npresnet.testing as kit
from npresnet.testing import ConvConfig, PoolConfig

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def torch_conv2d(x, w, b=None, **kw):
    return F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **kw)


# npresnet's own conv2d and pools pass the helpers in tests/functional/ (every backend).
@given(config=kit.conv2d_configs())
def test_helper_passes_torch(config):
    """torch's conv2d passes in float64 (a plain NumPy-in/tensor-out wrapper) and in float32
    (``convert=torch.from_numpy``); so the strategy's configurations are all valid for torch."""
    kit.assert_conv2d_matches(torch_conv2d, config)
    kit.assert_conv2d_matches(F.conv2d, config, dtype=np.float32, convert=torch.from_numpy)


@given(config=kit.pool2d_configs())
def test_pool_helper_passes_torch(config):
    assert all(p <= k // 2 for p, k in zip(config.padding, config.kernel_size))
    fn = F.max_pool2d if config.kind == "max" else F.avg_pool2d
    kit.assert_pool2d_matches(fn, config, dtype=np.float32, convert=torch.from_numpy)


# ---- wrong convolutions the helper must reject
def flipped_kernel(x, w, b=None, **kw):
    """True convolution instead of cross-correlation."""
    return nf.conv2d(x, np.ascontiguousarray(w[..., ::-1, ::-1]), b, **kw)


def ignores_dilation(x, w, b=None, dilation=1, **kw):
    return nf.conv2d(x, w, b, **kw)


def drops_bias(x, w, b=None, **kw):
    return nf.conv2d(x, w, None, **kw)


def float32_inside(x, w, b=None, **kw):
    """Right arithmetic but computed in float32: fails the float64 bound."""
    cast = lambda a: None if a is None else a.astype(np.float32)
    return nf.conv2d(cast(x), cast(w), cast(b), **kw).astype(np.float64)


def swaps_height_and_width_stride(x, w, b=None, stride=1, **kw):
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    return nf.conv2d(x, w, b, stride=(sx, sy), **kw)


WRONG = [
    (flipped_kernel, ConvConfig((1, 2, 5, 5), (3, 2, 3, 3), False, (1, 1), (1, 1), (1, 1), 1), "differs"),
    (ignores_dilation, ConvConfig((1, 1, 7, 7), (1, 1, 3, 3), False, (1, 1), (2, 2), (2, 2), 1), "has shape"),
    (ignores_dilation, ConvConfig((1, 1, 7, 7), (1, 1, 3, 3), False, (1, 1), "same", (2, 2), 1), "differs"),
    (drops_bias, ConvConfig((1, 1, 4, 4), (2, 1, 2, 2), True, (1, 1), (0, 0), (1, 1), 1), "differs"),
    (float32_inside, ConvConfig((2, 4, 6, 6), (4, 4, 3, 3), True, (1, 1), (1, 1), (1, 1), 1), "differs"),
    (
        swaps_height_and_width_stride,
        ConvConfig((1, 1, 6, 6), (1, 1, 2, 2), False, (1, 2), (0, 0), (1, 1), 1),
        "has shape",
    ),
]


@pytest.mark.parametrize("fn, config, problem", WRONG, ids=[w[0].__name__ + str(i) for i, w in enumerate(WRONG)])
def test_helper_fails_wrong_conv(fn, config, problem):
    with pytest.raises(AssertionError, match=problem) as info:
        kit.assert_conv2d_matches(fn, config)
    # the message says which configuration failed: its shapes and hyper-parameters
    assert f"float64{config.input_shape}" in str(info.value) and f"stride={config.stride!r}" in str(info.value)


def test_helper_finds_flipped_kernel_by_search():
    """Driven by the strategy, hypothesis finds a counterexample for a flipped kernel."""

    @settings(max_examples=200, derandomize=True, database=None)
    @given(config=kit.conv2d_configs())
    def check(config):
        kit.assert_conv2d_matches(flipped_kernel, config)

    with pytest.raises(AssertionError, match="differs from the float64 oracle"):
        check()


def test_pool_helper_fails_zero_padded_max_pool():
    """Max pooling that pads with 0 instead of -inf is wrong where a window holds only negatives."""

    def zero_padded(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        p = padding if isinstance(padding, int) else padding[0]
        xz = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
        return nf.max_pool2d(xz, kernel_size, stride, 0, dilation, ceil_mode)

    # 3x3 windows over a 1x1 input padded by 1: each window holds one value and eight of padding
    config = PoolConfig("max", (2, 8, 1, 1), (3, 3), (3, 3), (1, 1), (1, 1), False)
    kit.assert_pool2d_matches(nf.max_pool2d, config)
    with pytest.raises(AssertionError, match="max_pool2d's output differs"):
        kit.assert_pool2d_matches(zero_padded, config)


def test_pool_helper_fails_wrong_divisor():
    config = PoolConfig("avg", (1, 2, 5, 5), (3, 3), (2, 2), (1, 1), (1, 1), False, False)
    wrong = lambda x, **kw: nf.avg_pool2d(x, **{**kw, "count_include_pad": True})
    with pytest.raises(AssertionError, match="avg_pool2d's output differs"):
        kit.assert_pool2d_matches(wrong, config)


# ---- the oracle itself, on hand-checkable cases
def test_reference_conv2d_by_hand():
    x = np.arange(9.0).reshape(1, 1, 3, 3)  # 0..8
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[i, j] - x[i+1, j+1]
    np.testing.assert_array_equal(kit.reference_conv2d(x, w), [[[[-4.0, -4.0], [-4.0, -4.0]]]])
    # padding 1: the corner window sees only x[0, 0] under the -1 tap
    assert kit.reference_conv2d(x, w, padding=1)[0, 0, 0, 0] == -0.0
    assert kit.reference_conv2d(x, w, padding=1)[0, 0, 3, 3] == 8.0
    assert kit.reference_conv2d(x, w, np.array([10.0]), stride=2).tolist() == [[[[6.0]]]]


def test_reference_pools_by_hand():
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # -1..-9
    np.testing.assert_array_equal(kit.reference_max_pool2d(x, 2, 2, 1), [[[[-1.0, -2.0], [-4.0, -5.0]]]])
    avg = kit.reference_avg_pool2d(x, 2, 2, 1, count_include_pad=True)
    np.testing.assert_array_equal(avg, [[[[-1 / 4, -5 / 4], [-11 / 4, -28 / 4]]]])
    avg = kit.reference_avg_pool2d(x, 2, 2, 1, count_include_pad=False)
    np.testing.assert_array_equal(avg, [[[[-1.0, -2.5], [-5.5, -7.0]]]])
    ad = kit.reference_adaptive_avg_pool2d(np.arange(3.0).reshape(1, 3), (1, 2))  # bins [0, 2), [1, 3)
    np.testing.assert_array_equal(ad, [[0.5, 1.5]])


def test_docstring_examples_run():
    result = doctest.testmod(kit)
    assert result.attempted >= 5 and result.failed == 0


def test_missing_hypothesis_gives_clear_import_error():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n    import npresnet.testing\nexcept ImportError as e:\n"
        "    assert 'pip install hypothesis' in str(e), e\nelse:\n    raise SystemExit('no ImportError')\n"
        "import npresnet.functional  # the rest of the package does not need it"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kit_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, npresnet.testing; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
