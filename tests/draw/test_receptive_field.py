"""``npresnet.draw.receptive_field`` and ``npresnet receptive-field`` against the summary and torch autograd.

* the theoretical box is the summary's receptive field (size, jump, centre) for the unit;
* the effective field ``|∂unit/∂input|`` from npresnet's backward equals torch autograd's through
  torchvision's own modules with the same weights (float64), and so do its main-path and shortcut parts
  (torch's by detaching the other branch);
* as a property: the effective field's support lies inside the theoretical box, for every part.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npresnet
from npresnet.cli import main
from npresnet.draw.receptive_field import receptive_field, theoretical_box, trunk_names
from npresnet.nn import TensorSpec, capture_intermediates
from npresnet.summary import summarize

torch = pytest.importorskip("torch")

from _torchvision import numpy_state_dict, torchvision_resnet  # noqa: E402

SIZE = 48  # input side: layer4 of a ResNet-18 has a 2x2 output


@pytest.fixture(scope="module")
def pair_of_models():
    tv = torchvision_resnet("resnet18", seed=3, dtype=torch.float64)
    ours = npresnet.resnet18(init=False, dtype="float64")
    ours.load_state_dict(numpy_state_dict(tv))
    return tv, ours


def torch_field(tv, x, layer, unit, channel, part=None):
    """|∂unit/∂x| summed over colours, by autograd; ``part``: "main" or "shortcut" detaches the other branch."""
    xt = torch.tensor(x[None], requires_grad=True)
    h = tv.maxpool(tv.relu(tv.bn1(tv.conv1(xt))))
    stem = {"conv1": 1, "bn1": 2, "relu": 3, "maxpool": 4}
    if layer in stem:
        h = [tv.conv1, tv.bn1, tv.relu, tv.maxpool][: stem[layer]]
        out = xt
        for m in h:
            out = m(out)
    else:
        stage, _, block = layer.partition(".")
        out = h
        for s in range(1, int(stage[-1]) + 1):
            blocks = list(getattr(tv, f"layer{s}"))
            last = int(block) if (s == int(stage[-1]) and block) else len(blocks) - 1
            for b in range(last + 1 if s == int(stage[-1]) else len(blocks)):
                blk = blocks[b]
                is_target = s == int(stage[-1]) and b == last
                identity = out if blk.downsample is None else blk.downsample(out)
                body = blk.bn2(blk.conv2(blk.relu(blk.bn1(blk.conv1(out)))))
                if is_target and part == "main":
                    identity = identity.detach()
                if is_target and part == "shortcut":
                    body = body.detach()
                out = torch.relu(body + identity)
    value = out[0, :, unit[0], unit[1]].sum() if channel is None else out[0, channel, unit[0], unit[1]]
    (grad,) = torch.autograd.grad(value, xt)
    return grad[0].abs().sum(0).numpy()


@pytest.mark.parametrize(
    "layer,unit,channel",
    [
        ("conv1", (3, 5), None),
        ("maxpool", (0, 11), 7),
        ("layer1.1", (6, 2), None),
        ("layer2.0", (2, 3), 45),  # a channel the final ReLU lets through at this unit
        ("layer3", (1, 0), None),
        ("layer4.0", (1, 1), None),
    ],
)
def test_effective_field_is_torch_autograd(pair_of_models, layer, unit, channel):
    tv, ours = pair_of_models
    x = np.random.default_rng(1).standard_normal((3, SIZE, SIZE))
    field = receptive_field(ours, x, layer, unit, channel)
    # float64: each gradient element is a sum of products along < 20 layers of fan-in <= 4608; the two
    # implementations sum in different orders, so they differ by a few thousand roundings of 1.1e-16 of the
    # largest partial sums (which the |.| of the result never exceeds by much here): 1e-10 of the maximum.
    tol = 1e-10 * field.gradient.max()
    np.testing.assert_allclose(field.gradient, torch_field(tv, x, layer, unit, channel), rtol=0, atol=tol)
    if field.main is not None:
        np.testing.assert_allclose(field.main, torch_field(tv, x, layer, unit, channel, "main"), rtol=0, atol=tol)
        expected = torch_field(tv, x, layer, unit, channel, "shortcut")
        np.testing.assert_allclose(field.shortcut, expected, rtol=0, atol=tol)
        assert field.shortcut.max() > 0 and field.main.max() > 0


def test_theoretical_box_is_the_summary_field():
    model = npresnet.resnet50(init=False)
    rows = {row.name: row for row in summarize(model, 96).layers}
    for layer, row_name in [("conv1", "conv1"), ("maxpool", "maxpool"), ("layer2.1", "layer2.1.relu")]:
        rf = [r for r in summarize(model, 96).layers if r.name == row_name][-1].receptive_field
        for unit in [(0, 0), (1, 2), (3, 1)]:
            boxes = theoretical_box(model, layer, unit, (96, 96))
            (y0, y1), (x0, x1) = boxes["box"]
            assert (y1 - y0 + 1, x1 - x0 + 1) == rf.size
            assert (y0 + y1) / 2 == rf.start[0] + unit[0] * rf.jump[0]
            assert (x0 + x1) / 2 == rf.start[1] + unit[1] * rf.jump[1]
    # a block: its main path is its last convolution's field, its shortcut the projection's
    boxes = theoretical_box(model, "layer3.0", (2, 1), (96, 96))
    main, short = rows["layer3.0.conv3"].receptive_field, rows["layer3.0.downsample.0"].receptive_field
    assert boxes["main"] == tuple(main.span(i, a) for a, i in enumerate((2, 1)))
    assert boxes["shortcut"] == tuple(short.span(i, a) for a, i in enumerate((2, 1)))
    assert boxes["box"] == boxes["main"]  # the union of the two, centred alike: the larger, the main path's


_MODEL = npresnet.resnet18(rng=0, dtype="float64")


# Each example is a forward and two backward passes of a ResNet-18 on up to 56x56: about a second, so
# the property runs a fixed 12 examples rather than the profile's count.
@settings(max_examples=12)
@given(st.integers(32, 56), st.sampled_from(trunk_names(_MODEL)), st.data())
def test_effective_support_lies_inside_the_theoretical_box(size, layer, data):
    x = np.random.default_rng(size).standard_normal((3, size, size))
    _, outputs = capture_intermediates(_MODEL, TensorSpec((1, 3, size, size), "float64"), [layer])
    out_h, out_w = outputs[layer].shape[2:]
    unit = (data.draw(st.integers(0, out_h - 1)), data.draw(st.integers(0, out_w - 1)))
    field = receptive_field(_MODEL, x, layer, unit)
    parts = [(field.gradient, field.box)]
    if field.main is not None:
        parts += [(field.main, field.main_box), (field.shortcut, field.shortcut_box)]
    for grad, ((y0, y1), (x0, x1)) in parts:
        ys, xs = np.nonzero(grad)
        assert len(ys) > 0
        assert ys.min() >= max(y0, 0) and ys.max() <= min(y1, size - 1)
        assert xs.min() >= max(x0, 0) and xs.max() <= min(x1, size - 1)


def test_the_model_is_left_as_it_was(pair_of_models):
    _, ours = pair_of_models
    before = {k: v.copy() for k, v in ours.state_dict().items()}
    kinds = [type(m) for m in ours.modules()]
    ours.layer1[0].conv1.grads["weight"] = np.ones(ours.layer1[0].conv1.weight.shape)
    receptive_field(ours, np.zeros((3, 40, 40)), "layer2.0", (1, 1))
    assert [type(m) for m in ours.modules()] == kinds and not ours.training
    assert all(np.array_equal(v, before[k]) for k, v in ours.state_dict().items())
    assert list(ours.layer1[0].conv1.grads) == ["weight"] and (ours.layer1[0].conv1.grads["weight"] == 1).all()
    del ours.layer1[0].conv1.grads["weight"]
    assert all(not m._saved for m in ours.modules())


@pytest.mark.parametrize(
    "layer,unit,channel,message",
    [
        ("layer3.1.conv1", (0, 0), None, "layer must be one of the trunk's outputs"),
        ("layer5", (0, 0), None, "layer must be one of the trunk's outputs"),
        ("layer3.1", (3, 0), None, "unit (3, 0) is outside layer3.1's 3x3 output"),
        ("layer3.1", (0, 0), 256, "channel must be from 0 to 255 for layer3.1, got 256"),
    ],
)
def test_errors_name_the_argument(pair_of_models, layer, unit, channel, message):
    _, ours = pair_of_models
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        receptive_field(ours, np.zeros((3, 40, 40)), layer, unit, channel)


def test_cli_prints_the_fields_and_draws_them(tmp_path, capsys):
    PIL = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    image = tmp_path / "photo.png"
    PIL.fromarray(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "rf.png"
    args = ["receptive-field", "resnet18", str(image), "--layer", "layer2.1", "--unit", "2,3", "--crop-size", "64"]
    assert main([*args, "--resize-size", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    x = npresnet.preprocess.preprocess(npresnet.preprocess.load_image(image), 64, 64)
    boxes = theoretical_box(npresnet.resnet18(init=False), "layer2.1", (2, 3), (64, 64))
    (y0, y1), (x0, x1) = boxes["box"]
    assert f"theoretical field: rows {y0}..{y1}, columns {x0}..{x1}" in text
    assert "main path: theoretical" in text and "shortcut: theoretical" in text
    with PIL.open(out) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]  # two panels side by side
    assert x.shape == (3, 64, 64)

    assert main([*args, "--unit", "9,9"]) == 1
    assert "unit (9, 9) is outside layer2.1's 8x8 output" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "rf.jpg")]) == 1
    assert "must end in .png" in capsys.readouterr().err
    assert main(["receptive-field", "resnet19", str(image), "--layer", "conv1", "--unit", "0,0"]) == 1
    assert "unknown architecture 'resnet19'" in capsys.readouterr().err


def test_cli_refuses_an_image_whose_resize_is_too_large_before_decoding_it(tmp_path, capsys, monkeypatch):
    PIL = pytest.importorskip("PIL.Image")
    long = tmp_path / "long.png"
    PIL.new("L", (1, 3_000_000)).save(long)  # 3 Mpx, within the pixel limit; resized to 256 x 768,000,000
    decoded = []
    real_convert = PIL.Image.convert

    def convert(self, *args, **kwargs):
        decoded.append(self.size)
        return real_convert(self, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "convert", convert)
    args = ["receptive-field", "resnet18", str(long), "--layer", "layer1.0", "--unit", "0,0"]
    assert main(args) == 1
    assert "resizing 1×3000000 to a shorter side of 256" in capsys.readouterr().err
    assert decoded == []  # refused from the header


def test_cli_help_explains_both_fields(capsys):
    with pytest.raises(SystemExit):
        main(["receptive-field", "--help"])
    text = capsys.readouterr().out
    for phrase in ("theoretical", "effective", "backward", "Gaussian", "--weights", "layerS.B", "shortcut"):
        assert phrase in text
