"""Receptive fields drawn over the image: matplotlib (the ``viz`` extra), written as PNG.

Left panel: the image, the effective field as a heat map (``|∂unit/∂input|`` scaled to its
maximum), the theoretical box clipped to the image (its parts in the padding shaded outside
the frame) and the unit's centre. For a residual block, a right panel shows the main path's
and the shortcut's effective fields as two colours with their theoretical boxes, so their
alignment is visible. Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas,
never through ``pyplot``'s global state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from .._atomic import atomic_write
from .receptive_field import Field

if TYPE_CHECKING:
    from .._typing import PathLike
    from .receptive_field import Box

__all__ = ["overlay", "effective_extent"]


def _matplotlib() -> tuple[Any, Any, Any]:
    """Return matplotlib's ``Figure``, ``FigureCanvasAgg`` and ``Rectangle``, typed Any: matplotlib is optional."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError:
        raise ImportError("drawing receptive fields needs matplotlib: pip install 'npresnet[viz]'") from None
    return Figure, FigureCanvasAgg, Rectangle


def effective_extent(gradient: numpy.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Centre and standard deviation ``((cy, cx), (sy, sx))`` of ``gradient`` taken as a distribution over pixels."""
    total = gradient.sum()
    if not total > 0:
        return (float("nan"), float("nan")), (float("nan"), float("nan"))
    p = gradient / total  # (H, W)
    ys, xs = numpy.arange(p.shape[0]), numpy.arange(p.shape[1])
    py, px = p.sum(axis=1), p.sum(axis=0)
    cy, cx = float(py @ ys), float(px @ xs)
    sy, sx = float(numpy.sqrt(py @ (ys - cy) ** 2)), float(numpy.sqrt(px @ (xs - cx) ** 2))
    return (cy, cx), (sy, sx)


def _box_patch(Rectangle: Any, box: tuple[tuple[int, int], ...], colour: str, style: str = "-") -> Any:
    (y0, y1), (x0, x1) = box
    return Rectangle(
        (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor=colour, linewidth=1.5, linestyle=style
    )


def _frame(ax: Any, box: tuple[tuple[int, int], ...], shape: tuple[int, int]) -> None:
    """Show the box whole, the image's frame inside it, and shade what lies outside the image (the padding)."""
    H, W = shape
    (y0, y1), (x0, x1) = box
    lo_y, hi_y, lo_x, hi_x = min(y0, 0) - 1.5, max(y1, H - 1) + 1.5, min(x0, 0) - 1.5, max(x1, W - 1) + 1.5
    ax.set_facecolor("#d0d0d0")  # outside the image: padding
    ax.set_xlim(lo_x, hi_x)
    ax.set_ylim(hi_y, lo_y)
    ax.set_xticks([])
    ax.set_yticks([])


def _block_parts(field: Field) -> tuple[Box, Box, numpy.ndarray, numpy.ndarray] | None:
    """Return a block's ``(main_box, shortcut_box, main, shortcut)``, set together; None for a stem layer."""
    if field.main_box is None or field.shortcut_box is None or field.main is None or field.shortcut is None:
        return None
    return field.main_box, field.shortcut_box, field.main, field.shortcut


def overlay(rgb: numpy.ndarray, field: Field, path: PathLike) -> None:
    """Write the picture of ``field`` over ``rgb`` to ``path`` (PNG), atomically.

    Parameters
    ----------
    rgb : numpy.ndarray, uint8, shape (H, W, 3)
        The image the field was computed on, as displayed (the preprocessed crop, unnormalised).
    field : Field
    path : str or os.PathLike
    """
    Figure, FigureCanvasAgg, Rectangle = _matplotlib()
    H, W = field.gradient.shape
    if rgb.shape != (H, W, 3):
        raise ValueError(f"rgb must have shape {(H, W, 3)} to match the field, got {rgb.shape}")
    block = _block_parts(field)
    panels = 1 if block is None else 2
    fig = Figure(figsize=(4.2 * panels, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    scale = field.gradient.max() or 1.0
    _, (sy, sx) = effective_extent(field.gradient)
    centre = [(a + b) / 2 for a, b in field.box]
    size = [b - a + 1 for a, b in field.box]

    ax = fig.add_subplot(1, panels, 1)
    _frame(ax, field.box, (H, W))
    ax.imshow(rgb, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
    ax.imshow(field.gradient / scale, cmap="inferno", alpha=0.6, vmin=0, vmax=1, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
    ax.add_patch(_box_patch(Rectangle, field.box, "#35c0ff"))
    ax.plot([centre[1]], [centre[0]], marker="+", color="#35c0ff", markersize=10)
    unit = f"{field.layer} unit {field.unit}" + ("" if field.channel is None else f" channel {field.channel}")
    ax.set_title(
        f"{unit}\ntheoretical {size[0]}×{size[1]} (blue); effective σ {sy:.1f}×{sx:.1f} px",
        fontsize=9,
    )

    if block is not None:
        main_box, shortcut_box, main, shortcut = block
        ax = fig.add_subplot(1, 2, 2)
        box = tuple((min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(main_box, shortcut_box))
        _frame(ax, box, (H, W))
        both = numpy.zeros((H, W, 3))
        both[..., 0] = main / (main.max() or 1.0)  # red: through the main path
        both[..., 2] = shortcut / (shortcut.max() or 1.0)  # blue: through the shortcut
        ax.imshow(numpy.clip(both, 0, 1), extent=(-0.5, W - 0.5, H - 0.5, -0.5))
        ax.add_patch(_box_patch(Rectangle, main_box, "#ff6060"))
        ax.add_patch(_box_patch(Rectangle, shortcut_box, "#6090ff", "--"))
        ax.set_title("main path (red) and shortcut (blue):\neffective fields and theoretical boxes", fontsize=9)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
