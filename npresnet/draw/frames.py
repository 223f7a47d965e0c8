"""A layer's windows as an animation: one frame per output position, drawn with Pillow.

Each frame shows the drawn input (input cells, padding, ceil-mode overhang) with the
current window's taps filled, and beside it the output grid with the current position
filled (for ``conv_transpose2d``, input and output swapped: one frame per input cell, the
output cells it writes filled in the output with its padding, and the input grid beside),
in the colours of :data:`npresnet.draw.svg.COLOURS`. Frames are palette images
(mode ``"P"``) with a fixed palette, so a GIF stores the colours exactly and the same
configuration always gives the same bytes. Pillow is the ``tools`` (or ``viz``) extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._atomic import atomic_write
from .svg import COLOURS, svg
from .windows import Windows

if TYPE_CHECKING:
    from types import ModuleType

    from PIL.Image import Image

    from .._typing import PathLike

__all__ = ["frames", "save", "PALETTE", "FRAME_CELL"]

FRAME_CELL = 24
"""Pixels per cell in a frame."""

_MARGIN = 12  # px around the grids and between them
_KEYS = (
    "background",
    "grid",
    "input",
    "padding",
    "overhang",
    "tap-input",
    "tap-padding",
    "tap-overhang",
    "output",
    "current",
)
PALETTE = {key: index for index, key in enumerate(_KEYS)}
"""Palette index of each colour in a frame (``frame.getpixel((x, y))`` gives the index)."""


def _rgb(key: str) -> tuple[int, ...]:
    hex_ = "#f7f7f7" if key == "background" else COLOURS[key]
    return tuple(int(hex_[k : k + 2], 16) for k in (1, 3, 5))


def _pil() -> tuple[ModuleType, ModuleType]:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError("drawing frames needs Pillow: pip install 'npresnet[viz]'") from None
    return Image, ImageDraw


def cell_box(windows: Windows, y: int, x: int) -> tuple[int, int, int, int]:
    """Pixel box ``(left, top, right, bottom)`` (inclusive) of grid cell ``(y, x)`` in a frame.

    The grid is the input, or for ``conv_transpose2d`` the output.
    """
    (r0, _), (c0, _) = windows.extent()
    left, top = _MARGIN + (x - c0) * FRAME_CELL, _MARGIN + (y - r0) * FRAME_CELL
    return left, top, left + FRAME_CELL - 1, top + FRAME_CELL - 1


def output_box(windows: Windows, oy: int, ox: int) -> tuple[int, int, int, int]:
    """Pixel box of position ``(oy, ox)`` in a frame: an output cell (conv_transpose2d: an input cell)."""
    (_, _), (c0, c1) = windows.extent()
    left = 2 * _MARGIN + (c1 - c0) * FRAME_CELL + ox * FRAME_CELL
    top = _MARGIN + oy * FRAME_CELL
    return left, top, left + FRAME_CELL - 1, top + FRAME_CELL - 1


def frames(windows: Windows) -> list[Image]:
    """One ``PIL.Image`` (mode ``"P"``, ``PALETTE``) per position, in row-major order.

    Parameters
    ----------
    windows : Windows

    Returns
    -------
    list of PIL.Image.Image
        ``out_h * out_w`` frames (conv_transpose2d: ``H * W``) of the same size.
    """
    if not isinstance(windows, Windows):
        raise TypeError(f"windows must be a npresnet.draw.Windows, got {type(windows).__name__}")
    Image, ImageDraw = _pil()
    (r0, r1), (c0, c1) = windows.extent()
    out_h, out_w = windows.position_size
    width = 3 * _MARGIN + (c1 - c0 + out_w) * FRAME_CELL
    height = 2 * _MARGIN + max(r1 - r0, out_h) * FRAME_CELL
    palette = [v for key in _KEYS for v in _rgb(key)]

    base = Image.new("P", (width, height), PALETTE["background"])
    base.putpalette(palette)
    pen = ImageDraw.Draw(base)
    for y in range(r0, r1):
        for x in range(c0, c1):
            pen.rectangle(cell_box(windows, y, x), fill=PALETTE[windows.cell_kind(y, x)], outline=PALETTE["grid"])
    for oy in range(out_h):
        for ox in range(out_w):
            pen.rectangle(output_box(windows, oy, ox), fill=PALETTE["output"], outline=PALETTE["grid"])

    out = []
    for oy, ox in windows.positions():
        frame = base.copy()
        pen = ImageDraw.Draw(frame)
        for t in windows.taps(oy, ox):
            left, top, right, bottom = cell_box(windows, t.y, t.x)
            key = "tap-input" if t.where == "output" else f"tap-{t.where}"  # conv_transpose2d's write: the same blue
            pen.rectangle((left + 4, top + 4, right - 4, bottom - 4), fill=PALETTE[key])
        left, top, right, bottom = output_box(windows, oy, ox)
        pen.rectangle((left + 1, top + 1, right - 1, bottom - 1), fill=PALETTE["current"])
        out.append(frame)
    return out


def save(windows: Windows, path: PathLike, duration_ms: int = 700) -> None:
    """Write ``windows`` to ``path``, atomically: ``.svg`` (text), ``.gif`` or ``.png`` (an animated APNG).

    Parameters
    ----------
    windows : Windows
    path : str or os.PathLike
        Its suffix chooses the format.
    duration_ms : int
        Time per frame of an animation, 20 to 10000 ms.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".svg", ".gif", ".png"):
        raise ValueError(f"the picture's file name must end in .svg, .gif or .png, got {os.fspath(path)!r}")
    if not isinstance(duration_ms, int) or isinstance(duration_ms, bool) or not 20 <= duration_ms <= 10_000:
        raise ValueError(f"duration_ms must be an int from 20 to 10000, got {duration_ms!r}")
    if suffix == ".svg":
        data = svg(windows).encode("utf-8")
        with atomic_write(path) as f:
            f.write(data)
        return
    images = frames(windows)
    fmt = "GIF" if suffix == ".gif" else "PNG"
    with atomic_write(path) as f:
        images[0].save(f, format=fmt, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
