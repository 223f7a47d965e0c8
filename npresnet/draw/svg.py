"""A layer's windows as one static SVG: plain text, the same bytes for the same configuration.

Layout, top to bottom: the title; the output grid, each cell a link to its window's panel;
one panel per output position (in the output's row-major order), each showing the drawn input
(the input cells, the padded border, a ceil-mode overhang) with the window's taps filled, and
the output grid with that position filled; for a convolution, the channel view (which input
channels feed each output channel: ``C_in/groups`` blocks of ``kh×kw`` taps); a legend.

The elements carry what they show as data attributes, so a program can read the picture back:
a panel is ``<g class="window" id="w-oy-ox" data-output="oy,ox">``, each tap in it a
``<rect class="tap WHERE" data-cell="y,x" data-tap="i,j">`` (``WHERE``: input, padding or
overhang), and each channel connection a ``<rect class="feeds" data-channels="o,c">``.

``conv_transpose2d`` is drawn as the convolution with input and output swapped: the small grid
is the input, one panel per input cell ``<g class="window" id="w-iy-ix" data-input="iy,ix">``,
and the large grid is the output with its padding border, in which each tap
``<rect class="tap WHERE" data-cell="y,x" data-tap="i,j">`` marks a cell the input writes
(``WHERE``: output, or padding when the write is cropped).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from .windows import Windows

__all__ = ["svg", "COLOURS"]

COLOURS = {
    "input": "#ffffff",  # an input cell
    "padding": "#e0e0e0",  # a padding cell
    "overhang": "#fbe3e3",  # beyond the padding (ceil mode): read by no layer, ignored by pooling
    "tap-input": "#3b7dd8",  # a tap reading the input
    "tap-output": "#3b7dd8",  # conv_transpose2d: a tap writing the output (a tap reading the input, swapped)
    "tap-padding": "#f29e38",  # a tap reading the padding (0 for conv and avg, −∞ for max)
    "tap-overhang": "#d64545",  # a tap in the overhang: skipped
    "output": "#ffffff",
    "current": "#2f9e55",  # the output position being computed
    "grid": "#7a7a7a",
    "text": "#222222",
}

_CELL = 16  # px per cell
_GAP = 12  # px between grids and panels
_TEXT = 14  # px per line of text
_MAX_WIDTH = 1200  # px: wider pictures are scaled down by their width attribute (the viewBox keeps every cell)


def _rect(x: int, y: int, w: int, h: int, fill: str, extra: str = "", stroke: str | None = None) -> str:
    stroke = COLOURS["grid"] if stroke is None else stroke
    return f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}" stroke="{stroke}"{extra}/>'


def _text(x: int, y: int, text: str, extra: str = "") -> str:
    return f'<text x="{x}" y="{y}"{extra}>{escape(text)}</text>'


def _input_grid(windows: Windows, x0: int, y0: int) -> list[str]:
    """Return the drawn grid at ``(x0, y0)``: input (conv_transpose2d: output) cells, padding, overhang."""
    H, W = windows.grid_size
    (r0, r1), (c0, c1) = windows.extent()
    out = []
    for y in range(r0, r1):
        for x in range(c0, c1):
            kind = windows.cell_kind(y, x)
            dash = "" if kind in ("input", "output") else ' stroke-dasharray="2,2"'
            out.append(_rect(x0 + (x - c0) * _CELL, y0 + (y - r0) * _CELL, _CELL, _CELL, COLOURS[kind], dash))
    # the input's own border, over the cells
    out.append(
        _rect(x0 + (0 - c0) * _CELL, y0 + (0 - r0) * _CELL, W * _CELL, H * _CELL, "none", ' stroke-width="2"', "#000")
    )
    return out


def _output_grid(
    windows: Windows, x0: int, y0: int, current: tuple[int, int] | None = None, links: bool = False
) -> list[str]:
    """Return the grid of positions: the output (conv_transpose2d: the input), ``current`` filled."""
    out_h, out_w = windows.position_size
    out = []
    for oy in range(out_h):
        for ox in range(out_w):
            fill = COLOURS["current"] if (oy, ox) == current else COLOURS["output"]
            cell = _rect(x0 + ox * _CELL, y0 + oy * _CELL, _CELL, _CELL, fill, ' class="out"')
            if links:
                reads = _reads_text(windows, oy, ox)
                cell = f'<a href="#w-{oy}-{ox}"><title>{escape(reads)}</title>{cell}</a>'
            out.append(cell)
    return out


def _reads_text(windows: Windows, oy: int, ox: int) -> str:
    taps = windows.taps(oy, ox)
    counts = {w: sum(t.where == w for t in taps) for w in ("input", "output", "padding", "overhang")}
    if windows.transposed:
        text = f"input ({oy}, {ox}) writes {counts['output']} output cell(s)"
        if counts["padding"]:
            text += f"; {counts['padding']} write(s) fall in the padding and are cropped"
        return text
    text = f"output ({oy}, {ox}) reads {counts['input']} input cell(s)"
    if counts["padding"]:
        text += f" and {counts['padding']} padding cell(s)"
    if counts["overhang"]:
        text += f"; {counts['overhang']} tap(s) fall beyond the padding and are skipped"
    return text


def _panel(windows: Windows, oy: int, ox: int, x0: int, y0: int) -> list[str]:
    """One output position: the input with its window's taps filled, and the output with the position filled."""
    (r0, r1), (c0, c1) = windows.extent()
    role = "input" if windows.transposed else "output"
    out = [f'<g class="window" id="w-{oy}-{ox}" data-{role}="{oy},{ox}">']
    label = f"({oy}, {ox})"
    divisor = windows.divisor(oy, ox)
    if divisor is not None:
        label += f" ÷ {divisor}"
    out.append(_text(x0, y0 + _TEXT - 3, label))
    top = y0 + _TEXT
    out += _input_grid(windows, x0, top)
    for t in windows.taps(oy, ox):
        x, y = x0 + (t.x - c0) * _CELL + 3, top + (t.y - r0) * _CELL + 3
        out.append(
            _rect(
                x,
                y,
                _CELL - 6,
                _CELL - 6,
                COLOURS[f"tap-{t.where}"],
                f' class="tap {t.where}" data-cell="{t.y},{t.x}" data-tap="{t.i},{t.j}"',
                "none",
            )
        )
    out += _output_grid(windows, x0 + (c1 - c0) * _CELL + _GAP, top, current=(oy, ox))
    out.append("</g>")
    return out


def _channel_view(windows: Windows, x0: int, y0: int) -> tuple[list[str], int]:
    """Rows: output channels; columns: input channels; a filled cell: that input channel feeds that output."""
    C, O, kh, kw = windows.in_channels, windows.out_channels, *windows.kernel_size
    per = C // windows.groups
    if windows.transposed:
        lines = [
            f"channels: input channel c writes to the {O // windows.groups} output channel(s) of its group"
            f" (C_out/groups = {O}/{windows.groups}), {kh}×{kw} taps each;",
            f"output channel o sums the {per} input channel(s) of its group (C_in/groups = {C}/{windows.groups})",
        ]
    else:
        lines = [
            f"channels: output channel o reads the {per} input channel(s) of its group"
            f" (C_in/groups = {C}/{windows.groups}), {kh}×{kw} taps each:",
            f"{per} × {kh} × {kw} = {per * kh * kw} products per output value",
        ]
    out = [_text(x0, y0 + (k + 1) * _TEXT - 3, line) for k, line in enumerate(lines)]
    top = y0 + len(lines) * _TEXT + 4
    out.append(_text(x0, top + _TEXT - 3, "input channel c →, output channel o ↓"))
    top += _TEXT
    for o in range(O):
        feeds = windows.input_channels_of(o)
        for c in range(C):
            if c in feeds:
                extra = f' class="feeds" data-channels="{o},{c}"'
                out.append(_rect(x0 + c * _CELL, top + o * _CELL, _CELL, _CELL, COLOURS["tap-input"], extra))
            else:
                out.append(_rect(x0 + c * _CELL, top + o * _CELL, _CELL, _CELL, COLOURS["output"]))
    return out, top + O * _CELL - y0


def _legend_text(windows: Windows) -> tuple[list[tuple[str, str]], list[str]]:
    """Return the legend's ``(colour key, text)`` entries and its lines of notes for ``windows``."""
    if windows.transposed:
        entries = [
            ("output", "output cell"),
            ("padding", "padding: computed, then cropped from the output"),
            ("tap-output", "output cell the input cell writes (its kernel, scaled by its value)"),
            ("tap-padding", "write into the padding: cropped"),
            ("current", "the input cell being scattered"),
        ]
        notes = [
            "conv_transpose2d is conv2d's picture with input and output swapped: each input cell scatters",
            "its kernel into the output, where conv2d's output cell gathers its window from the input",
        ]
        if windows.output_padding != (0, 0):
            notes.append("output_padding: extra cells at the bottom/right of the output, written only by cropped taps")
        return entries, notes
    entries = [
        ("input", "input cell"),
        ("padding", "padding (" + ("−∞ for max" if windows.op == "max_pool2d" else "zeros") + ")"),
        ("tap-input", "tap reading the input"),
        ("tap-padding", "tap reading the padding"),
        ("current", "the output being computed"),
    ]
    notes = []
    if windows.ceil_mode:
        entries[2:2] = [("overhang", "ceil-mode overhang (beyond the padding)")]
        entries.append(("tap-overhang", "tap in the overhang: skipped"))
        notes.append("ceil_mode: the last window is kept if it starts inside the input or its left/top padding")
    if windows.op == "avg_pool2d":
        counted = "input and padding taps" if windows.count_include_pad else "input taps only"
        notes.append(f"÷ n: avg_pool2d's divisor, the window's {counted}")
    return entries, notes


def _legend(windows: Windows, x0: int, y0: int) -> tuple[list[str], int]:
    entries, notes = _legend_text(windows)
    out = []
    for k, (key, text) in enumerate(entries):
        y = y0 + k * (_CELL + 2)
        out.append(_rect(x0, y, _CELL - 2, _CELL - 2, COLOURS[key]))
        out.append(_text(x0 + _CELL + 4, y + _CELL - 4, text))
    height = len(entries) * (_CELL + 2)
    for line in notes:
        height += _TEXT
        out.append(_text(x0, y0 + height - 3, line))
    return out, height


def svg(windows: Windows) -> str:
    """Return the static SVG picture of ``windows`` (see the module docstring), as text.

    Parameters
    ----------
    windows : Windows
        From :func:`npresnet.draw.conv2d`, :func:`~npresnet.draw.conv_transpose2d`,
        :func:`~npresnet.draw.max_pool2d` or :func:`~npresnet.draw.avg_pool2d`.

    Returns
    -------
    str
        A complete SVG document; the same configuration always gives the same text.
    """
    if not isinstance(windows, Windows):
        raise TypeError(f"windows must be a npresnet.draw.Windows, got {type(windows).__name__}")
    (r0, r1), (c0, c1) = windows.extent()
    out_h, out_w = windows.position_size
    panel_w = (c1 - c0 + out_w) * _CELL + _GAP
    panel_h = _TEXT + max(r1 - r0, out_h) * _CELL
    columns = out_w
    body = [_text(0, _TEXT - 3, windows.title(), ' font-weight="bold"')]
    y = _TEXT + 4
    if windows.transposed:
        body.append(_text(0, y + _TEXT - 3, "input (each cell links to the output cells it writes, below):"))
    else:
        body.append(_text(0, y + _TEXT - 3, "output (each cell links to its window below):"))
    y += _TEXT
    body += _output_grid(windows, 0, y, links=True)
    y += out_h * _CELL + _GAP
    for k, (oy, ox) in enumerate(windows.positions()):
        row, col = divmod(k, columns)
        body += _panel(windows, oy, ox, col * (panel_w + _GAP), y + row * (panel_h + _GAP))
    y += out_h * (panel_h + _GAP)
    width = columns * (panel_w + _GAP)
    if windows.op in ("conv2d", "conv_transpose2d"):
        view, height = _channel_view(windows, 0, y)
        body += view
        y += height + _GAP
        width = max(width, windows.in_channels * _CELL)
    legend, height = _legend(windows, 0, y)
    body += legend
    y += height
    width = max(width, 640)
    shown = min(width, _MAX_WIDTH)
    shown_h = y * shown // width
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{shown}" height="{shown_h}" viewBox="0 0 {width} {y}"'
        f' font-family="sans-serif" font-size="12" fill="{COLOURS["text"]}">'
    )
    desc = f"<title>{escape(windows.title())}</title>"
    return "\n".join([head, desc, *body, "</svg>"]) + "\n"
