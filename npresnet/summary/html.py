"""The summary as one self-contained HTML page: the table, and pictures drawn as inline SVG.

The page needs nothing at view time: no script, no style sheet, font or image from elsewhere.
It holds the title and totals of :func:`~npresnet.summary.format_table`, then

* the table of :mod:`.formats` (same columns, same text), each row also carrying its exact
  numbers as ``data-`` attributes (``data-name``, ``data-shape``, ``data-params``, ``data-macs``,
  ``data-rf-size``, ``data-rf-jump``), and a last column with the output shape to scale:
  a block ``H×W`` (the input's side is 32 px) beside a bar of ``C`` (the widest layer's is 96 px);
* the receptive field's size over the layers, against the input size;
* parameters and MACs per stage (``stem``: the rows before ``layer1``; ``layer1`` to ``layer4``;
  ``head``: the pooling and the classifier) as bar charts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from .formats import _HEADERS, _cells, _title, _totals, si

if TYPE_CHECKING:
    from .api import Summary

__all__ = ["format_html"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.folded td { background: #f4f7fb; }
h2 { margin-top: 1.5em; font-size: 17px; }
svg text { font-size: 11px; fill: #222; }
"""

_BLOCK = 32  # px: the input's side in the shape column
_BAR = 96  # px: the widest layer's channel bar


def _shape_picture(shape: tuple[int, ...], input_size: tuple[int, int], widest: int) -> str:
    """Return an inline SVG: ``H×W`` to the scale of the input, and a bar of ``C`` to the scale of the widest layer."""
    if len(shape) != 3:
        return ""
    C, H, W = shape
    side = max(input_size)
    h, w = max(1, round(_BLOCK * H / side)), max(1, round(_BLOCK * W / side))
    bar = max(1, round(_BAR * C / widest))
    return (
        f'<svg width="{_BLOCK + 8 + _BAR}" height="{_BLOCK}" role="img" aria-label="{C}@{H}×{W}">'
        f'<rect x="0" y="{_BLOCK - h}" width="{w}" height="{h}" fill="#5b8ed6"/>'
        f'<rect x="{_BLOCK + 8}" y="{_BLOCK - 8}" width="{bar}" height="8" fill="#e0913a"/></svg>'
    )


def _table(summary: Summary) -> list[str]:
    widest = max((row.output_shape[0] for row in summary.layers if len(row.output_shape) == 3), default=1)
    right = {3, 4}
    out = ['<table id="layers">', "<thead><tr>"]
    out += [f"<th{' class=num' if i in right else ''}>{escape(h)}</th>" for i, h in enumerate(_HEADERS)]
    out += ["<th>Output to scale</th>", "</tr></thead>", "<tbody>"]
    for row, cells in zip(summary.layers, _cells(summary)):
        rf = row.receptive_field
        attrs = {
            "data-name": row.name,
            "data-shape": ",".join(map(str, row.output_shape)),
            "data-params": row.params,
            "data-macs": row.macs,
            "data-rf-size": f"{rf.size[0]},{rf.size[1]}",
            "data-rf-jump": f"{rf.jump[0]},{rf.jump[1]}",
        }
        head = "<tr" + (' class="folded"' if row.folded else "")
        head += "".join(f" {k}={quoteattr(str(v))}" for k, v in attrs.items()) + ">"
        tds = [f"<td{' class=num' if i in right else ''}>{escape(c)}</td>" for i, c in enumerate(cells)]
        tds.append(f"<td>{_shape_picture(row.output_shape, summary.input_size, widest)}</td>")
        out.append(head + "".join(tds) + "</tr>")
    out += ["</tbody>", "</table>"]
    return out


def _field_chart(summary: Summary) -> list[str]:
    """Receptive-field size (height axis) per row, a polyline, with the input's height as a dashed line."""
    sizes = [row.receptive_field.size[0] for row in summary.layers]
    n, top = len(sizes), max(max(sizes), summary.input_size[0])
    width, height, left, bottom = max(320, 8 * n + 60), 200, 50, 20
    x = [left + (k * (width - left - 10) // max(n - 1, 1)) for k in range(n)]
    y = [height - bottom - (s * (height - bottom - 10) // top) for s in sizes]
    points = " ".join(f"{a},{b}" for a, b in zip(x, y))
    y_in = height - bottom - (summary.input_size[0] * (height - bottom - 10) // top)
    return [
        f'<svg id="rf-growth" width="{width}" height="{height}" role="img" aria-label="receptive field over depth">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#888"/>',
        f'<line x1="{left}" y1="10" x2="{left}" y2="{height - bottom}" stroke="#888"/>',
        f'<line x1="{left}" y1="{y_in}" x2="{width - 10}" y2="{y_in}" stroke="#aaa" stroke-dasharray="4,3"/>',
        f'<text x="{left + 4}" y="{y_in - 4}">input height {summary.input_size[0]}</text>',
        f'<polyline points="{points}" fill="none" stroke="#5b8ed6" stroke-width="2"/>',
        f'<text x="4" y="14">{top}</text><text x="4" y="{height - bottom}">0</text>',
        f'<text x="{left}" y="{height - 4}">layers in order (first to last), receptive field size in pixels</text>',
        "</svg>",
    ]


def _stages(summary: Summary) -> list[tuple[str, int, int]]:
    """``(stage, params, macs)`` summed over the rows: ``stem`` (before ``layer1``), each ``layerS``, ``head``."""
    totals: dict[str, list[int]] = {}
    seen_stage = False
    for row in summary.layers:
        stage = row.name.split(".")[0]
        if stage.startswith("layer"):
            seen_stage = True
        elif row.name != "model":  # depth 0's single row stays itself
            stage = "head" if seen_stage else "stem"
        totals.setdefault(stage, [0, 0])
        totals[stage][0] += row.params
        totals[stage][1] += row.macs
    return [(stage, p, m) for stage, (p, m) in totals.items()]


def _bar_chart(ident: str, title: str, items: list[tuple[str, int]]) -> list[str]:
    top = max((v for _, v in items), default=0) or 1
    bar_w, gap, height, label = 300, 4, 16, 80
    out = [
        f'<svg id="{ident}" width="{label + bar_w + 90}" height="{len(items) * (height + gap) + 20}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="0" y="12">{escape(title)}</text>',
    ]
    for k, (name, value) in enumerate(items):
        y = 20 + k * (height + gap)
        w = round(bar_w * value / top)
        out.append(f'<text x="0" y="{y + 12}">{escape(name)}</text>')
        out.append(f'<rect x="{label}" y="{y}" width="{w}" height="{height}" fill="#5b8ed6" data-value="{value}"/>')
        out.append(f'<text x="{label + w + 4}" y="{y + 12}">{escape(si(value) if value else "0")}</text>')
    out.append("</svg>")
    return out


def format_html(summary: Summary) -> str:
    """Return a complete, self-contained HTML page of ``summary`` (see the module docstring)."""
    stages = _stages(summary)
    body = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{escape(summary.arch)} summary</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(_title(summary))}</h1>",
        '<ul id="totals">',
        *[f"<li>{escape(t)}</li>" for t in _totals(summary)],
        "</ul>",
        *_table(summary),
        "<h2>Receptive field over depth</h2>",
        *_field_chart(summary),
        "<h2>Parameters and MACs per stage</h2>",
        *_bar_chart("params-per-stage", "parameters", [(s, p) for s, p, _ in stages]),
        *_bar_chart("macs-per-stage", "multiply-accumulates", [(s, m) for s, _, m in stages]),
        "</body>",
        "</html>",
    ]
    return "\n".join(body) + "\n"
