"""conv_output_size and pair: the one home of the output-size formula.

The formula is checked against facts that do not use it: the characterising inequality
of the window positions, a walk over the window starts, and PyTorch's layers.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, example, given
from hypothesis import strategies as st

from npresnet.shapes import conv_output_size, pair

sizes = st.integers(0, 40)
kernels = st.integers(1, 7)
strides = st.integers(1, 6)
paddings = st.integers(0, 6)
dilations = st.integers(1, 4)


def _fits(n, k, p, d):
    return d * (k - 1) + 1 <= n + 2 * p


@given(n=sizes, k=kernels, s=strides, p=paddings, d=dilations)
@example(n=7, k=3, s=2, p=0, d=1)  # stride does not divide the span (4): floor drops nothing, 3 windows
@example(n=8, k=3, s=2, p=0, d=1)  # span 5, odd: the last row is never covered
@example(n=3, k=3, s=1, p=0, d=1)  # window just fits: one position
@example(n=1, k=3, s=1, p=1, d=1)  # window just fits thanks to padding
@example(n=5, k=3, s=1, p=0, d=2)  # dilated window (5) just fits
@example(n=224, k=7, s=2, p=3, d=1)  # the ResNet stem: 112
def test_floor_mode_characterising_inequality(n, k, s, p, d):
    """out windows fit and one more would not: (out-1)*s + dk <= n+2p < out*s + dk, dk = d(k-1)+1."""
    dk = d * (k - 1) + 1
    if not _fits(n, k, p, d):
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv_output_size(n, k, s, p, d)
        return
    out = conv_output_size(n, k, s, p, d)
    assert out >= 1
    assert (out - 1) * s + dk <= n + 2 * p < out * s + dk


def _ceil_mode_windows(n, k, s, p, d):
    """Count ceil-mode windows by walking them (PyTorch's rule, stated as positions):
    keep adding windows while the previous one has not reached the end of the padded input,
    but never one that starts in the right padding."""
    dk = d * (k - 1) + 1
    starts = [0]  # padded coordinates
    while starts[-1] + dk < n + 2 * p:  # previous window stops short of the end
        nxt = starts[-1] + s
        if nxt >= n + p:  # would start in the right padding
            break
        starts.append(nxt)
    return len(starts)


@given(n=sizes, k=kernels, s=strides, p=st.integers(0, 3), d=dilations)
@example(n=5, k=2, s=2, p=0, d=1)  # span 3, stride 2: ceil adds a partial window (3 vs floor's 2)
@example(n=4, k=2, s=2, p=0, d=1)  # stride divides the span 2: ceil == floor == 2
@example(n=5, k=2, s=3, p=1, d=1)  # ceil would give 3, but window 3 starts in the right padding: dropped
@example(n=3, k=3, s=2, p=0, d=1)  # window just fits: ceil == floor == 1
def test_ceil_mode_matches_walking_the_windows(n, k, s, p, d):
    """In the pooling domain (padding <= kernel//2) ceil mode equals the window walk."""
    assume(p <= k // 2 and _fits(n, k, p, d))
    out = conv_output_size(n, k, s, p, d, ceil_mode=True)
    assert out == _ceil_mode_windows(n, k, s, p, d)
    floor = conv_output_size(n, k, s, p, d)
    assert floor <= out <= floor + 1
    assert (out - 1) * s < n + p  # the last window starts inside the input or its left padding


def test_ceil_mode_drops_window_in_right_padding():
    """n=5, k=2, s=3, p=1: rounding up gives ceil((5+2-2)/3)+1 = 3 windows, but the third
    would start at padded position 6 = n + p, in the right padding, so PyTorch drops it."""
    assert conv_output_size(5, 2, 3, 1, ceil_mode=True) == 2
    assert F.max_pool2d(torch.zeros(1, 1, 5, 5), 2, 3, 1, ceil_mode=True).shape[-2:] == (2, 2)
    assert conv_output_size(5, 2, 2, 0, ceil_mode=True) == 3  # and a partial window that is kept
    assert F.max_pool2d(torch.zeros(1, 1, 5, 5), 2, 2, 0, ceil_mode=True).shape[-2:] == (3, 3)


@given(n=st.integers(1, 30), k=kernels, s=strides, d=dilations, ceil=st.booleans(), data=st.data())
@example(n=2, k=3, s=3, d=1, ceil=True, data=None)  # ceil mode: one window overhanging the whole input
@example(n=2, k=3, s=1, d=1, ceil=True, data=None)  # ... but not when the stride leaves no room: error
def test_equals_torch_pooling_output_size(n, k, s, d, ceil, data):
    """Equal to torch's pooling output size, and an error exactly where torch raises one
    (in ceil mode torch accepts a single window that overhangs the padded input)."""
    p = data.draw(st.integers(0, k // 2), label="p") if data is not None else 0
    try:
        want = F.max_pool2d(torch.zeros(1, 1, n, 1), (k, 1), (s, 1), (p, 0), (d, 1), ceil_mode=ceil).shape[2]
    except RuntimeError:
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv_output_size(n, k, s, p, d, ceil_mode=ceil)
        return
    assert conv_output_size(n, k, s, p, d, ceil_mode=ceil) == want


@given(n=st.integers(1, 30), k=kernels, s=strides, p=paddings, d=dilations)
def test_equals_torch_conv_output_size(n, k, s, p, d):
    """The same length as torch's conv2d, and refused exactly where torch refuses (no window fits)."""
    conv = lambda: F.conv2d(
        torch.zeros(1, 1, n, 1), torch.zeros(1, 1, k, 1), stride=(s, 1), padding=(p, 0), dilation=(d, 1)
    )
    if not _fits(n, k, p, d):
        with pytest.raises(RuntimeError):
            conv()
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv_output_size(n, k, s, p, d)
        return
    assert conv_output_size(n, k, s, p, d) == conv().shape[2]


@pytest.mark.parametrize(
    "arg, kwargs",
    [
        ("kernel_size", dict(kernel_size=0)),
        ("stride", dict(stride=0)),
        ("padding", dict(padding=-1)),
        ("dilation", dict(dilation=0)),
        ("size", dict(size=-1)),
    ],
)
def test_out_of_range_arguments_named(arg, kwargs):
    call = dict(size=5, kernel_size=3) | kwargs
    with pytest.raises(ValueError, match=rf"{arg} must be >= \d+, got -?\d+"):
        conv_output_size(**call)


@pytest.mark.parametrize("bad", [2.0, True, "3", None])
def test_non_int_arguments_rejected(bad):
    with pytest.raises(TypeError, match="stride must be an int"):
        conv_output_size(5, 3, stride=bad)


def test_window_too_large_names_sizes():
    with pytest.raises(
        ValueError,
        match=r"window of size 5 .*kernel_size=3, dilation=2.* padded input of size 4 "
        r"\(size=2, padding=1\)",
    ):
        conv_output_size(2, 3, padding=1, dilation=2)


@given(st.integers(0, 100))
def test_pair_of_int(v):
    assert pair(v, "x") == (v, v)


@given(st.tuples(st.integers(), st.integers()), st.sampled_from([tuple, list]))
def test_pair_of_pair(v, kind):
    out = pair(kind(v), "x")
    assert out == v and type(out[0]) is int


@pytest.mark.parametrize("kind", [tuple, list])
def test_a_single_value_stands_for_both_axes_as_in_torch(kind):
    """torch's conv and pooling functions expand ``stride=(2,)`` to ``(2, 2)``; so does pair."""
    torch = pytest.importorskip("torch")
    x, w = torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3)
    assert torch.nn.functional.conv2d(x, w, stride=kind([2])).shape[-2:] == (3, 3)
    assert pair(kind([2]), "stride") == (2, 2)


@pytest.mark.parametrize("bad", [(1, 2, 3), (), 1.5, True, (1, True), "ab", None, (1.0, 2), (True,)])
def test_pair_rejects_with_name(bad):
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints, got"):
        pair(bad, "kernel_size")
