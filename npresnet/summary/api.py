"""``summarize``: the per-layer summary of a model from one shape-only pass, and its :class:`Summary` record.

Everything is read off the real module tree by calling the model on a
:class:`~npresnet.nn.TensorSpec` (see :mod:`.trace`); no weights are needed and no
convolution runs. The formulas live in :mod:`.formulas`, the memory accounting in
:mod:`.memory`, the row folding in :mod:`.rows`, the text forms in :mod:`.formats`.

Layer counts
    The paper's depth counts convolutions and fully connected layers on the main path
    (18 for ResNet-18); the 1×1 projection convolutions of the shortcuts (modules under
    a ``downsample``) are counted separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._args import is_int
from ..models.registry import build_model
from ..nn import Conv2d, Linear, Module, TensorSpec
from ..shapes import pair
from .memory import peak_memory
from .rows import LayerRow, layer_rows, max_depth
from .trace import trace

if TYPE_CHECKING:
    from typing import Any

__all__ = ["Summary", "summarize", "parse_input_size"]


@dataclass(frozen=True)
class Summary:
    """What :func:`summarize` found. Counts are exact integers; ``total_macs`` is for the whole batch."""

    arch: str
    input_size: tuple[int, int]  # (H, W)
    batch: int
    dtype: str
    layers: tuple[LayerRow, ...]
    total_params: int
    total_macs: int
    peak_activation_bytes: int
    peak_at: str  # the operation during which the peak occurs
    depth: int  # the paper's count: main-path convolutions + fully connected layers
    num_convs: int
    num_projections: int  # 1×1 shortcut convolutions (under a ``downsample``)
    num_linear: int
    display_depth: int | None = None
    maxpool_padding: int | None = None

    @property
    def total_flops(self) -> int:
        """FLOPs = 2 × MACs (a multiply and an add)."""
        return 2 * self.total_macs

    @property
    def weighted_layers(self) -> int:
        """Every convolution and fully connected layer, shortcut projections included."""
        return self.num_convs + self.num_linear

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object of ``npresnet summary --format json``."""
        return {
            "arch": self.arch,
            "input_size": list(self.input_size),
            "layers": [
                {
                    "name": row.name,
                    "type": row.type,
                    "output_shape": list(row.output_shape),
                    "params": row.params,
                    "macs": row.macs,
                    "receptive_field": {"size": list(row.receptive_field.size), "jump": list(row.receptive_field.jump)},
                }
                for row in self.layers
            ],
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "depth": self.depth,
            # Beyond the required keys:
            "batch": self.batch,
            "total_flops": self.total_flops,
            "peak_activation_bytes": self.peak_activation_bytes,
            "weighted_layers": self.weighted_layers,
            "projection_convs": self.num_projections,
        }


def parse_input_size(value: int | tuple[int, int] | list[int] | str) -> tuple[int, int]:
    """``224``, ``"224"``, ``"300x200"`` (H×W), ``(300, 200)`` → ``(H, W)``; ValueError otherwise."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"input size must be H or HxW with positive integers (e.g. 224 or 300x200), got {value!r}")
        sizes = [int(p) for p in parts]
        value = (sizes[0], sizes[1]) if len(sizes) == 2 else sizes[0]
    try:
        h, w = pair(value, "input_size")
    except TypeError:
        raise ValueError(f"input size must be an int or (H, W), got {value!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"input size must be positive, got {h}x{w}")
    return h, w


def summarize(
    model_or_arch: Module | str,
    input_size: int | tuple[int, int] | str = 224,
    *,
    batch: int = 1,
    depth: int | None = None,
    maxpool_padding: int = 1,
    dtype: Any = "float32",
    in_channels: int = 3,
) -> Summary:
    """Summarise a model layer by layer from one shape-only pass.

    Parameters
    ----------
    model_or_arch : Module or str
        A model (e.g. ``npresnet.resnet50()``) or a name from ``npresnet.ARCHITECTURES``.
    input_size : int, (H, W) or str ``"HxW"``
    batch : int
        N; MACs and activation memory are for the whole batch.
    depth : int, optional
        Fold rows: 0 shows the whole model as one row, 1 the stem layers and the four stages,
        2 the blocks, 3 the layers inside blocks (a shortcut ``downsample`` folded), None every
        layer. At most the depth of the model's deepest layer name (4 for a ResNet:
        ``layer1.0.downsample.0``); the command line takes any larger depth as None.
    maxpool_padding : int
        Stem variant when building by name: 1 (torchvision) or 0.
    dtype : str
        Activation dtype, for the memory figure (a given model's own dtype wins).
    in_channels : int
        C of the (N, C, H, W) input.

    Returns
    -------
    Summary

    Raises
    ------
    ValueError
        Unknown architecture (with close names), a bad size, batch or depth, or an input
        too small for the network (naming the layer and the smallest size that works).
    """
    input_size = parse_input_size(input_size)
    if not is_int(batch) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if depth is not None and (not is_int(depth) or depth < 0):
        raise ValueError(f"depth must be a non-negative int or None, got {depth!r}")
    if isinstance(model_or_arch, Module):
        model, arch = model_or_arch, type(model_or_arch).__name__
        dtype = model.dtype or dtype
        stem_padding: int | None = None  # a given model's stem is its own
    else:
        arch = str(model_or_arch)
        model = build_model(arch, maxpool_padding=maxpool_padding, dtype=dtype)
        stem_padding = maxpool_padding
    deepest = max_depth(model)
    if depth is not None and depth > deepest:
        raise ValueError(
            f"depth must be between 0 and {deepest} for {arch}, whose deepest layer names have "
            f"{deepest} dotted parts ({deepest} shows every layer, as does depth=None), got {depth}"
        )
    events, buffer_bytes, output_buffer = trace(model, (batch, in_channels, *input_size), dtype, arch)
    rows = layer_rows(model, events, depth)
    peak, peak_at = peak_memory(events, buffer_bytes, output_buffer)

    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, Conv2d)]
    projections = sum(1 for n, _ in convs if "downsample" in n.split("."))
    linears = sum(1 for m in model.modules() if isinstance(m, Linear))
    return Summary(
        arch=arch,
        input_size=input_size,
        batch=int(batch),
        dtype=str(TensorSpec((1,), dtype).dtype),
        layers=tuple(rows),
        total_params=model.num_parameters(),
        total_macs=sum(e.macs for e in events),
        peak_activation_bytes=peak,
        peak_at=peak_at,
        depth=len(convs) - projections + linears,
        num_convs=len(convs),
        num_projections=projections,
        num_linear=linears,
        display_depth=depth,
        maxpool_padding=stem_padding,
    )
