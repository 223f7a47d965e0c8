"""Architectures by name (``npresnet.models.registry``) against torchvision: names, expected shapes, identification.

The oracle for every shape is torchvision's own model, built on the ``meta`` device
(shapes only, nothing allocated).
"""

import numpy
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import npresnet  # noqa: E402
from _torchvision import meta_resnet  # noqa: E402
from npresnet.models import (  # noqa: E402
    build_model,
    check_arch,
    describe_fit,
    expected_shapes,
    identify_architecture,
    match_architectures,
)
from npresnet.nn import state_dict_report  # noqa: E402

ARCHS = list(npresnet.ARCHITECTURES)


def torchvision_shapes(arch, **kwargs):
    return {k: tuple(v.shape) for k, v in meta_resnet(arch, **kwargs).state_dict().items()}


def zeros_like_shapes(shapes):
    """A state dict of that key set and shapes (float16 zeros: values do not matter here)."""
    return {
        k: numpy.zeros(s, numpy.int64 if k.endswith("num_batches_tracked") else numpy.float16)
        for k, s in shapes.items()
    }


def test_check_arch_suggests_close_names():
    assert check_arch("resnet50") == "resnet50"
    with pytest.raises(ValueError, match="did you mean resnet18"):
        check_arch("resnet19")
    with pytest.raises(ValueError, match=r"unknown architecture 'vgg16' \(known: resnet18, "):
        build_model("vgg16")
    with pytest.raises(ValueError, match="unknown architecture 123"):
        check_arch(123)


def test_build_model_is_uninitialised_unless_asked():
    model = build_model("resnet18", num_classes=10)
    assert model.fc.weight.shape == (10, 512) and not model.conv1.weight.any()
    assert build_model("resnet18", init=True, rng=0).conv1.weight.any()


@pytest.mark.parametrize("arch", ARCHS)
def test_expected_shapes_equal_torchvision_and_identify_it(arch):
    shapes = torchvision_shapes(arch)
    assert expected_shapes(arch) == shapes
    assert identify_architecture(shapes_as_arrays(shapes)) == arch
    ten_classes = torchvision_shapes(arch, num_classes=10)  # the classifier may have any size
    assert identify_architecture(shapes_as_arrays(ten_classes)) == arch


def shapes_as_arrays(shapes):
    """Objects with a ``.shape``, as identification only reads shapes (no memory for big models)."""
    return {k: numpy.broadcast_to(numpy.float32(0), s) for k, s in shapes.items()}


def test_expected_shapes_is_a_fresh_dict():
    first = expected_shapes("resnet18")
    first["conv1.weight"] = (1,)
    assert expected_shapes("resnet18")["conv1.weight"] == (64, 3, 7, 7)


def test_describe_fit_names_the_architecture_a_file_is_for():
    r34 = shapes_as_arrays(torchvision_shapes("resnet34"))
    assert describe_fit(r34, "resnet18") == "the file looks like resnet34 weights: every key and shape fits resnet34"
    best = match_architectures(r34)
    assert best[0] == ("resnet34", len(r34), len(r34))
    damaged = dict(r34)
    del damaged["layer4.2.bn2.running_var"]
    assert identify_architecture(damaged) is None
    assert describe_fit(damaged, "resnet34") == (
        f"it is closest to resnet34 itself ({len(r34) - 1} of {len(r34)} keys fit): a damaged or edited file?"
    )
    assert describe_fit(damaged, "resnet18").startswith(f"the closest architecture is resnet34 ({len(r34) - 1} of")
    assert describe_fit({"weight": numpy.zeros(3)}, "resnet18") == "it fits none of the ten architectures"


def test_report_of_a_large_misfit_is_summarised():
    r18, r34 = torchvision_shapes("resnet18"), torchvision_shapes("resnet34")
    model = npresnet.resnet18(init=False)
    unexpected = sorted(set(r34) - set(r18))
    n = len(unexpected)  # 96: the blocks ResNet-34 has beyond ResNet-18's
    with pytest.raises(npresnet.WeightsError) as info:
        model.load_state_dict(zeros_like_shapes(r34))
    message = str(info.value)
    assert f"({n} problem(s))" in message
    lines = message.splitlines()[1:]
    assert len(lines) == 9 and lines[-1].strip() == f"... and {n - 8} more unexpected keys ({n} in all)"
    assert all(line.strip().startswith("unexpected key: layer") for line in lines[:-1])
    assert state_dict_report([], unexpected, [], limit=None) == [f"unexpected key: {k}" for k in unexpected]
    few = state_dict_report(["a"], ["b"], ["c: shape"], limit=1)
    assert few == ["c: shape", "missing key: a", "unexpected key: b"]  # nothing to summarise


def test_weights_holding_nan_infinity_or_a_negative_variance_are_refused():
    """A predict on such weights printed 'nan%' for every class with exit status 0: they are refused instead."""
    from npresnet.models import fit_state_dict

    good = zeros_like_shapes(torchvision_shapes("resnet18", num_classes=3))
    good = {k: v.astype(numpy.float32) if v.dtype.kind == "f" else v for k, v in good.items()}
    good["bn1.running_var"][:] = 1.0
    assert fit_state_dict("resnet18", good).fc.out_features == 3
    for key, index, value, words in [
        ("fc.bias", 1, numpy.nan, "fc.bias: 1 NaN or infinite value(s)"),
        ("layer2.0.conv1.weight", (0, 0, 0, 0), -numpy.inf, "layer2.0.conv1.weight: 1 NaN or infinite"),
        ("bn1.running_var", 5, -1e-3, "bn1.running_var: 1 negative variance(s)"),
        ("bn1.running_var", 6, 1e39, "bn1.running_var: 1 NaN or infinite"),  # finite in float64, not as float32
    ]:
        bad = {k: v.copy() for k, v in good.items()}
        bad[key] = bad[key].astype(numpy.float64)
        bad[key][index] = value
        with pytest.raises(npresnet.WeightsError, match=r"w\.npz does not fit resnet18: 1 tensor\(s\)") as info:
            fit_state_dict("resnet18", bad, "w.npz")
        assert words in str(info.value) and "NaN" in str(info.value)
