"""
A convolution by hand: the formula, im2col, the pictures
=========================================================

A 2-D convolution slides a ``kh × kw`` window over the (padded) input and takes a dot product
at each position. This tutorial computes one three ways — a loop written from the definition,
im2col followed by one matrix product, and :func:`npresnet.functional.conv2d` — and draws its
windows with :mod:`npresnet.draw`, from the same geometry the layer uses.
"""

# %%
# The output size
# ---------------
# Along one axis, an input of size ``n`` with padding ``p``, a kernel ``k`` dilated by ``d``
# (its window spans ``d·(k − 1) + 1`` cells) and stride ``s`` gives
#
# .. math:: n_{out} = \left\lfloor \frac{n + 2p - d(k - 1) - 1}{s} \right\rfloor + 1
#
# :func:`npresnet.conv_output_size <npresnet.shapes.conv_output_size>` is the one home of that formula;
# every layer and the summary use it. ResNet's stem (7×7, stride 2, padding 3) halves 224, and so does its
# max pool:
import numpy as np

import npresnet
import npresnet.functional as F

print(npresnet.conv_output_size(224, 7, stride=2, padding=3))  # the stem: 112
print(npresnet.conv_output_size(112, 3, stride=2, padding=1))  # the max pool: 56
print(npresnet.conv_output_size(5, 3, stride=2, padding=1))  # the small example below: 3

# %%
# The definition, as a loop
# -------------------------
# Output ``(o, i, j)`` of one image is ``Σ_c Σ_ky Σ_kx w[o, c, ky, kx] · x[c, i·s − p + ky·d, j·s − p + kx·d]``,
# where a position outside the input reads zero (the padding). Written out in float64:

rng = np.random.default_rng(0)
x = rng.standard_normal((1, 2, 5, 5))  # (N, C_in, H, W)
w = rng.standard_normal((3, 2, 3, 3))  # (C_out, C_in, kh, kw)
stride, padding = 2, 1


def conv2d_loop(x, w, stride, padding):
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    oh = npresnet.conv_output_size(h, kh, stride=stride, padding=padding)
    ow = npresnet.conv_output_size(wd, kw, stride=stride, padding=padding)
    out = np.zeros((n, c_out, oh, ow))
    for b in range(n):
        for o in range(c_out):
            for i in range(oh):
                for j in range(ow):
                    for c in range(c_in):
                        for ky in range(kh):
                            for kx in range(kw):
                                y, xx = i * stride - padding + ky, j * stride - padding + kx
                                if 0 <= y < h and 0 <= xx < wd:
                                    out[b, o, i, j] += w[o, c, ky, kx] * x[b, c, y, xx]
    return out


by_loop = conv2d_loop(x, w, stride, padding)
print(by_loop.shape)  # (1, 3, 3, 3)

# %%
# im2col: every window as a column
# --------------------------------
# :func:`npresnet.functional.im2col` copies each window into a column: for one image, a matrix of
# ``C_in·kh·kw`` rows and ``out_h·out_w`` columns (torch's ``unfold`` layout). The convolution is
# then one matrix product with the weights flattened to ``(C_out, C_in·kh·kw)``.

cols = F.im2col(x, 3, padding=padding, stride=stride)  # (N, C_in·kh·kw, out_h·out_w)
print(cols.shape)  # (1, 18, 9)
by_im2col = (w.reshape(3, -1) @ cols).reshape(1, 3, 3, 3)  # (N, C_out, out_h, out_w)
by_layer = F.conv2d(x, w, stride=stride, padding=padding)

# %%
# The three agree to float64 rounding. Each output is a sum of ``K = 18`` products, so each way of
# computing it is within ``γ_K · Σ|w·x|`` of the exact value, with ``γ_K = K·u / (1 − K·u)`` and
# the unit roundoff ``u = 2⁻⁵³`` (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1);
# two of them differ by at most twice that.
u = np.finfo(np.float64).eps / 2
gamma = 18 * u / (1 - 18 * u)
magnitude = conv2d_loop(np.abs(x), np.abs(w), stride, padding)  # Σ|w·x| for each output
bound = 2 * gamma * magnitude
print(np.all(np.abs(by_im2col - by_loop) <= bound), np.all(np.abs(by_layer - by_loop) <= bound))
assert np.all(np.abs(by_im2col - by_loop) <= bound) and np.all(np.abs(by_layer - by_loop) <= bound)  # fails the build

# %%
# Column 0 holds the top-left window. With padding 1 and stride 2 it starts one cell above and
# one to the left of the image, so five of its nine taps per channel read the padding (zeros):
print(cols[0, :9, 0].reshape(3, 3).round(2))  # channel 0's taps of output (0, 0)

# %%
# The windows, drawn
# ------------------
# :func:`npresnet.draw.conv2d` computes the same windows as a geometry object; its taps are the
# input positions im2col reads (a test proves it over hypothesis-drawn configurations).
from npresnet import draw

windows = draw.conv2d(5, kernel_size=3, stride=2, padding=1)
print(windows.output_size, [(t.y, t.x, t.where) for t in windows.taps(0, 0)])


# %%
# :func:`npresnet.draw.svg` draws every window of the layer (the padded border, each output's
# cells, the output grid) as SVG text, which the page shows as it is:
class SVG:
    """Shows SVG text in the rendered page (a notebook would use ``IPython.display.SVG``)."""

    def __init__(self, text):
        self.text = text

    def _repr_html_(self):
        return self.text


SVG(draw.svg(windows))

# %%
# The animation's frames (:func:`npresnet.draw.frames`, Pillow images; :func:`npresnet.draw.save`
# writes a GIF or APNG) step through the output positions. Here are the first four, for a
# dilated kernel (dilation 2 spreads a 3×3 kernel over 5×5 cells):
import matplotlib.pyplot as plt

dilated = draw.conv2d(7, kernel_size=3, dilation=2)
pictures = draw.frames(dilated)
fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
for ax, picture, (oy, ox) in zip(axes, pictures, dilated.positions()):
    ax.imshow(np.asarray(picture))
    ax.set_title(f"output ({oy}, {ox})")
    ax.axis("off")
fig.suptitle(dilated.title())
fig.tight_layout()
