"""ResNet.layout(): the one description of a ResNet's structure that tools (the fused path) read.

Oracles: the module tree (every Conv2d and BatchNorm2d appears exactly once, under its own
dotted name) and the model's own forward (recomputing each block from its layout, with the
rule the BlockLayout docstring states, gives the block's output).
"""

import numpy as np
import pytest

import npresnet
from _torchvision import ARCHITECTURE_NAMES
from npresnet.nn import BatchNorm2d, Conv2d


@pytest.mark.parametrize("name", ARCHITECTURE_NAMES)
def test_layout_names_every_conv_and_batch_norm_once(name):
    model = npresnet.ARCHITECTURES[name](init=False)
    layout = model.layout()
    pairs = [layout.stem] + [p for b in layout.blocks for p in b.main + ((b.downsample,) if b.downsample else ())]
    convs = {n: m for n, m in model.named_modules() if isinstance(m, Conv2d)}
    bns = {n: m for n, m in model.named_modules() if isinstance(m, BatchNorm2d)}
    assert sorted(p.name for p in pairs) == sorted(convs)
    for p in pairs:
        assert convs[p.name] is p.conv
        bn_name = p.name[:-1] + "1" if p.name.endswith("downsample.0") else p.name.replace("conv", "bn")
        assert bns[bn_name] is p.bn
    assert len(pairs) == len(bns)
    assert layout.maxpool is model.maxpool and layout.avgpool is model.avgpool and layout.fc is model.fc


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_blocks_recomputed_from_their_layout_equal_the_forward(name):
    model = npresnet.ARCHITECTURES[name](rng=0, dtype="float64")
    rng = np.random.default_rng(1)
    for m in model.modules():  # batch norms that are not the identity
        if isinstance(m, BatchNorm2d):
            m.running_mean[...] = rng.normal(0, 0.2, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 2, m.num_features)
            m.bias[...] = rng.normal(0, 0.2, m.num_features)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    blocks = [b for stage in stages for b in stage]
    x = model.maxpool(model.relu(model.bn1(model.conv1(rng.standard_normal((1, 3, 48, 48))))))
    for block, spec in zip(blocks, model.layout().blocks, strict=True):
        h = x
        for k, pair in enumerate(spec.main):
            h = pair.bn(pair.conv(h))
            if k < len(spec.main) - 1:
                h = np.maximum(h, 0)
        shortcut = x if spec.downsample is None else spec.downsample.bn(spec.downsample.conv(x))
        want = block(x.copy())
        np.testing.assert_allclose(np.maximum(h + shortcut, 0), want, rtol=1e-12, atol=1e-12)
        x = want
