"""Summary rows: one per layer call, or one per block/stage when folded by ``depth``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..nn import AdaptiveAvgPool2d, Conv2d, Linear, MaxPool2d, Module, Sequential
from .formulas import ReceptiveField

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .trace import Event

__all__ = ["LayerRow", "layer_rows", "layer_type", "max_depth"]


@dataclass(frozen=True)
class LayerRow:
    """One row of the summary: a layer call, or a block/stage folded by ``depth``.

    ``output_shape`` omits the batch axis: ``(C, H, W)``, or ``(features,)`` after the flatten.
    ``macs`` are for the whole batch.
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: ReceptiveField
    folded: bool = False


def max_depth(model: Module) -> int:
    """Dotted-name depth of the deepest leaf module (4 for a ResNet: ``layer1.0.downsample.0``)."""
    return max((len(name.split(".")) for name, m in model.named_modules() if name and not m._children), default=1)


def layer_type(module: Module) -> str:
    """``Conv2d 3×3 s2 p1``, ``MaxPool2d 3×3 s2 p1``, ``Linear 512→1000``, or the class name."""
    kind = type(module).__name__
    if isinstance(module, (Conv2d, MaxPool2d)):
        (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
        text = f"{kind} {kh}×{kw}"
        if (sh, sw) != (1, 1):
            text += f" s{sh}" if sh == sw else f" s{sh},{sw}"
        pad = module.padding
        if isinstance(pad, str):
            text += f" {pad}"
        elif pad != (0, 0):
            text += f" p{pad[0]}" if pad[0] == pad[1] else f" p{pad[0]},{pad[1]}"
        if (dh, dw) != (1, 1):
            text += f" d{dh}" if dh == dw else f" d{dh},{dw}"
        groups = getattr(module, "groups", 1)  # a convolution's; pooling has none
        if groups != 1:
            text += f" g{groups}"
        return text
    if isinstance(module, Linear):
        return f"{kind} {module.in_features}→{module.out_features}"
    if isinstance(module, AdaptiveAvgPool2d):
        size = module.output_size if isinstance(module.output_size, (tuple, list)) else (module.output_size,) * 2
        return f"{kind} {size[0]}×{size[1]}"
    if isinstance(module, Sequential) and len(module):
        types = [type(m).__name__ for m in module]
        if len(set(types)) == 1:
            return f"Sequential {len(types)}×{types[0]}"
        return "Sequential " + "+".join(
            layer_type(m).replace(" ", "") if not m._children else type(m).__name__ for m in module
        )
    return kind


def layer_rows(model: Module, events: Sequence[Event], depth: int | None) -> list[LayerRow]:
    """Layer rows in execution order, folding modules deeper than ``depth`` into their ancestor."""
    ends = {e.name: e for e in events if e.kind == "end"}
    modules = dict(model.named_modules())
    rows: list[LayerRow] = []
    seen_params: set[int] = set()
    folding: str | None = None  # name of the row being folded, which has accumulated ``folded_macs``
    folded_macs = 0
    for event in events:
        module = event.module
        if event.kind != "layer" or module is None:  # only a layer call has a module, and starts a row
            continue
        parts = event.name.split(".")
        if depth is None or len(parts) <= depth:
            folding = None
            first = id(module) not in seen_params
            seen_params.add(id(module))
            rows.append(
                LayerRow(
                    event.name,
                    layer_type(module),
                    tuple(event.output_spec.shape[1:]),
                    module.num_parameters() if first else 0,
                    event.macs,
                    event.rf,
                )
            )
            continue
        name = ".".join(parts[:depth])
        if folding == name:
            folded_macs += event.macs
            rows[-1] = _fold_row(name, modules[name], ends[name], folded_macs)
        else:
            folding, folded_macs = name, event.macs
            rows.append(_fold_row(name, modules[name], ends[name], event.macs))
    return rows


def _fold_row(name: str, module: Module, end: Event, macs: int) -> LayerRow:
    """Return a row for ``module`` and everything below it; depth 0 folds the model into one row named ``model``."""
    return LayerRow(
        name or "model",
        layer_type(module),
        tuple(end.output_spec.shape[1:]),
        module.num_parameters(),
        macs,
        end.rf,
        folded=True,
    )
