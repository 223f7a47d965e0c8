"""npresnet.testing's contract: what cases hold, how pins and forms work, how outputs of other libraries
are read, what failures look like, and the oracles' NaN/inf rules against torch."""

import doctest
import importlib
import math
import pkgutil
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import npresnet.functional as nf
import npresnet.testing as kit

SOME = settings(max_examples=30, deadline=None, database=None)
T = torch.from_numpy
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


# --------------------------------------------------------------------------- cases, pins, forms
@SOME
@given(kit.conv2d_cases(forms=("int",), allow_nan=True, allow_infinity=True, noncontiguous=True))
def test_int_form_nan_only_in_input_and_positive_strides(case):
    assert all(type(case.kwargs[k]) is int for k in ("stride", "dilation") if k in case.kwargs)
    assert type(case.kwargs.get("padding", 0)) is int
    x, w, b = case.args
    for a in (w, b, case.grad_output):
        assert a is None or np.isfinite(a).all()  # weight, bias and grad_output stay finite
    for a in (x, w, b, case.grad_output):
        assert a is None or all(s > 0 for s in a.strides)  # views, but never zero or negative strides


@SOME
@given(kit.pool2d_cases("avg", ceil_mode=True, divisor_override=None, count_include_pad=True, forms=("pair",)))
def test_pins_fix_parameters_and_defaults_are_not_passed(case):
    assert case.kwargs["ceil_mode"] is True
    assert "divisor_override" not in case.kwargs and "count_include_pad" not in case.kwargs  # torch's defaults
    assert isinstance(case.kwargs["kernel_size"], tuple) and len(case.kwargs["kernel_size"]) == 2
    assert case.kind == "avg" and case.op == "avg_pool2d"


def test_strategies_draw_every_form_and_feature():
    """Over a few hundred draws each form and feature shows up (a strategy that never drew, say,
    1-tuples or return_indices would leave those code paths of a user's function untested)."""
    seen = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.data())
    def collect(data):
        case = data.draw(kit.conv2d_cases(max_size=4, max_channels=2))
        for k, v in case.kwargs.items():
            seen.add(
                (k, "str" if isinstance(v, str) else type(v).__name__ + (str(len(v)) if isinstance(v, tuple) else ""))
            )
        pool = data.draw(kit.pool2d_cases(max_size=4, max_channels=1))
        seen.update((k, repr(v)) for k, v in pool.kwargs.items() if isinstance(v, bool))
        seen.add(("divisor", pool.kwargs.get("divisor_override") is None))
        seen.add(("stride None", pool.kwargs.get("stride", "x") is None))
        seen.add(("unbatched", case.input.ndim == 3))

    collect()
    assert {("stride", "int"), ("stride", "tuple1"), ("stride", "tuple2"), ("padding", "str")} <= seen
    for flag in ("ceil_mode", "return_indices", "count_include_pad"):
        assert (flag, "True") in seen and (flag, "False") in seen
    assert {("divisor", True), ("divisor", False), ("stride None", True), ("unbatched", True)} <= seen


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: kit.conv2d_cases(kernel=3), TypeError),
        (lambda: kit.conv2d_cases(max_size=1000), ValueError),
        (lambda: kit.conv2d_cases(max_batch=0), ValueError),
        (lambda: kit.conv2d_cases(dtypes=(np.int32,)), ValueError),
        (lambda: kit.conv2d_cases(forms=("tuple",)), ValueError),
        (lambda: kit.conv2d_cases(padding="same", stride=2), ValueError),
        (lambda: kit.pool2d_cases(kind="min"), ValueError),
    ],
)
def test_bad_strategy_arguments_are_refused_with_the_name(make, error):
    with pytest.raises(error):
        make().example()


def test_case_repr_is_one_line_with_shapes_hyperparameters_values_and_layout():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    view = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    case = kit.Case("conv2d", (view, np.ones((1, 1, 1, 1)), None), {"stride": 2, "padding": "same"})
    text = repr(case)
    assert "\n" not in text
    assert "float64(1, 1, 2, 2) view with strides" in text and "[[[[0., 1.], [2., 3.]]]]" in text
    assert "stride=2" in text and "padding='same'" in text and "bias=None" in text
    big = kit.Case("max_pool2d", (np.zeros((2, 4, 9, 9)),), {"kernel_size": 3})
    assert "float64(2, 4, 9, 9)" in repr(big) and "0." not in repr(big)  # large arrays: shape only


# --------------------------------------------------------------------------- reading other libraries' outputs
class OnlyNumpyMethod:
    """Like a tinygrad Tensor: no array protocol, but a ``.numpy()`` method."""

    def __init__(self, a):
        self.a, self.dtype, self.shape = a, a.dtype, a.shape

    def numpy(self):
        return self.a


class OnlyDlpack:
    def __init__(self, a):
        self.a, self.dtype = a, a.dtype

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


class Opaque:
    dtype = "float64"


CASE = kit.Case("conv2d", (np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), None), {})


@pytest.mark.parametrize("wrap", [OnlyNumpyMethod, OnlyDlpack, T, lambda a: T(a).to(torch.float64)])
def test_outputs_of_other_libraries_are_read(wrap):
    kit.assert_conv2d_matches(lambda x, w, b: wrap(nf.conv2d(x, w, b)), CASE)


def test_an_unreadable_output_names_its_type():
    with pytest.raises(AssertionError, match=r"is a .*Opaque that the kit cannot read.*case: conv2d case\("):
        kit.assert_conv2d_matches(lambda x, w, b: Opaque(), CASE)


def test_bfloat16_output_is_read_and_its_dtype_checked():
    bf16 = lambda a: T(a).to(torch.bfloat16)  # noqa: E731
    case = kit.Case("conv2d", (np.ones((1, 1, 3, 3)), np.full((1, 1, 2, 2), 0.5), None), {})
    kit.assert_conv2d_matches(F.conv2d, case, convert=bf16)  # 4 x 0.5 = 2 is exact in bfloat16
    with pytest.raises(AssertionError, match="has dtype float32, the input's is bfloat16"):
        kit.assert_conv2d_matches(lambda x, w, b: F.conv2d(x, w, b).float(), case, convert=bf16)


def test_an_exception_from_the_function_shows_the_case():
    def broken(x, w, b=None):
        raise RuntimeError("kernel launch failed")

    with pytest.raises(AssertionError, match=r"conv2d raised RuntimeError: kernel launch failed; case: conv2d case\("):
        kit.assert_conv2d_matches(broken, CASE)


def test_every_kit_frame_of_a_failure_hides_itself():
    try:
        kit.assert_conv2d_matches(lambda x, w, b: nf.conv2d(x, w, b) + 1, CASE)
    except AssertionError:
        tb = sys.exc_info()[2]
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    ours = [f for f in frames if "npresnet/testing" in f.f_code.co_filename.replace("\\", "/")]
    assert len(ours) >= 2 and all(f.f_locals.get("__tracebackhide__") for f in ours)


def test_allowed_error_is_slack_bound_plus_atol_plus_rtol():
    """An output off by exactly d passes with atol >= d and fails just below it; rtol likewise."""
    want = kit.reference_conv2d(*CASE.args)  # 4.0 everywhere
    d = 0.25
    off = lambda x, w, b: nf.conv2d(x, w, b) + d  # noqa: E731
    kit.assert_conv2d_matches(off, CASE, atol=d)
    kit.assert_conv2d_matches(off, CASE, rtol=d / want.max())
    with pytest.raises(AssertionError, match=r"atol 0.24"):
        kit.assert_conv2d_matches(off, CASE, atol=0.24)


# --------------------------------------------------------------------------- the oracles' IEEE rules, against torch
def _inf_nan_input():
    x = np.array([[[[1.0, np.inf, 2.0], [-np.inf, 3.0, np.nan], [4.0, 5.0, 6.0]]]])
    return x


@pytest.mark.parametrize(
    "oracle, fn, kwargs",
    [
        (kit.reference_conv2d, F.conv2d, {}),  # 0·inf in conv gives NaN
        (kit.reference_conv2d, F.conv2d, {"padding": 1}),
        (kit.reference_conv_transpose2d, F.conv_transpose2d, {"stride": 2}),
        (kit.reference_max_pool2d, F.max_pool2d, {"kernel_size": 2, "stride": 1}),  # NaN wins the max
        (kit.reference_avg_pool2d, F.avg_pool2d, {"kernel_size": 2, "stride": 1}),  # inf + -inf is NaN
        (kit.reference_avg_pool2d, F.avg_pool2d, {"kernel_size": 2, "stride": 1, "padding": 1}),
        (kit.reference_adaptive_max_pool2d, F.adaptive_max_pool2d, {"output_size": 2}),
        (kit.reference_adaptive_avg_pool2d, F.adaptive_avg_pool2d, {"output_size": (2, None)}),
    ],
)
def test_oracle_nan_inf_rules_match_torch(oracle, fn, kwargs):
    x = _inf_nan_input()
    if "conv" in oracle.__name__:
        w = np.array([[[[0.0, 1.0], [2.0, -1.0]]]])
        args = (x, w)
    else:
        args = (x,)
    want = fn(*(T(a) for a in args), **kwargs).numpy()
    got = oracle(*args, **kwargs)
    np.testing.assert_array_equal(got, want)  # equal_nan: NaN where torch has NaN, the same infinities
    assert np.isnan(got).any() or np.isinf(got).any()


def test_reference_conv2d_backward_by_hand():
    """out = x[0]w[0] + x[1]w[1] (a 1x2 input, a 1x2 kernel): the gradients are g·w, g·x and g."""
    x, w, g = np.array([[[[2.0, 3.0]]]]), np.array([[[[5.0, 7.0]]]]), np.array([[[[10.0]]]])
    gi, gw, gb = kit.reference_conv2d_backward(g, x, w)
    np.testing.assert_array_equal(gi, [[[[50.0, 70.0]]]])
    np.testing.assert_array_equal(gw, [[[[20.0, 30.0]]]])
    np.testing.assert_array_equal(gb, [10.0])


def test_reference_conv_transpose2d_by_hand():
    """Stride 2 scatters each input pixel's kernel copy two apart; output_padding adds a bias-only column."""
    x, w = np.array([[[[1.0, 10.0]]]]), np.array([[[[1.0, 2.0]]]])
    got = kit.reference_conv_transpose2d(x, w, np.array([0.5]), stride=2, output_padding=(0, 1))
    np.testing.assert_array_equal(got, [[[[1.5, 2.5, 10.5, 20.5, 0.5]]]])


def test_bounds_are_the_stated_formulas():
    from npresnet.testing.bounds import gamma, safe_magnitude, sum_bound

    u32, u64 = 2.0**-24, 2.0**-53
    assert gamma(3, u32) == 3 * u32 / (1 - 3 * u32)
    n, m = 10, 2.0
    want = (gamma(n, u32) + gamma(n, u64)) * m + n * (2.0**-126 + 2.0**-1022)
    assert sum_bound(n, m, "float32") == want
    # float16 accumulates in float32 and rounds once to float16
    g = gamma(n, u32) + gamma(n, u64)
    assert sum_bound(n, m, "float16") == g * m + n * (2.0**-126 + 2.0**-1022) + 2.0**-11 * (1 + g) * m + 2.0**-14
    M = safe_magnitude(100, "float16")
    assert 101 * M * M <= 65504 / 2 < 101 * (2 * M) ** 2


def test_docstring_examples_run():
    attempted = 0
    for info in pkgutil.iter_modules(kit.__path__):
        result = doctest.testmod(importlib.import_module(f"npresnet.testing.{info.name}"))
        assert result.failed == 0
        attempted += result.attempted
    result = doctest.testmod(kit)
    assert result.failed == 0 and attempted + result.attempted >= 10


def test_legacy_calls_keep_working():
    config = kit.ConvConfig((1, 2, 5, 5), (2, 1, 3, 3), True, (2, 1), (1, 0), (1, 2), 2)
    kit.assert_conv2d_matches(nf.conv2d, config, dtype=np.float32, seed=3)
    pool = kit.PoolConfig("avg", (1, 2, 5, 5), (3, 3), (2, 2), (1, 1), (1, 1), True, False, 2)
    kit.assert_pool2d_matches(nf.avg_pool2d, pool, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype= and seed= apply only"):
        kit.assert_conv2d_matches(nf.conv2d, CASE, dtype=np.float32)
    assert math.isfinite(kit.conv2d_error_bound(config, *config.arrays(), np.float32).max())
