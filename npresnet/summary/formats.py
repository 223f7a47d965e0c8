"""Text forms of a :class:`~npresnet.summary.Summary`: a plain table and Markdown (JSON is ``Summary.to_dict``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .formulas import ReceptiveField

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .api import Summary

__all__ = ["format_table", "format_markdown", "si", "binary_bytes"]

_SI_PREFIXES = (("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3))


def si(n: int) -> str:
    """``1814073344`` → ``1.81 G``: two decimals and the largest SI prefix (K to P) not above ``n``."""
    for unit, scale in _SI_PREFIXES:
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def binary_bytes(n: int) -> str:
    """``6422528`` → ``6.1 MiB``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _shape_text(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return f"{shape[0]}@{shape[1]}×{shape[2]}"
    return "×".join(str(s) for s in shape)


def _field_text(rf: ReceptiveField) -> str:
    size = str(rf.size[0]) if rf.size[0] == rf.size[1] else f"{rf.size[0]}×{rf.size[1]}"
    jump = str(rf.jump[0]) if rf.jump[0] == rf.jump[1] else f"{rf.jump[0]}×{rf.jump[1]}"
    return f"{size} / {jump}"


_HEADERS = ("Layer", "Type", "Output C@H×W", "Params", "MACs", "RF size / jump")


def _cells(summary: Summary) -> Iterator[tuple[str, str, str, str, str, str]]:
    for row in summary.layers:
        yield (
            row.name,
            row.type,
            _shape_text(row.output_shape),
            f"{row.params:,}" if row.params else "–",
            si(row.macs) if row.macs else "–",
            _field_text(row.receptive_field),
        )


def _totals(summary: Summary) -> list[str]:
    return [
        f"Total params: {summary.total_params:,}",
        f"Total MACs: {si(summary.total_macs)} ({summary.total_macs:,}; convolutions and fc;"
        f" FLOPs = 2 × MACs = {si(summary.total_flops)})",
        f"Peak activation memory: {binary_bytes(summary.peak_activation_bytes)}"
        f" ({summary.peak_activation_bytes:,} bytes, {summary.dtype}, during {summary.peak_at})",
        f"Depth: {summary.depth} layers as the paper counts (convolutions and fc on the main path);"
        f" {summary.weighted_layers} weighted layers = {summary.num_convs} convolutions"
        f" ({summary.num_projections} are 1×1 shortcut projections) + {summary.num_linear} fc",
    ]


def _title(summary: Summary) -> str:
    h, w = summary.input_size
    stem = "" if summary.maxpool_padding in (None, 1) else f", stem max pool padding {summary.maxpool_padding}"
    return f"{summary.arch}: input {summary.batch}×3×{h}×{w}{stem}; MACs for the whole batch"


def format_table(summary: Summary) -> str:
    """Return a plain-text table with a title and the totals."""
    cells = list(_cells(summary))
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(_HEADERS)]
    right = {3, 4}

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))

    rule = "─" * len(line(_HEADERS))
    out = [_title(summary), rule, line(_HEADERS), rule, *(line(c) for c in cells), rule, *_totals(summary)]
    return "\n".join(s.rstrip() for s in out)


def format_markdown(summary: Summary) -> str:
    """Return a GitHub-flavoured Markdown table followed by the totals as a list."""
    out = [
        f"**{_title(summary)}**",
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "|".join("---:" if i in (3, 4) else "---" for i in range(len(_HEADERS))) + "|",
    ]
    out += ["| " + " | ".join(f"`{c[0]}`" if j == 0 else c[j] for j in range(len(c))) + " |" for c in _cells(summary)]
    out += [""] + [f"- {t}" for t in _totals(summary)]
    return "\n".join(out)
