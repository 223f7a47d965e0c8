"""One error family: every error npresnet reports about a file, an image or a download is an ``NpresnetError``,
and also the builtin callers caught before the family existed."""
import numpy
import pytest

import npresnet
from npresnet.errors import FetchError, ImageError, NpresnetError, WeightsError


@pytest.mark.parametrize("error,builtin", [(WeightsError, ValueError), (ImageError, ValueError),
                                           (FetchError, RuntimeError)])
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
