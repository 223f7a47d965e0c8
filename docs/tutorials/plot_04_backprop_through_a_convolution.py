"""
Backpropagation through a convolution: col2im is im2col's adjoint
=================================================================

npresnet has no autograd engine: every layer's backward is written out next to its forward.
For a convolution, the forward is ``out = W @ im2col(x)`` per image and group, so the gradients
are two matrix products and one *col2im*, the adjoint of im2col. This tutorial checks both
facts numerically, with dot-product tests whose tolerances come from the rounding-error bound
of the sums involved (float64, so the bounds are tiny).
"""

# %%
# col2im adds each window entry back to the pixel it came from
# ------------------------------------------------------------
# im2col copies each input pixel into every window that reads it; its adjoint
# (:func:`npresnet.functional.col2im`, torch's ``fold``) adds the columns' entries back to their
# pixels. Applied to a matrix of ones, it counts how many windows read each pixel:
import numpy as np

import npresnet.functional as F

kernel, stride, padding = 3, 2, 1
x = np.zeros((1, 1, 7, 7))
ones = np.ones_like(F.im2col(x, kernel, padding=padding, stride=stride))  # (1, 9, 16)
print(F.col2im(ones, (7, 7), kernel, padding=padding, stride=stride)[0, 0].astype(int))

# %%
# The adjoint identity
# --------------------
# For every ``x`` and every ``y`` shaped like im2col's output,
# ``⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩``. Both sides sum the same products ``x[p] · y[q]`` (one per
# pair of a pixel and a window entry that reads it), in different orders. A sum of ``n`` terms
# computed in floating point is within ``γ_n · Σ|terms|`` of the exact sum, with
# ``γ_n = n·u / (1 − n·u)`` and ``u = 2⁻⁵³``, so the two sides may differ by at most
# ``(γ_a + γ_b) · Σ|x[p] · y[q]|``, where ``a`` and ``b`` are the longest chains of additions on
# each side.
rng = np.random.default_rng(0)
u = np.finfo(np.float64).eps / 2


def gamma(n):
    return n * u / (1 - n * u)


N, C, H, W = 2, 3, 9, 8
kernel, stride, padding, dilation = (3, 2), (2, 1), (1, 0), (1, 2)
x = rng.standard_normal((N, C, H, W))
cols = F.im2col(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (N, C·kh·kw, L)
y = rng.standard_normal(cols.shape)
left = np.sum(cols * y)
right = np.sum(x * F.col2im(y, (H, W), kernel, dilation=dilation, padding=padding, stride=stride))
magnitude = np.sum(np.abs(cols) * np.abs(y))  # Σ|x[p]·y[q]| (padding entries of cols are 0)
taps = kernel[0] * kernel[1]
bound = (gamma(cols.size) + gamma(x.size + taps)) * magnitude
print(f"<im2col(x), y> = {left:.15f}")
print(f"<x, col2im(y)> = {right:.15f}")
print(f"difference {abs(left - right):.1e}, bound {bound:.1e}:", abs(left - right) <= bound)
assert abs(left - right) <= bound  # a wrong adjoint fails the documentation build

# %%
# conv2d_backward, checked the same way
# -------------------------------------
# With ``g`` the gradient of the loss with respect to the output,
# :func:`npresnet.functional.conv2d_backward` returns
#
# - the input gradient ``col2im(Wᵀ @ g)``,
# - the weight gradient ``g @ im2col(x)ᵀ``, summed over images,
# - the bias gradient ``g`` summed over images and pixels.
#
# The convolution is linear in ``x`` and in ``W`` separately, so a gradient is right exactly when
# ``⟨conv2d(v, W), g⟩ = ⟨v, grad_input⟩`` for every ``v`` and
# ``⟨conv2d(x, V), g⟩ = ⟨V, grad_weight⟩`` for every ``V``: the directional derivative along
# ``v`` (or ``V``) equals the gradient's dot product with it, with no finite-difference step
# to choose, because the function is linear.
O, groups = 4, 1
w = rng.standard_normal((O, C, *kernel))
conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
out = F.conv2d(x, w, **conv)  # (N, O, out_h, out_w)
g = rng.standard_normal(out.shape)
grad_input, grad_weight, grad_bias = F.conv2d_backward(g, x, w, **conv)
print(grad_input.shape, grad_weight.shape, grad_bias.shape)

v = rng.standard_normal(x.shape)  # a direction in input space
V = rng.standard_normal(w.shape)  # a direction in weight space
K = C * taps  # products in one output element
pixels = N * out.shape[2] * out.shape[3]
checks = {
    "input": (np.sum(F.conv2d(v, w, **conv) * g), np.sum(v * grad_input), F.conv2d(abs(v), abs(w), **conv)),
    "weight": (np.sum(F.conv2d(x, V, **conv) * g), np.sum(V * grad_weight), F.conv2d(abs(x), abs(V), **conv)),
}
for name, (directional, dot, magnitudes) in checks.items():
    # each side sums the same products w·v·g (or V·x·g): at most K + N·O·out_h·out_w additions on
    # the left, and O·kh·kw + kh·kw + N·C·H·W (or N·out_h·out_w + the weight's size) on the right
    n_left = K + out.size
    n_right = O * taps + taps + x.size if name == "input" else pixels + w.size
    bound = (gamma(n_left) + gamma(n_right)) * np.sum(magnitudes * abs(g))
    print(
        f"{name:>6}: directional {directional:+.12f}, gradient·direction {dot:+.12f}, within bound: "
        f"{abs(directional - dot) <= bound} ({abs(directional - dot):.1e} <= {bound:.1e})"
    )
    assert abs(directional - dot) <= bound, name

# %%
# The bias gradient is the output gradient summed over images and pixels; the bias enters each
# output of its channel once:
bias_bound = 2 * gamma(pixels) * np.abs(g).sum(axis=(0, 2, 3))  # two sums of the same N·out_h·out_w terms
print(np.all(np.abs(grad_bias - g.sum(axis=(0, 2, 3))) <= bias_bound))
assert np.all(np.abs(grad_bias - g.sum(axis=(0, 2, 3))) <= bias_bound)

# %%
# Where each gradient goes
# ------------------------
# The input gradient of one output element, seen through col2im: a gradient of 1 at output
# ``(0, 0)`` of a 3×3, stride-2, padding-1 convolution with all-ones weights lands on the
# four input pixels its window reads inside the image (the other five taps read the padding,
# and col2im crops them).
x1 = np.zeros((1, 1, 5, 5))
w1 = np.ones((1, 1, 3, 3))
g1 = np.zeros((1, 1, 3, 3))
g1[0, 0, 0, 0] = 1.0
print(F.conv2d_backward(g1, x1, w1, stride=2, padding=1)[0][0, 0].astype(int))
