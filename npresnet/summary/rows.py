"""Summary rows: one per layer call, or one per block/stage when folded by ``depth``."""

from __future__ import annotations

from dataclasses import dataclass

from ..nn import AdaptiveAvgPool2d, Conv2d, Linear, MaxPool2d, Module, Sequential
from .formulas import ReceptiveField

__all__ = ["LayerRow", "layer_rows", "layer_type", "max_depth"]


@dataclass(frozen=True)
class LayerRow:
    """One row of the summary: a layer call, or a block/stage folded by ``depth``.

    ``output_shape`` omits the batch axis: ``(C, H, W)``, or ``(features,)`` after the flatten.
    ``macs`` are for the whole batch.
    """

    name: str
    type: str
    output_shape: tuple
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
        if getattr(module, "groups", 1) != 1:
            text += f" g{module.groups}"
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


def layer_rows(model: Module, events, depth: int | None) -> list[LayerRow]:
    """Layer rows in execution order, folding modules deeper than ``depth`` into their ancestor."""
    ends = {e.name: e for e in events if e.kind == "end"}
    modules = dict(model.named_modules())
    rows, seen_params = [], set()
    current = None  # (folded name, accumulated macs) of the row being folded
    for event in events:
        if event.kind != "layer":
            continue
        parts = event.name.split(".")
        if depth is None or len(parts) <= depth:
            current = None
            first = id(event.module) not in seen_params
            seen_params.add(id(event.module))
            rows.append(
                LayerRow(
                    event.name,
                    layer_type(event.module),
                    tuple(event.output_spec.shape[1:]),
                    event.module.num_parameters() if first else 0,
                    event.macs,
                    event.rf,
                )
            )
            continue
        name = ".".join(parts[:depth])
        if current is not None and current[0] == name:
            current[1] += event.macs
            rows[-1] = _fold_row(name, modules[name], ends[name], current[1])
        else:
            current = [name, event.macs]
            rows.append(_fold_row(name, modules[name], ends[name], event.macs))
    return rows


def _fold_row(name, module, end, macs):
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
