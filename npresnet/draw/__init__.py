"""Pictures that teach: the windows of convolution, transposed convolution and pooling, and receptive fields.

The pictures are drawn from the same window geometry the layers use (see ``windows``),
and a configuration the layer refuses is refused with the layer's own message.

>>> from npresnet import draw
>>> w = draw.conv2d(5, kernel_size=3, stride=2, padding=1)
>>> w.output_size
(3, 3)
>>> [(t.y, t.x) for t in w.taps(0, 0) if t.where == "input"]
[(0, 0), (0, 1), (1, 0), (1, 1)]
>>> draw.svg(w).startswith("<svg")
True

Modules, one job each:

* ``windows`` — :class:`Windows`, the integer geometry of one configuration;
* ``svg`` — the static picture as SVG text;
* ``frames`` — the animation's frames (Pillow) and :func:`save`;
* ``receptive_field`` — theoretical and effective receptive fields of a ResNet unit;
* ``overlay`` — the receptive fields drawn over an image (matplotlib, the ``viz`` extra).

``frames``/``save`` of an animation need Pillow and the overlay matplotlib; the SVG needs nothing.
"""

from .frames import frames, save
from .svg import svg
from .windows import MAX_DRAW_CHANNELS, MAX_DRAW_SIZE, Tap, Windows, avg_pool2d, conv2d, conv_transpose2d, max_pool2d

__all__ = [
    "Windows",
    "Tap",
    "conv2d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "svg",
    "frames",
    "save",
    "MAX_DRAW_SIZE",
    "MAX_DRAW_CHANNELS",
]
