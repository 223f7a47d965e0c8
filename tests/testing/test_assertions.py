"""npresnet.testing's case strategies and assertions: correct implementations pass, and each planted
bug is caught, with a small counterexample, only when the keyword made for it is on."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings

import npresnet.functional as nf
import npresnet.testing as kit
from npresnet.testing.oracles import conv_pads

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

# A fixed, modest example count whatever the profile: the kit's own tests stay fast in CI, and a
# planted bug must be found within it (derandomized, so the same examples every run).
FEW = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,  # one shrunk failure, not an exception group
    suppress_health_check=[HealthCheck.too_slow],
)
T = torch.from_numpy
TORCH_POOL = {"max": F.max_pool2d, "avg": F.avg_pool2d}
TORCH_ADAPTIVE = {"max": F.adaptive_max_pool2d, "avg": F.adaptive_avg_pool2d}
NPRESNET_FORMS = ("int", "1-tuple", "pair", "string", "pair-with-None")


def first_failure(strategy, check):
    """Run ``check`` over ``strategy``; return hypothesis's shrunk failing case and its message (None if all pass)."""
    seen = []

    @FEW
    @given(strategy)
    def run(case):
        seen.append(case)
        check(case)

    try:
        run()
    except AssertionError as exc:
        return seen[-1], str(exc)  # hypothesis replays the minimal example last
    return None, None


def passes(strategy, check):
    case, message = first_failure(strategy, check)
    assert case is None, message


# --------------------------------------------------------------------------- correct implementations pass
def torch_conv_backward(g, x, w, **kw):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    b = torch.zeros(w.shape[0], dtype=w.dtype, requires_grad=True)
    F.conv2d(x, w, b, **kw).backward(g)
    return x.grad, w.grad, b.grad


def test_torch_passes_in_float64_and_float32_with_nan_inf_and_views():
    special = dict(dtypes=(np.float64, np.float32), allow_nan=True, allow_infinity=True, noncontiguous=True)
    passes(kit.conv2d_cases(**special), lambda c: kit.assert_conv2d_matches(F.conv2d, c, convert=T))
    passes(
        kit.conv_transpose2d_cases(**special),
        lambda c: kit.assert_conv_transpose2d_matches(F.conv_transpose2d, c, convert=T),
    )
    passes(kit.pool2d_cases(**special), lambda c: kit.assert_pool2d_matches(TORCH_POOL, c, convert=T))
    passes(
        kit.adaptive_pool2d_cases(**special), lambda c: kit.assert_adaptive_pool2d_matches(TORCH_ADAPTIVE, c, convert=T)
    )
    passes(kit.invalid_conv2d_cases(), lambda c: kit.assert_conv2d_rejects(F.conv2d, c, convert=T))


def test_torch_autograd_passes_backward():
    cases = kit.conv2d_cases(dtypes=(np.float64, np.float32), allow_nan=True, noncontiguous=True)
    passes(cases, lambda c: kit.assert_conv2d_backward_matches(torch_conv_backward, c, convert=T))


def test_torch_bfloat16_passes_with_the_rounding_of_its_inputs():
    """Converting float32 inputs to bfloat16 rounds each by at most u = 2**-8, so every product
    x·w by at most 2u + u²: rtol covers it only for sums without cancellation, so the allowance is
    atol = (2u + u²)·Σ|w||x| per element, the bound's own formula with the convert's rounding."""
    u = 2.0**-8

    def check(case):
        x, w, b = case.args
        magnitude = kit.reference_conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **case.kwargs)
        bf16 = lambda a: T(a).to(torch.bfloat16)  # noqa: E731
        atol = float((2 * u + u * u) * magnitude.max())
        kit.assert_conv2d_matches(F.conv2d, case, convert=bf16, atol=atol)

    passes(kit.conv2d_cases(dtypes=(np.float32,)), check)


def fft_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d by the FFT, in float64: pad, dilate the kernel, correlate at stride 1, subsample."""
    sy, sx = (stride, stride) if isinstance(stride, int) else tuple(stride) * (3 - len(stride))
    dy, dx = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation) * (3 - len(dilation))
    kh, kw = weight.shape[-2:]
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        pads = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for d, k in ((dy, kh), (dx, kw)))
    else:
        ph, pw = (padding, padding) if isinstance(padding, int) else tuple(padding) * (3 - len(padding))
        pads = ((ph, ph), (pw, pw))
    x = np.pad(input, [(0, 0)] * (input.ndim - 2) + list(pads))
    w = np.zeros((*weight.shape[:2], dy * (kh - 1) + 1, dx * (kw - 1) + 1))
    w[..., ::dy, ::dx] = weight
    H, W = x.shape[-2:]
    Lh, Lw = (2 ** math.ceil(math.log2(n)) for n in (H, W))  # radix-2 lengths, as the atol's analysis assumes
    X = np.fft.fft2(x, (Lh, Lw))  # (..., C, Lh, Lw)
    Wf = np.conj(np.fft.fft2(w, (Lh, Lw)))  # correlation = convolution with the conjugate spectrum
    C, O = input.shape[-3], weight.shape[0]
    Xg = X.reshape(*X.shape[:-3], groups, 1, C // groups, Lh, Lw)
    Wg = Wf.reshape(groups, O // groups, C // groups, Lh, Lw)
    full = np.fft.ifft2((Xg * Wg).sum(axis=-3)).real.reshape(*X.shape[:-3], O, Lh, Lw)
    out = full[..., : H - w.shape[-2] + 1 : sy, : W - w.shape[-1] + 1 : sx]
    if bias is not None:
        out = out + bias[:, None, None]
    return out.astype(input.dtype)


def fft_atol(case):
    """The FFT route's error, from Higham (2002, §24.1): a radix-2 FFT of length L has relative
    2-norm error at most eps_F = log2(L)·eta / (1 - log2(L)·eta), eta = u + gamma_4(√2 + u). Two
    transforms, one elementwise product and the channel sum in the frequency domain, and an
    inverse transform give, to first order, |error| <= (3·eps_F + gamma_{C+1}) · Σ_c ||x_c||_1 ||w_c||_1
    (the spectra are bounded by the 1-norms); doubled to cover the second-order terms (each < eps_F < 1/4)."""
    x, w, _ = case.args
    u = 2.0**-53
    pads = conv_pads(case.kwargs.get("padding", 0), w.shape[-2:], _ints(case.kwargs.get("dilation", 1)))
    L = np.prod([2 ** math.ceil(math.log2(n + p0 + p1)) for n, (p0, p1) in zip(x.shape[-2:], pads)])  # fft_conv2d's
    gamma = lambda n: n * u / (1 - n * u)  # noqa: E731
    eta = u + gamma(4) * (math.sqrt(2) + u)
    eps_f = math.log2(L) * eta / (1 - math.log2(L) * eta)
    norms = np.abs(x).sum(axis=(-2, -1)).max() * np.abs(w).sum(axis=(-2, -1)).sum(axis=-1).max()
    return float(2 * (3 * eps_f + gamma(x.shape[-3] + 1)) * norms)


def test_fft_conv_passes_with_its_stated_atol_and_fails_without():
    cases = kit.conv2d_cases(max_size=4, max_channels=2)
    passes(cases, lambda c: kit.assert_conv2d_matches(fft_conv2d, c, atol=fft_atol(c)))
    # far from the one nonzero input the exact output is 0, and so is the direct bound; the FFT leaves ~u·Σ|x||w|
    x = np.zeros((1, 1, 8, 8))
    x[0, 0, 0, 0] = 1.0
    case = kit.Case("conv2d", (x, np.random.default_rng(0).uniform(-1, 1, (1, 1, 3, 3)), None), {})
    with pytest.raises(AssertionError, match="atol 0 "):  # the direct algorithm's bound is sharper than the FFT's
        kit.assert_conv2d_matches(fft_conv2d, case)


def test_npresnet_passes():
    cases = dict(
        dtypes=(np.float64, np.float32), allow_nan=True, allow_infinity=True, noncontiguous=True, forms=NPRESNET_FORMS
    )
    passes(kit.conv2d_cases(**cases), lambda c: kit.assert_conv2d_matches(nf.conv2d, c))
    passes(
        kit.pool2d_cases(**cases), lambda c: kit.assert_pool2d_matches({"max": nf.max_pool2d, "avg": nf.avg_pool2d}, c)
    )
    # npresnet's adaptive_avg_pool2d pools by matrix products, so a NaN or inf spreads to every bin (0·NaN): finite only
    finite = dict(cases, allow_nan=False, allow_infinity=False)
    passes(
        kit.adaptive_pool2d_cases("avg", **finite),
        lambda c: kit.assert_adaptive_pool2d_matches(nf.adaptive_avg_pool2d, c),
    )
    passes(kit.invalid_conv2d_cases(forms=NPRESNET_FORMS), lambda c: kit.assert_conv2d_rejects(nf.conv2d, c))
    no_nan = dict(cases, allow_nan=False, allow_infinity=False)
    passes(kit.conv2d_cases(**no_nan), lambda c: kit.assert_conv2d_backward_matches(nf.conv2d_backward, c))


# ------------------------------------------------------------- planted bugs, each caught only by its keyword
def _ints(v):
    return (v, v) if isinstance(v, int) else tuple(v) * (3 - len(v))


def conv_int_stride_as_height_only(x, w, b=None, stride=1, **kw):
    """An int stride is applied to the height only (a common unpacking slip)."""
    return nf.conv2d(x, w, b, stride=(stride, 1) if isinstance(stride, int) else stride, **kw)


def conv_ignores_strides(x, w, b=None, **kw):
    """Reads the input's buffer as if it were C-contiguous (a raw-pointer kernel that ignores strides)."""
    c_strides = np.ascontiguousarray(x).strides
    return nf.conv2d(np.lib.stride_tricks.as_strided(x, x.shape, c_strides), w, b, **kw)


def conv_zeroes_nan(x, w, b=None, **kw):
    """Sanitises the input: NaN and inf become numbers, so they no longer propagate."""
    return nf.conv2d(np.nan_to_num(x), w, b, **kw)


def conv_returns_float64(x, w, b=None, **kw):
    cast = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
    return nf.conv2d(cast(x), cast(w), cast(b), **kw)


def pool_ignores_ceil_mode(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return nf.max_pool2d(x, kernel_size, stride, padding, dilation, False, return_indices)


def avg_ignores_count_include_pad(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    return nf.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, True, divisor_override)


def avg_ignores_divisor_override(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    return nf.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad)


def transpose_ignores_output_padding(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return F.conv_transpose2d(x, w, b, stride, padding, 0, groups, dilation)


def backward_flips_grad_weight(g, x, w, **kw):
    gi, gw, gb = nf.conv2d_backward(g, x, w, **kw)
    return gi, gw[..., ::-1, ::-1], gb


def conv_clamps_negative_padding(x, w, b=None, padding=0, **kw):
    """Accepts a negative padding (treats it as 0) instead of refusing it."""
    if not isinstance(padding, str):
        padding = tuple(max(0, p) for p in _ints(padding))
    return nf.conv2d(x, w, b, padding=padding, **kw)


conv = lambda fn, **kw: lambda c: kit.assert_conv2d_matches(fn, c, **kw)  # noqa: E731
pool = lambda fn: lambda c: kit.assert_pool2d_matches(fn, c)  # noqa: E731
# small bounds keep shrinking quick: every element is a choice hypothesis shrinks on its own
pinned = dict(forms=NPRESNET_FORMS, max_size=5, max_channels=2)

PLANTED = {
    # name: (strategy that misses the bug, strategy with the keyword that catches it, check)
    "int args": (
        kit.conv2d_cases(forms=("pair", "string"), max_size=5, max_channels=2),
        kit.conv2d_cases(forms=("int", "pair", "string"), max_size=5, max_channels=2),
        conv(conv_int_stride_as_height_only),
    ),
    "noncontiguous": (
        kit.conv2d_cases(**pinned),
        kit.conv2d_cases(noncontiguous=True, **pinned),
        conv(conv_ignores_strides),
    ),
    "NaN": (kit.conv2d_cases(**pinned), kit.conv2d_cases(allow_nan=True, **pinned), conv(conv_zeroes_nan)),
    "dtype": (
        kit.conv2d_cases(dtypes=(np.float64,), **pinned),
        kit.conv2d_cases(dtypes=(np.float32,), **pinned),
        conv(conv_returns_float64),
    ),
    "ceil_mode": (
        kit.pool2d_cases("max", ceil_mode=False, **pinned),
        kit.pool2d_cases("max", **pinned),
        pool(pool_ignores_ceil_mode),
    ),
    "count_include_pad": (
        # padding 1 around a 3×3 window and count_include_pad=False: every border window holds padding,
        # so every example with a non-zero border shows the bug, whatever examples the run draws
        kit.pool2d_cases("avg", count_include_pad=True, kernel_size=3, padding=1, **pinned),
        kit.pool2d_cases("avg", kernel_size=3, padding=1, count_include_pad=False, **pinned),
        pool(avg_ignores_count_include_pad),
    ),
    "divisor_override": (
        kit.pool2d_cases("avg", divisor_override=None, **pinned),
        kit.pool2d_cases("avg", **pinned),
        pool(avg_ignores_divisor_override),
    ),
    "output_padding": (
        kit.conv_transpose2d_cases(output_padding=0, max_size=5, max_channels=2),
        kit.conv_transpose2d_cases(max_size=5, max_channels=2),
        lambda c: kit.assert_conv_transpose2d_matches(transpose_ignores_output_padding, c, convert=T),
    ),
}


@pytest.mark.parametrize("name", PLANTED)
def test_planted_bug_is_caught_only_with_its_keyword(name):
    missing, catching, check = PLANTED[name]
    passes(missing, check)
    case, message = first_failure(catching, check)
    assert case is not None, f"the {name} bug went unnoticed"
    assert "case(" in message  # the failure shows the case; how far it shrinks: the two tests below


def test_dtype_bug_passes_without_check_dtype():
    passes(kit.conv2d_cases(dtypes=(np.float32,), **pinned), conv(conv_returns_float64, check_dtype=False))


def test_backward_bug_is_caught_and_torch_autograd_is_not():
    cases = kit.conv2d_cases(**pinned)
    case, message = first_failure(cases, lambda c: kit.assert_conv2d_backward_matches(backward_flips_grad_weight, c))
    assert case is not None and message.startswith("grad_weight differs")
    assert case.args[1].shape[-2:] != (1, 1)  # a 1x1 kernel cannot show a flip


def test_error_input_bug_is_caught():
    cases = kit.invalid_conv2d_cases(**pinned)
    case, message = first_failure(cases, lambda c: kit.assert_conv2d_rejects(conv_clamps_negative_padding, c))
    assert case is not None and case.reason == "negative padding" and "torch refuses" in message
    passes(cases, lambda c: kit.assert_conv2d_rejects(nf.conv2d, c))


def test_int_stride_counterexample_is_minimal():
    case, message = first_failure(kit.conv2d_cases(forms=NPRESNET_FORMS), conv(conv_int_stride_as_height_only))
    assert case.kwargs["stride"] == 2, message
    assert case.input.shape == (1, 1, 1, 2) and case.args[1].shape == (
        1,
        1,
        1,
        1,
    )  # the smallest a width stride shows in
    assert "stride=2" in message and "float64" in message


def test_nan_counterexample_shows_the_nan():
    case, message = first_failure(kit.conv2d_cases(allow_nan=True, **pinned), conv(conv_zeroes_nan))
    assert np.isnan(case.input).any() and "nan" in message and "\n" not in message
