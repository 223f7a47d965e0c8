"""
Verifying your own convolution with npresnet.testing
====================================================

You wrote a convolution — an im2col one, an FFT one, a CUDA kernel — and want to know it is
right for every stride, padding, dilation and group count, not just the three you tried.
:mod:`npresnet.testing` gives hypothesis strategies that draw whole cases in every form
``torch.nn.functional.conv2d`` accepts, naive float64 loops as the oracle, and assertions that
allow exactly the proved rounding error of a direct convolution (plus any ``atol``/``rtol`` you
state). Here we check a small NumPy convolution, then one with a classic bug, and watch
hypothesis find the bug and shrink it to a tiny case.
"""

# %%
# A convolution to check
# ----------------------
# im2col by kernel-offset slicing, then one matrix product per group. It takes torch's
# signature: ``stride``, ``padding`` and ``dilation`` as an int or a pair, ``padding`` also
# ``'valid'`` or ``'same'``, and an unbatched ``(C, H, W)`` input as well as ``(N, C, H, W)``
# (the strategy draws both, as torch accepts both).
import numpy as np


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def my_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if input.ndim == 3:  # unbatched
        return my_conv2d(input[None], weight, bias, stride, padding, dilation, groups)[0]
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    (sy, sx), (dy, dx) = pair(stride), pair(dilation)
    if padding == "valid":
        padding = 0
    if padding == "same":  # stride 1 only, as in torch: the extra cell goes after
        total = (dy * (kh - 1), dx * (kw - 1))
        pads = [(t // 2, t - t // 2) for t in total]
    else:
        pads = [(p, p) for p in pair(padding)]
    x = np.pad(input, ((0, 0), (0, 0), pads[0], pads[1]))
    oh = (x.shape[2] - dy * (kh - 1) - 1) // sy + 1
    ow = (x.shape[3] - dx * (kw - 1) - 1) // sx + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=input.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[
                :, :, i * dy : i * dy + sy * (oh - 1) + 1 : sy, j * dx : j * dx + sx * (ow - 1) + 1 : sx
            ]
    cols = cols.reshape(n, groups, cg * kh * kw, oh * ow)
    wg = weight.reshape(groups, o // groups, cg * kh * kw)
    out = np.einsum("gok,ngkl->ngol", wg, cols).reshape(n, o, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return out


# %%
# The property test
# -----------------
# :func:`npresnet.testing.conv2d_cases` draws a case (hyper-parameters, then arrays that fit);
# :func:`npresnet.testing.assert_conv2d_matches` calls the function on it and compares with the
# float64 loops. ``forms`` picks which spellings of the hyper-parameters to draw. In a test
# file this is a ``test_…`` function that pytest runs; here we call it directly.
from hypothesis import given, settings

from npresnet.testing import assert_conv2d_matches, conv2d_cases


@settings(max_examples=60, deadline=None, database=None)
@given(conv2d_cases(dtypes=(np.float64, np.float32), forms=("int", "pair", "string")))
def test_my_conv2d(case):
    assert_conv2d_matches(my_conv2d, case)


test_my_conv2d()
print("my_conv2d passed 60 drawn cases")


# %%
# A classic bug, caught and shrunk
# --------------------------------
# Here the window's start ignores the dilation: ``i`` instead of ``i * dy``. Every
# undilated case still passes, so three hand-picked tests could easily miss it.
def buggy_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if input.ndim == 3:
        return buggy_conv2d(input[None], weight, bias, stride, padding, dilation, groups)[0]
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    (sy, sx), (dy, dx) = pair(stride), pair(dilation)
    pads = [(0, 0), (0, 0)] if padding == "valid" else [(p, p) for p in pair(0 if padding == "same" else padding)]
    x = np.pad(input, ((0, 0), (0, 0), pads[0], pads[1]))
    oh = (x.shape[2] - dy * (kh - 1) - 1) // sy + 1
    ow = (x.shape[3] - dx * (kw - 1) - 1) // sx + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=input.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i : i + sy * (oh - 1) + 1 : sy, j : j + sx * (ow - 1) + 1 : sx]  # the bug
    cols = cols.reshape(n, groups, cg * kh * kw, oh * ow)
    out = np.einsum("gok,ngkl->ngol", weight.reshape(groups, o // groups, -1), cols).reshape(n, o, oh, ow)
    return out if bias is None else out + bias.reshape(1, o, 1, 1)


@settings(max_examples=100, deadline=None, database=None)
@given(conv2d_cases(forms=("int", "pair"), padding=0))
def test_buggy_conv2d(case):
    assert_conv2d_matches(buggy_conv2d, case)


try:
    test_buggy_conv2d()
except AssertionError as err:
    message = str(err)
    print(message[:1500])
else:
    raise RuntimeError("the bug was not found")

# %%
# The message names the first element that is off, the bound it broke, and the shrunk case: a
# dilation above 1 and a kernel of at least 2 taps on that axis, with small arrays. The worked
# examples of the kit (torch, JAX, CuPy kernels, an FFT convolution with its ``atol``, the
# backward, invalid inputs) are on the page :doc:`/testing`.
