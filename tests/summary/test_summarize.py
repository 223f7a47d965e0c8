"""``npresnet.summary`` against independent oracles.

Shapes: torchvision's own forward hooks. Parameters and MACs: torchvision's published
metadata (``num_params``, ``_ops`` in GMACs). Receptive fields: a numerical
experiment on the real model (perturb one input pixel, see which outputs move).
Peak memory: liveness worked out by hand for small cases.
"""

import json
import subprocess
import sys

import numpy
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import npresnet  # noqa: E402
from npresnet.nn import Conv2d, Linear, ReLU, Sequential, capture_intermediates  # noqa: E402
from npresnet.summary import ReceptiveField, format_markdown, format_table, summarize  # noqa: E402


def torchvision_leaf_calls(arch, h, w, maxpool_padding=1):
    """(name, output shape without batch) of every leaf module call of torchvision's model, in order."""
    model = getattr(torchvision.models, arch)().eval()
    model.maxpool.padding = maxpool_padding
    calls = []
    for name, module in model.named_modules():
        if not list(module.children()):
            module.register_forward_hook(lambda m, i, o, name=name: calls.append((name, tuple(o.shape[1:]))))
    with torch.no_grad():
        model(torch.zeros(1, 3, h, w))
    return calls


@pytest.mark.parametrize(
    "arch,h,w,pad",
    [
        ("resnet18", 224, 224, 1),
        ("resnet18", 300, 200, 1),
        ("resnet18", 32, 32, 1),
        ("resnet18", 1, 1, 1),
        ("resnet18", 97, 61, 0),
        ("resnet50", 160, 96, 1),
    ],
)
def test_rows_match_torchvision_layer_calls(arch, h, w, pad):
    result = summarize(arch, (h, w), maxpool_padding=pad)
    ours = [(row.name, row.output_shape) for row in result.layers]
    assert ours == torchvision_leaf_calls(arch, h, w, pad)


@pytest.mark.parametrize(
    "arch,enum",
    [
        ("resnet18", "ResNet18_Weights"),
        ("resnet34", "ResNet34_Weights"),
        ("resnet50", "ResNet50_Weights"),
        ("resnext50_32x4d", "ResNeXt50_32X4D_Weights"),
    ],
)
def test_totals_match_torchvision_metadata(arch, enum):
    meta = getattr(torchvision.models, enum).IMAGENET1K_V1.meta
    result = summarize(arch, 224)
    assert result.total_params == meta["num_params"]
    assert round(result.total_macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)  # published GMACs
    assert result.total_flops == 2 * result.total_macs
    assert sum(row.params for row in result.layers) == result.total_params
    assert sum(row.macs for row in result.layers) == result.total_macs


def test_layer_counts_resnet18_and_50():
    r18 = summarize("resnet18")
    assert (r18.depth, r18.num_convs, r18.num_projections, r18.num_linear) == (18, 20, 3, 1)
    r50 = summarize("resnet50")
    assert (r50.depth, r50.num_projections) == (50, 4)


def test_macs_scale_with_batch_and_memory_too():
    one, four = summarize("resnet18", 64), summarize("resnet18", 64, batch=4)
    assert four.total_macs == 4 * one.total_macs
    assert four.peak_activation_bytes == 4 * one.peak_activation_bytes
    assert four.total_params == one.total_params


# ------------------------------------------------------------------ receptive field
def _positive_resnet18(rng):
    """ResNet-18 in float64 with every weight positive: a large bump at one pixel raises every
    activation it can reach (ReLUs pass, max pools pick it), so 'changed' == 'in the field'."""
    model = npresnet.resnet18(dtype="float64", rng=0)
    for module in model.modules():
        if isinstance(module, Conv2d):
            module.weight = rng.uniform(0.5, 1.0, module.weight.shape)
    return model


FIELD_LAYERS = ["conv1", "maxpool", "layer1.0.conv1", "layer1.1", "layer2.0.downsample.0", "layer2.1.conv1", "layer2.1"]


def test_receptive_field_by_perturbing_one_pixel():
    rng = numpy.random.default_rng(1)
    model = _positive_resnet18(rng)
    model.layer3 = model.layer4 = Sequential()  # only the layers under test need to run
    model.fc = Linear(128, 10, dtype="float64", rng=0)
    h, w = 130, 118
    fields = {}
    for depth in (None, 2):
        fields.update({r.name: r.receptive_field for r in summarize(npresnet.resnet18(), (h, w), depth=depth).layers})
    x = rng.uniform(0.5, 1.0, (1, 3, h, w))
    _, base = capture_intermediates(model, x, names=FIELD_LAYERS)
    for py, px in [(65, 59), (30, 20), (101, 110), (0, 0)]:
        bumped = x.copy()
        bumped[0, :, py, px] += 1e3
        _, moved = capture_intermediates(model, bumped, names=FIELD_LAYERS)
        for layer in FIELD_LAYERS:
            rf = fields[layer]
            changed = numpy.abs(moved[layer] - base[layer]).max(axis=(0, 1)) > 0  # (H_out, W_out)
            # Output (i, j) must change exactly when (py, px) lies in its field, on each axis.
            for axis, p in enumerate((py, px)):
                n = changed.shape[axis]
                expected = numpy.array([rf.span(i, axis)[0] <= p <= rf.span(i, axis)[1] for i in range(n)])
                seen = changed.any(axis=1 - axis)
                assert (seen == expected).all(), (layer, axis, p, numpy.flatnonzero(seen), numpy.flatnonzero(expected))


def test_receptive_field_recurrence_by_hand():
    # Two 3x3 stride-1 convs see 5 pixels; a stride 2 then doubles every later step.
    rf = ReceptiveField().grow((3, 3), (1, 1), (1, 1)).grow((3, 3), (2, 2), (1, 1)).grow((3, 3), (1, 1), (1, 1))
    assert rf.size == (9, 9) and rf.jump == (2, 2)


def test_residual_field_is_the_main_path():
    rows = {r.name: r for r in summarize("resnet18", depth=3).layers}
    assert rows["layer2.0.downsample"].receptive_field.size < rows["layer2.0.conv2"].receptive_field.size
    block = {r.name: r for r in summarize("resnet18", depth=2).layers}["layer2.0"]
    assert block.receptive_field.size == rows["layer2.0.conv2"].receptive_field.size


# ------------------------------------------------------------------ memory
def test_peak_memory_resnet18_by_hand():
    # The stem dominates: while bn1 runs, conv1's output and bn1's output (64x112x112 float32
    # each) are alive; the input is already dead and the ReLU after writes in place.
    result = summarize("resnet18", 224)
    assert result.peak_activation_bytes == 2 * 64 * 112 * 112 * 4
    assert result.peak_at == "bn1"


@pytest.mark.parametrize("inplace,expected", [(True, 3 * 64 * 4 + 8 * 64 * 4), (False, 2 * 8 * 64 * 4)])
def test_peak_memory_in_place_relu(inplace, expected):
    # 1x3x8x8 input (768 B) -> conv (8x8x8: 2048 B) -> ReLU. In place: peak while the conv
    # runs (input + output). Out of place: the ReLU's input and output are both alive.
    model = Sequential(Conv2d(3, 8, 3, padding=1, rng=0), ReLU(inplace=inplace))
    assert summarize(model, 8).peak_activation_bytes == expected


def test_peak_memory_counts_block_input_kept_for_the_shortcut():
    # conv -> bn -> relu(in place) -> conv2 + identity: the block input stays alive for
    # the residual add, so while bn runs three 2048-byte tensors are alive.
    from npresnet.models.resnet import BasicBlock

    class Wrap(Sequential):
        pass

    model = Wrap(Conv2d(3, 8, 1, rng=0), BasicBlock(8, 8, rng=0))
    result = summarize(model, 8)
    unit = 8 * 8 * 8 * 4
    assert result.peak_activation_bytes == 3 * unit


# ------------------------------------------------------------------ folding and formats
def test_depth_folds_into_stages_and_blocks():
    full = summarize("resnet18")
    stages = summarize("resnet18", depth=1)
    blocks = summarize("resnet18", depth=2)
    assert [r.name for r in stages.layers] == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
    ]
    assert [r.name for r in blocks.layers][4:6] == ["layer1.0", "layer1.1"]
    for folded in (stages, blocks):
        assert sum(r.macs for r in folded.layers) == full.total_macs
        assert sum(r.params for r in folded.layers) == full.total_params
    layer3 = {r.name: r for r in stages.layers}["layer3"]
    assert layer3.output_shape == (256, 14, 14)
    assert layer3.macs == sum(r.macs for r in full.layers if r.name.startswith("layer3."))


def test_basic_block_versus_bottleneck_costs_match_torchvision():
    basic = {r.name: r for r in summarize("resnet34", depth=2).layers}["layer1.1"]
    bottleneck = {r.name: r for r in summarize("resnet50", depth=2).layers}["layer1.1"]
    for row, arch in ((basic, "resnet34"), (bottleneck, "resnet50")):
        block = getattr(torchvision.models, arch)().layer1[1]
        assert row.params == sum(p.numel() for p in block.parameters())
        convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
        assert row.macs == sum(c.weight.numel() * 56 * 56 for c in convs)  # stride 1: 56x56 outputs each
    assert bottleneck.output_shape == (256, 56, 56) and basic.output_shape == (64, 56, 56)


def test_summary_runs_no_convolution(monkeypatch):
    import npresnet.functional as F

    def boom(*args, **kwargs):
        raise AssertionError("summary must not compute")

    monkeypatch.setattr(F, "conv2d", boom)
    monkeypatch.setattr(F, "max_pool2d", boom)
    assert summarize("resnet152", 1024).total_params == 60192808


def test_errors_are_clear():
    with pytest.raises(ValueError, match="did you mean resnet18"):
        summarize("resnet19")
    with pytest.raises(ValueError, match="input size"):
        summarize("resnet18", "12y3")
    with pytest.raises(ValueError, match="positive"):
        summarize("resnet18", 0)
    with pytest.raises(ValueError, match="smallest input it accepts is 5x5"):
        summarize("resnet18", 3, maxpool_padding=0)


def test_text_formats_show_names_shapes_and_totals():
    result = summarize("resnet18", depth=2)
    table = format_table(result)
    assert "layer2.0" in table and "128@28×28" in table and "11,689,512" in table and "FLOPs = 2 × MACs" in table
    md = format_markdown(result)
    assert md.count("\n| `") == len(result.layers)


# ------------------------------------------------------------------ the command
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "npresnet", *args], capture_output=True, text=True, timeout=120)


def test_cli_summary_json_schema_and_torchvision_counts():
    proc = run_cli("summary", "resnet18", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"arch", "input_size", "layers", "total_params", "total_macs", "depth"} <= set(data)
    assert data["total_params"] == sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert data["depth"] == 18 and data["input_size"] == [224, 224]
    row = {r["name"]: r for r in data["layers"]}["layer2.0.downsample.0"]
    assert set(row) == {"name", "type", "output_shape", "params", "macs", "receptive_field"}
    assert row["output_shape"] == [128, 28, 28] and row["type"] == "Conv2d 1×1 s2"


def test_cli_summary_table_and_errors():
    proc = run_cli("summary", "resnet34", "--depth", "2", "--input-size", "300x200")
    assert proc.returncode == 0, proc.stderr
    assert "resnet34: input 1×3×300×200" in proc.stdout and "layer4.2" in proc.stdout
    bad = run_cli("summary", "resnet19")
    assert bad.returncode == 1 and "did you mean resnet18" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("summary", "resnet18", "--input-size", "abc")
    assert bad.returncode == 2 and "--input-size" in bad.stderr


def test_depth_is_bounded_by_the_deepest_layer_name():
    every = summarize("resnet18")
    assert summarize("resnet18", depth=4).layers == every.layers  # layer1.0.downsample.0 has 4 parts
    for bad in (5, -1, True, 2.0):
        with pytest.raises(ValueError, match="depth must be"):
            summarize("resnet18", depth=bad)
    with pytest.raises(ValueError, match="between 0 and 4 for resnet18"):
        summarize("resnet18", depth=5)
    # the command accepts any depth: deeper than the model shows every layer, as --depth 4 does
    every_row = run_cli("summary", "resnet18", "--depth", "4")
    for deeper in ("5", "10"):
        proc = run_cli("summary", "resnet18", "--depth", deeper)
        assert proc.returncode == 0 and proc.stdout == every_row.stdout, proc.stderr
    proc = run_cli("summary", "resnet18", "--depth", "-1")
    assert proc.returncode == 2 and "--depth" in proc.stderr and "Traceback" not in proc.stderr


def test_depth_zero_is_the_whole_model_in_one_row():
    """As torchinfo's depth 0: one row, the model's totals and its output (torchvision: 1000 logits)."""
    one = summarize("resnet18", depth=0)
    every = summarize("resnet18")
    assert len(one.layers) == 1
    row = one.layers[0]
    assert row.name == "model" and row.output_shape == (1000,)
    assert row.params == 11_689_512 == sum(r.params for r in every.layers)  # torchvision's published count
    assert row.macs == sum(r.macs for r in every.layers) and row.receptive_field == every.layers[-1].receptive_field
    proc = run_cli("summary", "resnet18", "--depth", "0")
    assert proc.returncode == 0 and "ResNet" in proc.stdout and "Traceback" not in proc.stderr


def test_totals_use_si_prefixes_up_to_peta():
    from npresnet.summary.formats import si

    cases = {
        999: "999",
        1000: "1.00 K",
        1_814_073_344: "1.81 G",
        361_440 * 10**9: "361.44 T",
        2_500 * 10**12: "2.50 P",
        10**18: "1000.00 P",
    }
    assert {n: si(n) for n in cases} == cases
    result = summarize("resnet152", 1024, batch=4000)
    assert result.total_macs > 10**14
    assert f"Total MACs: {result.total_macs / 1e12:.2f} T (" in format_table(result)
