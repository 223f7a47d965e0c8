"""The receptive field of one unit of a ResNet, two ways: the formula and the gradient.

Theoretical field
    The input pixels the unit can see, from the summary's recurrence
    (:class:`npresnet.summary.ReceptiveField`, read off :func:`npresnet.summary.summarize`'s row
    for the layer): a box of ``size`` pixels per axis, moving by ``jump`` pixels per unit. Near the
    border part of it lies in the padding; the box is clipped to the image for drawing.
Effective field
    ``|∂unit/∂input|`` summed over the input's colour channels, an (H, W) map, computed by
    npresnet's own backward (:meth:`npresnet.nn.Module.backward` of every layer on the path) with
    batch norm in inference mode (the running statistics are constants, as in the network that
    classifies). The unit is the sum over the layer's channels at one position, or one channel.
    Luo et al. ("Understanding the Effective Receptive Field in Deep Convolutional Neural
    Networks", NeurIPS 2016) found it roughly Gaussian and covering only a fraction of the
    theoretical box; a randomly initialised network shows that, trained weights the real one.
Residual blocks
    A block's output is ``relu(main(x) + shortcut(x))``; the gradient splits exactly into the part
    through the shortcut (``relu``'s mask, then the 1×1 projection if any) and the rest, through the
    main path, and each has its own theoretical box (the shortcut's is its input's field, at the
    block's jump). Both are returned, so a picture can show how they are aligned.

Layers: the trunk's outputs, ``conv1``, ``bn1``, ``relu``, ``maxpool``, a stage ``layerS`` or a
block ``layerS.B`` (the places the whole signal passes).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy

from .. import functional as F
from .._args import is_int
from ..models import BasicBlock, Bottleneck, ResNet
from ..nn import BatchNorm2d, Module
from ..summary import summarize

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .._typing import Array
    from ..summary import LayerRow
    from ..summary.formulas import ReceptiveField

__all__ = ["Field", "Box", "Boxes", "trunk_names", "theoretical_box", "receptive_field"]

_STEM = ("conv1", "bn1", "relu", "maxpool")

Box = tuple[tuple[int, int], tuple[int, int]]
"""``((y0, y1), (x0, x1))``: the first and last input row and column of a field, inclusive, unclipped."""


class Boxes(TypedDict):
    """:func:`theoretical_box`'s boxes: the unit's field, and for a block its main path's and shortcut's."""

    box: Box
    main: Box | None
    shortcut: Box | None


@dataclass(frozen=True)
class Field:
    """The receptive field of one unit; boxes are ``((y0, y1), (x0, x1))``, inclusive input pixels, unclipped.

    Attributes
    ----------
    layer : str
    unit : (int, int)
        Position in the layer's output.
    channel : int or None
        The output channel, or None for the sum over channels.
    box : box
        The theoretical field.
    gradient : numpy.ndarray, float64, shape (H, W)
        ``|∂unit/∂input|`` summed over the input channels, in the model's dtype.
    main_box, shortcut_box : box or None
        For a block: the main path's and the shortcut's theoretical fields.
    main, shortcut : numpy.ndarray or None, shape (H, W)
        For a block: the gradient's parts through each, as ``gradient``.
    """

    layer: str
    unit: tuple[int, int]
    channel: int | None
    box: Box
    gradient: numpy.ndarray
    main_box: Box | None = None
    shortcut_box: Box | None = None
    main: numpy.ndarray | None = None
    shortcut: numpy.ndarray | None = None


def trunk_names(model: ResNet) -> list[str]:
    """Return the layer names :func:`receptive_field` accepts, in forward order."""
    names = list(_STEM)
    for s in range(1, 5):
        stage = getattr(model, f"layer{s}")
        names += [f"layer{s}.{b}" for b in range(len(stage))] + [f"layer{s}"]
    return names


def _trunk_modules(model: ResNet, layer: str) -> list[tuple[str, Module]]:
    """``(name, module)`` of the trunk, one block at a time, up to and including ``layer``."""
    if layer not in trunk_names(model):
        raise ValueError(
            f"layer must be one of the trunk's outputs (conv1, bn1, relu, maxpool, layerS or layerS.B), "
            f"got {layer!r}; this model has: {', '.join(trunk_names(model))}"
        )
    modules = [(name, getattr(model, name)) for name in _STEM]
    if layer in _STEM:
        return modules[: _STEM.index(layer) + 1]
    for s in range(1, 5):
        for b, block in enumerate(getattr(model, f"layer{s}")):
            modules.append((f"layer{s}.{b}", block))
            if layer == f"layer{s}.{b}" or (layer == f"layer{s}" and b == len(getattr(model, f"layer{s}")) - 1):
                return modules
    raise AssertionError("unreachable: layer is a trunk name")


def _box(rf: ReceptiveField, unit: tuple[int, int]) -> Box:
    y, x = unit
    return rf.span(y, 0), rf.span(x, 1)


def _block(modules: list[tuple[str, Module]]) -> BasicBlock | Bottleneck:
    """Return the last of ``modules``: a residual block, when the layer is a block or a stage."""
    name, block = modules[-1]
    if not isinstance(block, (BasicBlock, Bottleneck)):
        raise AssertionError(f"unreachable: {name} is past the stem, so a residual block")
    return block


def theoretical_box(model: ResNet, layer: str, unit: tuple[int, int], input_size: tuple[int, int]) -> Boxes:
    """Theoretical boxes of ``unit`` at ``layer``: ``{"box": ..., "main": ..., "shortcut": ...}``.

    ``main`` and ``shortcut`` are None unless ``layer`` names a block (or a stage: its last block).
    Read off :func:`npresnet.summary.summarize`'s rows (every layer), so they are the summary's fields.
    """
    modules = _trunk_modules(model, layer)
    block_name = modules[-1][0]
    rows = summarize(model, input_size).layers
    by_name = {row.name: row for row in rows}
    shape = _output_shape(rows, block_name)
    unit = _check_unit(unit, shape, layer)
    if block_name in _STEM:
        field = [row for row in rows if row.name == block_name][-1].receptive_field  # relu: its first call
        return {"box": _box(field, unit), "main": None, "shortcut": None}
    first = next(k for k, row in enumerate(rows) if row.name.startswith(block_name + "."))
    block = _block(modules)
    shortcut = rows[first - 1].receptive_field  # the block's input
    if block.downsample is not None:
        shortcut = by_name[f"{block_name}.downsample.0"].receptive_field
    main_rf = by_name[block.layout(block_name).main[-1].name].receptive_field  # the main path's last convolution
    total = rows[_last_index(rows, block_name)].receptive_field
    return {"box": _box(total, unit), "main": _box(main_rf, unit), "shortcut": _box(shortcut, unit)}


def _last_index(rows: Sequence[LayerRow], block_name: str) -> int:
    return max(k for k, row in enumerate(rows) if row.name.startswith(block_name + "."))


def _output_shape(rows: Sequence[LayerRow], name: str) -> tuple[int, ...]:
    if name in _STEM:
        return [row for row in rows if row.name == name][0].output_shape
    return rows[_last_index(rows, name)].output_shape


def _check_unit(unit: object, shape: tuple[int, ...], layer: str) -> tuple[int, int]:
    _, out_h, out_w = shape
    if not isinstance(unit, (tuple, list)) or len(unit) != 2 or not all(is_int(u) for u in unit):
        raise TypeError(f"unit must be a pair of ints (y, x), got {unit!r}")
    if not (0 <= unit[0] < out_h and 0 <= unit[1] < out_w):
        raise ValueError(f"unit {tuple(unit)} is outside {layer}'s {out_h}x{out_w} output")
    return int(unit[0]), int(unit[1])


class _InferenceBatchNorm(Module):
    """A batch norm in inference mode whose backward treats the running statistics as constants."""

    bn: BatchNorm2d

    def __init__(self, bn: BatchNorm2d) -> None:
        super().__init__()
        object.__setattr__(self, "bn", bn)  # not a child: the model's tree is only borrowed

    def forward(self, x: Array) -> Array:
        """Normalise ``x`` (N, C, H, W) with the running statistics."""
        self._save(x)
        bn = self.bn
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)

    def backward(self, grad_output: Array) -> Array:
        """Return the gradient with respect to the input, the statistics held constant."""
        (x,) = self._pop_saved()
        bn = self.bn
        grad_input, _, _ = F.batch_norm_backward(
            grad_output, x, bn.weight, bn.running_mean, bn.running_var, training=False, eps=bn.eps
        )
        return grad_input


@contextlib.contextmanager
def _inference_batch_norms(model: Module) -> Iterator[None]:
    """Within the block, every BatchNorm2d of ``model`` is an :class:`_InferenceBatchNorm`; restored after."""
    swapped: list[tuple[Module, str, BatchNorm2d]] = []
    for _, parent in list(model.named_modules()):
        for attr, child in list(parent._children.items()):
            if isinstance(child, BatchNorm2d):
                swapped.append((parent, attr, child))
                setattr(parent, attr, _InferenceBatchNorm(child))
    training = model.training
    grads = {id(m): {k: v.copy() for k, v in m.grads.items()} for m in model.modules()}
    try:
        model.train()  # every layer saves what its backward needs
        yield
    finally:
        model.release_saved()
        for parent, attr, child in swapped:
            setattr(parent, attr, child)
        for m in model.modules():
            m.grads.clear()
            m.grads.update(grads.get(id(m), {}))
        model.train(training)


def _forward(modules: Sequence[tuple[str, Module]], x: Array) -> Array:
    for _, module in modules:
        x = module(x)
    return x


def _backward(modules: Sequence[tuple[str, Module]], grad: Array) -> Array:
    for _, module in reversed(modules):
        grad = module.backward(grad)
    return grad


def receptive_field(
    model: ResNet, image: Array, layer: str, unit: tuple[int, int], channel: int | None = None
) -> Field:
    """Theoretical and effective receptive field of ``unit`` of ``layer`` on ``image``.

    Parameters
    ----------
    model : ResNet
        Its weights are used as they are (random or trained), in its dtype (float64 for gradients
        to compare with another implementation's). Its state, gradients included, is left as it was.
    image : numpy.ndarray, shape (3, H, W)
        A preprocessed image (:func:`npresnet.preprocess.preprocess`).
    layer : str
        One of :func:`trunk_names`.
    unit : (int, int)
        Position ``(y, x)`` in the layer's output.
    channel : int, optional
        One output channel; default: the sum over the layer's channels.

    Returns
    -------
    Field
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"model must be an npresnet ResNet, got {type(model).__name__}")
    image = numpy.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype.kind != "f":
        raise ValueError(f"image must be a float (3, H, W) array, got {image.dtype} of shape {image.shape}")
    H, W = image.shape[1:]
    boxes = theoretical_box(model, layer, unit, (H, W))
    x = image.astype(model.dtype)[None]  # (1, 3, H, W)
    with _inference_batch_norms(model):
        modules = _trunk_modules(model, layer)  # with the inference batch norms in place
        out = _forward(modules, x)  # (1, C, out_h, out_w)
        C = out.shape[1]
        if channel is not None and (not is_int(channel) or not 0 <= channel < C):
            raise ValueError(f"channel must be from 0 to {C - 1} for {layer}, got {channel!r}")
        seed = numpy.zeros_like(out)
        seed[0, slice(None) if channel is None else channel, unit[0], unit[1]] = 1.0
        out = out.copy()  # the block's output, for the shortcut's relu mask below
        total = _backward(modules, seed)[0]  # (3, H, W)
        if boxes["main"] is None:
            return Field(layer, (unit[0], unit[1]), channel, boxes["box"], numpy.abs(total).sum(axis=0))
        # The shortcut's part: relu's mask at the block output, the projection, then the trunk before the block.
        prefix, block = modules[:-1], _block(modules)
        block_input = _forward(prefix, x)
        grad = F.relu_backward(seed, out)
        if block.downsample is not None:
            block.downsample(block_input)
            grad = block.downsample.backward(grad)
        shortcut = _backward(prefix, grad)[0]
    main = total - shortcut  # the gradient is linear in the seed along a fixed forward: the parts add
    return Field(
        layer,
        (unit[0], unit[1]),
        channel,
        boxes["box"],
        numpy.abs(total).sum(axis=0),
        boxes["main"],
        boxes["shortcut"],
        numpy.abs(main).sum(axis=0),
        numpy.abs(shortcut).sum(axis=0),
    )
