"""The ResNet family of torchvision, composed from :mod:`npresnet.nn` layers.

Reading order follows torchvision's ``resnet.py``: ``conv3x3``/``conv1x1``, the two
residual blocks, ``ResNet`` with ``_make_layer``, then the builders. Module names,
and so ``state_dict`` keys, are torchvision's exactly.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (ResNet);
Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017 (ResNeXt);
Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (Wide ResNet).

Shapes in comments are for a 224×224 input to ResNet-50.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, cast

import numpy

from .._args import check_int
from ..nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sequential
from ..nn.inputs import check_image_batch
from ..nn.layers import check_parameter_bytes
from ..workspace import resolve_workspace_bytes

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .._typing import Array, PathLike
    from ..nn import TensorSpec

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ConvBN",
    "BlockLayout",
    "ResNetLayout",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "ARCHITECTURES",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1, **kw: Any) -> Conv2d:
    """3×3 convolution with padding (= dilation, so the size is kept at stride 1), no bias."""
    return Conv2d(
        in_planes, out_planes, 3, stride=stride, padding=dilation, groups=groups, bias=False, dilation=dilation, **kw
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1, **kw: Any) -> Conv2d:
    """1×1 convolution, no bias: changes channels, and with stride 2 subsamples."""
    return Conv2d(in_planes, out_planes, 1, stride=stride, bias=False, **kw)


class ConvBN(NamedTuple):
    """A convolution and the batch norm that follows it, with the convolution's dotted name in the model."""

    name: str
    conv: Conv2d
    bn: BatchNorm2d


class BlockLayout(NamedTuple):
    """What a residual block computes, without its attribute names.

    ``out = relu(main(x) + shortcut(x))`` where ``main`` is the (conv, bn) pairs of ``main`` in
    order with a ReLU after every pair but the last, and ``shortcut(x)`` is
    ``downsample.bn(downsample.conv(x))``, or ``x`` when ``downsample`` is None.
    """

    name: str
    main: tuple[ConvBN, ...]
    downsample: ConvBN | None


class ResNetLayout(NamedTuple):
    """A ResNet as the data flows: ``relu(stem)``, ``maxpool``, the blocks in order, ``avgpool``, flatten, ``fc``.

    The one place that reads the model's attribute names (``conv1``, ``bn2``, ``layer3``, ...):
    tools that transform a ResNet (the fused path, :mod:`npresnet.fast`) take this instead.
    """

    stem: ConvBN
    maxpool: MaxPool2d
    blocks: tuple[BlockLayout, ...]
    avgpool: AdaptiveAvgPool2d
    fc: Linear


def _block_layout(block: BasicBlock | Bottleneck, name: str, pairs: Sequence[tuple[str, str]]) -> BlockLayout:
    main = tuple(ConvBN(f"{name}.{c}", getattr(block, c), getattr(block, b)) for c, b in pairs)
    ds = block.downsample  # None, or Sequential(conv1x1, BatchNorm2d) as _make_layer builds it
    shortcut = None if ds is None else ConvBN(f"{name}.downsample.0", getattr(ds, "0"), getattr(ds, "1"))
    return BlockLayout(name, main, shortcut)


class BasicBlock(Module):
    """Two 3×3 convolutions and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        *,
        dtype: Any = "float32",
        **kw: Any,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride, dtype=dtype, **kw)
        self.bn1 = BatchNorm2d(planes, dtype=dtype)
        self.relu = ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dtype=dtype, **kw)
        self.bn2 = BatchNorm2d(planes, dtype=dtype)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Array | TensorSpec) -> Array | TensorSpec:
        """Return ``relu(main(x) + shortcut(x))``: (N, inplanes, H, W) into (N, planes·expansion, H', W')."""
        identity = x

        out: Array | TensorSpec = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)
        return out

    def layout(self, name: str = "") -> BlockLayout:
        """Return the block's (conv, bn) pairs and shortcut, as :class:`BlockLayout`; ``name``: its dotted name."""
        return _block_layout(self, name, (("conv1", "bn1"), ("conv2", "bn2")))

    def backward(self, grad_output: Array) -> Array:
        """Run the forward in reverse; the block input fed both branches, so their gradients add."""
        grad = self.relu.backward(grad_output)  # out = relu(out + identity)
        grad_identity = grad  # the sum passes its gradient unchanged to both addends

        grad = self.bn2.backward(grad)
        grad = self.conv2.backward(grad)

        grad = self.relu.backward(grad)
        grad = self.bn1.backward(grad)
        grad = self.conv1.backward(grad)

        if self.downsample is not None:
            grad_identity = self.downsample.backward(grad_identity)

        return grad + grad_identity  # residual: main branch plus shortcut


class Bottleneck(Module):
    """1×1 reduce, 3×3 (grouped for ResNeXt), 1×1 expand by 4, and a shortcut.

    The stride sits on the 3×3 convolution, torchvision's "ResNet v1.5"
    (the paper's v1 strides the first 1×1 and is slightly less accurate).
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        *,
        dtype: Any = "float32",
        **kw: Any,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups  # 3×3 width: 64 for resnet50 layer1, 128 for 32x4d
        self.conv1 = conv1x1(inplanes, width, dtype=dtype, **kw)
        self.bn1 = BatchNorm2d(width, dtype=dtype)
        self.conv2 = conv3x3(width, width, stride, groups, dilation, dtype=dtype, **kw)
        self.bn2 = BatchNorm2d(width, dtype=dtype)
        self.conv3 = conv1x1(width, planes * self.expansion, dtype=dtype, **kw)
        self.bn3 = BatchNorm2d(planes * self.expansion, dtype=dtype)
        self.relu = ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Array | TensorSpec) -> Array | TensorSpec:
        """Return ``relu(main(x) + shortcut(x))``: (N, inplanes, H, W) into (N, planes·expansion, H', W')."""
        identity = x

        out: Array | TensorSpec = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)
        return out

    def layout(self, name: str = "") -> BlockLayout:
        """Return the block's (conv, bn) pairs and shortcut, as :class:`BlockLayout`; ``name``: its dotted name."""
        return _block_layout(self, name, (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")))

    def backward(self, grad_output: Array) -> Array:
        """Run the forward in reverse; the block input fed both branches, so their gradients add."""
        grad = self.relu.backward(grad_output)  # out = relu(out + identity)
        grad_identity = grad  # the sum passes its gradient unchanged to both addends

        grad = self.bn3.backward(grad)
        grad = self.conv3.backward(grad)

        grad = self.relu.backward(grad)
        grad = self.bn2.backward(grad)
        grad = self.conv2.backward(grad)

        grad = self.relu.backward(grad)
        grad = self.bn1.backward(grad)
        grad = self.conv1.backward(grad)

        if self.downsample is not None:
            grad_identity = self.downsample.backward(grad_identity)

        return grad + grad_identity  # residual: main branch plus shortcut


class ResNet(Module):
    """ResNet: a 7×7 stem, four stages of residual blocks, global average pooling, a linear classifier.

    Parameters
    ----------
    block : BasicBlock or Bottleneck
    layers : list of 4 int
        Blocks per stage (``[2, 2, 2, 2]`` for ResNet-18).
    num_classes : int
    zero_init_residual : bool
        Start each block's last batch norm at weight 0, so every block begins as the identity.
    groups, width_per_group : int
        ResNeXt cardinality and width (``32, 4`` for ``resnext50_32x4d``); Wide ResNet doubles the width.
    replace_stride_with_dilation : list of 3 bool, optional
        For stages 2–4, dilate instead of striding (keeps resolution, as in segmentation backbones).
    maxpool_padding : int
        The stem max pool's padding: 1 as torchvision (112 → 56 at 224), or 0, the variant many
        re-implementations use (112 → 55).
    dtype : str or numpy.dtype
        Floating dtype of the parameters.
    rng : int or numpy.random.Generator, optional
        Seed for the initialisation (Kaiming normal, fan-out, for convolutions; torch's default for fc).
    init : bool
        Initialise the parameters (default). ``False`` allocates zeros and draws nothing: fast,
        for weights about to be loaded or for the shape-only pass.
    workspace_bytes : int, optional
        Every convolution's workspace bound (:mod:`npresnet.workspace`: one chunk's im2col columns
        plus its output); None, the default, uses the backend's default. Settable later as
        ``model.workspace_bytes = ...``.

    Raises
    ------
    TypeError
        A count that is not an int.
    ValueError
        A count below 1, or parameters and running statistics that would exceed
        :data:`~npresnet.limits.MAX_PARAMETER_BYTES` (checked before anything is allocated).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        *,
        maxpool_padding: int = 1,
        dtype: Any = "float32",
        rng: numpy.random.Generator | int | None = None,
        init: bool = True,
        workspace_bytes: int | None = None,
    ) -> None:
        super().__init__()
        if block not in (BasicBlock, Bottleneck):
            raise TypeError(f"block must be BasicBlock or Bottleneck, got {block!r}")
        if not hasattr(layers, "__len__") or len(layers) != 4:
            raise ValueError(f"layers must list 4 stage depths, got {layers!r}")
        layers = [check_int(f"layers[{i}]", n, 1) for i, n in enumerate(layers)]
        num_classes = check_int("num_classes", num_classes, 1)
        groups, width_per_group = check_int("groups", groups, 1), check_int("width_per_group", width_per_group, 1)
        if block is BasicBlock and (groups != 1 or width_per_group != 64):
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=64")
        count = _parameter_count(block, layers, num_classes, groups, width_per_group)
        check_parameter_bytes(
            f"ResNet({block.__name__}, layers={layers}, num_classes={num_classes}, groups={groups}, "
            f"width_per_group={width_per_group})",
            count,
            dtype,
        )
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                f"replace_stride_with_dilation should be None or a 3-element list, got {replace_stride_with_dilation}"
            )
        if maxpool_padding not in (0, 1):
            raise ValueError(f"maxpool_padding must be 1 (torchvision) or 0, got {maxpool_padding!r}")
        rng = numpy.random.default_rng(rng) if init else None
        layer_kw = dict(dtype=numpy.dtype(dtype), rng=rng, init=init)  # every layer's
        conv_kw = dict(layer_kw, workspace_bytes=workspace_bytes)  # and the convolutions' too
        self.inplanes = 64
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group

        self.conv1 = Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False, **conv_kw)
        self.bn1 = BatchNorm2d(self.inplanes, dtype=dtype)
        self.relu = ReLU(inplace=True)
        self.maxpool = MaxPool2d(3, stride=2, padding=maxpool_padding)
        self.layer1 = self._make_layer(block, 64, layers[0], kw=conv_kw)
        self.layer2 = self._make_layer(
            block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0], kw=conv_kw
        )
        self.layer3 = self._make_layer(
            block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1], kw=conv_kw
        )
        self.layer4 = self._make_layer(
            block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2], kw=conv_kw
        )
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.fc = Linear(512 * block.expansion, num_classes, **layer_kw)
        if not init:
            return
        assert rng is not None  # made above when init

        for module in self.modules():
            if isinstance(module, Conv2d):  # kaiming_normal_(mode="fan_out", nonlinearity="relu")
                fan_out = module.weight.shape[0] * module.weight.shape[2] * module.weight.shape[3]
                std = math.sqrt(2.0 / fan_out)
                module.weight = (rng.standard_normal(module.weight.shape) * std).astype(dtype)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    module.bn3.weight[...] = 0
                elif isinstance(module, BasicBlock):
                    module.bn2.weight[...] = 0

    def _make_layer(
        self,
        block: type[BasicBlock | Bottleneck],
        planes: int,
        blocks: int,
        stride: int = 1,
        dilate: bool = False,
        *,
        kw: dict[str, Any],
    ) -> Sequential:
        # kw: dtype, rng, init and workspace_bytes, for the blocks and the downsampling convolution
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride, **kw),
                BatchNorm2d(planes * block.expansion, dtype=kw["dtype"]),
            )
        layers = [
            block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation, **kw)
        ]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(
                    self.inplanes, planes, groups=self.groups, base_width=self.base_width, dilation=self.dilation, **kw
                )
            )
        return Sequential(*layers)

    def check_input(self, x: Array | TensorSpec) -> None:
        """Raise a clear error unless ``x`` is an (N, 3, H, W) floating array this model can take."""
        check_image_batch(
            x,
            self.conv1.in_channels,
            self.dtype,
            self.backend,
            dtype_fix=f" or the model with model.to(dtype='{getattr(x, 'dtype', '')}')",
        )

    @property
    def workspace_bytes(self) -> int | None:
        """The workspace bound every convolution of this model uses (None: the backend's default)."""
        return self.conv1.workspace_bytes

    @workspace_bytes.setter
    def workspace_bytes(self, value: int | None) -> None:
        if value is not None:
            resolve_workspace_bytes(value)  # refuse a bad value before changing anything
        for module in self.modules():
            if isinstance(module, Conv2d):
                module.workspace_bytes = value

    def layout(self) -> ResNetLayout:
        """Return the stem, the blocks in order and the head as :class:`ResNetLayout`, for tools that transform it."""
        blocks = tuple(
            cast("BasicBlock | Bottleneck", block).layout(f"layer{s}.{b}")
            for s, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1)
            for b, block in enumerate(stage)
        )
        return ResNetLayout(ConvBN("conv1", self.conv1, self.bn1), self.maxpool, blocks, self.avgpool, self.fc)

    def forward(self, x: Array | TensorSpec) -> Array | TensorSpec:
        """Return the logits (N, num_classes) of images ``x`` (N, 3, H, W)."""
        self.check_input(x)
        x = self.conv1(x)  # (N, 64, 112, 112)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)  # (N, 64, 56, 56)

        x = self.layer1(x)  # (N, 256, 56, 56)
        x = self.layer2(x)  # (N, 512, 28, 28)
        x = self.layer3(x)  # (N, 1024, 14, 14)
        x = self.layer4(x)  # (N, 2048, 7, 7)

        x = self.avgpool(x)  # (N, 2048, 1, 1)
        x = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, 2048), torch.flatten(x, 1)
        x = self.fc(x)  # (N, num_classes)
        return x

    def backward(self, grad_output: Array) -> Array:
        """Return the gradient of the loss with respect to the input images.

        ``grad_output`` (N, num_classes) is the gradient at the logits; every parameter's gradient is
        added into its module's ``grads``
        (see :meth:`~npresnet.nn.Module.named_grads`). Needs a forward in training mode (``model.train()``).
        """
        grad = self.fc.backward(grad_output)  # (N, 2048)
        grad = grad.reshape(*grad.shape, 1, 1)  # (N, 2048, 1, 1), undoing the flatten
        grad = self.avgpool.backward(grad)  # (N, 2048, 7, 7)

        grad = self.layer4.backward(grad)  # (N, 1024, 14, 14)
        grad = self.layer3.backward(grad)  # (N, 512, 28, 28)
        grad = self.layer2.backward(grad)  # (N, 256, 56, 56)
        grad = self.layer1.backward(grad)  # (N, 64, 56, 56)

        grad = self.maxpool.backward(grad)  # (N, 64, 112, 112)
        grad = self.relu.backward(grad)
        grad = self.bn1.backward(grad)
        grad = self.conv1.backward(grad)  # (N, 3, 224, 224)
        return grad


def _parameter_count(
    block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int, groups: int, width_per_group: int
) -> int:
    """Floats in ``ResNet(block, layers, ...).state_dict()``: parameters and running statistics.

    Follows ``_make_layer``'s widths without building anything, so a model too large to
    allocate is refused first. Dilation changes no shape, so it plays no part.
    """
    bn = 4  # weight, bias, running_mean, running_var per channel
    count = 64 * 3 * 7 * 7 + 64 * bn  # stem conv1 and bn1
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        out = planes * block.expansion
        if block is Bottleneck:
            width = int(planes * (width_per_group / 64.0)) * groups
            body = width * 9 * (width // groups) + width * out + (2 * width + out) * bn  # conv2, conv3, bns
            count += blocks * body + inplanes * width + (blocks - 1) * out * width  # plus each conv1
        else:
            count += inplanes * planes * 9 + (2 * blocks - 1) * planes * planes * 9 + blocks * 2 * planes * bn
        if stage > 0 or inplanes != out:  # stride 2 (or dilation, same shapes) or a channel change: downsample
            count += inplanes * out + out * bn
        inplanes = out
    return count + (inplanes + 1) * num_classes  # fc


def _resnet(
    block: type[BasicBlock | Bottleneck],
    layers: list[int],
    weights: PathLike | Mapping[str, Array] | None = None,
    **kwargs: Any,
) -> ResNet:
    if (
        weights is not None
        and not isinstance(weights, str)
        and not hasattr(weights, "__fspath__")
        and not hasattr(weights, "keys")
    ):  # a path (str, os.PathLike) or a state dict
        raise TypeError(
            f"weights must be a path to a .pth, .npz or .safetensors file (str or os.PathLike) "
            f"or a state dict (a mapping of str to arrays), got {type(weights).__name__}"
        )
    if weights is not None:
        kwargs.setdefault("init", False)  # every array is about to be overwritten by the strict load
    model = ResNet(block, layers, **kwargs)
    if weights is not None:
        from ..weights import load_weights

        if hasattr(weights, "keys"):  # a state dict
            model.load_state_dict(cast("Mapping[str, Array]", weights))
        else:
            model.load_state_dict(load_weights(weights))
    return model


def resnet18(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """ResNet-18 (He et al., 2016). ``weights``: a path to a ``.pth``/``.npz``/``.safetensors`` file or a state dict."""
    return _resnet(BasicBlock, [2, 2, 2, 2], weights, **kwargs)


def resnet34(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """ResNet-34 (He et al., 2016)."""
    return _resnet(BasicBlock, [3, 4, 6, 3], weights, **kwargs)


def resnet50(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """ResNet-50 (He et al., 2016), bottleneck blocks with the stride on the 3×3 (v1.5)."""
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, **kwargs)


def resnet101(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """ResNet-101 (He et al., 2016)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, **kwargs)


def resnet152(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """ResNet-152 (He et al., 2016)."""
    return _resnet(Bottleneck, [3, 8, 36, 3], weights, **kwargs)


def resnext50_32x4d(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32×4d (Xie et al., 2017): 32 groups of width 4 in each 3×3."""
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """ResNeXt-101 32×8d (Xie et al., 2017)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, groups=32, width_per_group=8, **kwargs)


def resnext101_64x4d(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """ResNeXt-101 64×4d (Xie et al., 2017)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, groups=64, width_per_group=4, **kwargs)


def wide_resnet50_2(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis, 2016): bottleneck 3×3 twice as wide."""
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, width_per_group=64 * 2, **kwargs)


def wide_resnet101_2(*, weights: PathLike | Mapping[str, Array] | None = None, **kwargs: Any) -> ResNet:
    """Wide ResNet-101-2 (Zagoruyko & Komodakis, 2016)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, width_per_group=64 * 2, **kwargs)


ARCHITECTURES = {
    f.__name__: f
    for f in (
        resnet18,
        resnet34,
        resnet50,
        resnet101,
        resnet152,
        resnext50_32x4d,
        resnext101_32x8d,
        resnext101_64x4d,
        wide_resnet50_2,
        wide_resnet101_2,
    )
}
