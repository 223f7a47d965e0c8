"""One error family: every error npresnet reports about a file, an image or a download is an ``NpresnetError``,
and also the builtin callers caught before the family existed."""

import numpy
import pytest

import npresnet
from npresnet.errors import FetchError, ImageError, NpresnetError, WeightsError


@pytest.mark.parametrize(
    "error,builtin", [(WeightsError, ValueError), (ImageError, ValueError), (FetchError, RuntimeError)]
)
def test_each_error_is_the_family_and_its_builtin(error, builtin):
    raised = error("message")
    assert isinstance(raised, NpresnetError) and isinstance(raised, builtin)
    with pytest.raises(NpresnetError, match="message"):
        raise raised
    with pytest.raises(builtin):
        raise error("again")
    assert not issubclass(NpresnetError, (ValueError, RuntimeError))  # the base promises no builtin
    assert getattr(npresnet, error.__name__) is error and error.__name__ in npresnet.__all__


def test_errors_stay_importable_where_they_were():
    import npresnet.fetch
    import npresnet.preprocess
    import npresnet.weights

    assert npresnet.fetch.FetchError is FetchError
    assert npresnet.preprocess.ImageError is ImageError
    assert npresnet.weights.WeightsError is WeightsError
    assert npresnet.NpresnetError is NpresnetError


def test_real_failures_raise_the_family(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(NpresnetError):
        npresnet.load_weights(bad)
    pytest.importorskip("PIL")
    from npresnet.preprocess import load_image

    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(NpresnetError, match="not an image"):
        load_image(text)
    with pytest.raises(NpresnetError, match="does not fit"):
        npresnet.resnet18(init=False).load_state_dict({"fc.weight": numpy.zeros((1000, 512), numpy.float32)})


@pytest.mark.parametrize("weights", [123, 1.5, b"resnet18.pth", ["resnet18.pth"]])
def test_weights_of_the_wrong_type_name_the_argument(weights):
    with pytest.raises(TypeError, match=rf"weights must be a path .* or a state dict .*got {type(weights).__name__}$"):
        npresnet.resnet18(weights=weights)


@pytest.mark.parametrize(
    "shape,hint",
    [
        ((224, 224, 3), r"one channels-last image\? use x\.transpose\(2, 0, 1\)\[None\]"),
        ((3, 224, 224), r"one image\? add the batch axis: x\[None\]"),
        ((2, 224, 224, 3), r"channels-last\? use x\.transpose\(0, 3, 1, 2\)"),
    ],
)
def test_image_shaped_inputs_get_a_hint(shape, hint):
    x = numpy.zeros(shape, numpy.float32)
    with pytest.raises(ValueError, match=hint):
        npresnet.resnet18(init=False)(x)
    fixed = eval(hint.split("use ")[-1].split(": ")[-1].replace("\\", ""), {"x": x})  # the hint's own fix works
    assert fixed.shape == (1 if len(shape) == 3 else 2, 3, 224, 224)
    assert npresnet.resnet18(init=False)(npresnet.nn.TensorSpec(fixed.shape)).shape[1] == 1000
