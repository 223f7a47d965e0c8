"""Public functions answer hostile arguments with a TypeError/ValueError naming the argument.

Never a ZeroDivisionError, AttributeError, MemoryError or a silently accepted value that
produces NaN learning rates, infinite pixels or an empty answer.
"""

import os
import time

import numpy as np
import pytest

import npresnet
from npresnet.models.resnet import BasicBlock, Bottleneck, ResNet, _parameter_count
from npresnet.nn.layers import MAX_PARAMETER_BYTES
from npresnet.optim import SGD, CosineAnnealingLR, StepLR
from npresnet.predictions import softmax_topk
from npresnet.preprocess import load_image, preprocess

NAN, INF = float("nan"), float("inf")


def tiny_model():
    return npresnet.nn.Linear(2, 1, rng=0, dtype=np.float64)


# ---------------------------------------------------------------- softmax_topk
@pytest.mark.parametrize("k", [-1, 0, 6, 2**62])
def test_topk_k_out_of_range(k):
    with pytest.raises(ValueError, match=r"k must be an int from 1 to 5"):
        softmax_topk(np.zeros((2, 5)), k)


@pytest.mark.parametrize("k", [1.5, True, "3", None])
def test_topk_k_not_an_int(k):
    with pytest.raises(TypeError, match="k must be an int"):
        softmax_topk(np.zeros((2, 5)), k)


@pytest.mark.parametrize("shape", [(5,), (2, 0), (1, 2, 3)])
def test_topk_logits_must_be_rows_of_classes(shape):
    with pytest.raises(ValueError, match=r"logits must have shape \(B, classes\)"):
        softmax_topk(np.zeros(shape), 1)


def test_topk_accepts_every_k_from_1_to_classes():
    logits = np.array([[0.0, 2.0, 1.0]])
    for k in (1, 2, 3):
        top, probs = softmax_topk(logits, k)
        assert top.tolist() == [[1, 2, 0][:k]]
        np.testing.assert_allclose(probs, (np.exp([2.0, 1.0, 0.0]) / np.exp([0.0, 1.0, 2.0]).sum())[None, :k])


# ---------------------------------------------------------------- optimiser and schedules
@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay", "dampening"])
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_sgd_refuses_non_finite(name, value):
    kwargs = {"lr": 0.1, name: value}
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        SGD(tiny_model(), **kwargs)


@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay"])
def test_sgd_refuses_negative_as_torch(name):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError):  # torch refuses the same values
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], **{"lr": 0.1, name: -0.5})
    with pytest.raises(ValueError, match=f"{name} must be >= 0"):
        SGD(tiny_model(), **{"lr": 0.1, name: -0.5})


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"lr": True}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"lr": 0.1, "nesterov": 1}, "nesterov"),
        ({"lr": 0.1, "momentum": None}, "momentum"),
    ],
)
def test_sgd_refuses_wrong_types(kwargs, name):
    with pytest.raises(TypeError, match=f"{name} must be a"):
        SGD(tiny_model(), **kwargs)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"step_size": 1, "gamma": NAN}, ValueError, "gamma must be a finite number"),
        ({"step_size": 1, "gamma": INF}, ValueError, "gamma must be a finite number"),
        ({"step_size": 1, "gamma": -0.5}, ValueError, "gamma must be >= 0"),
        ({"step_size": 0}, ValueError, "step_size must be an int >= 1"),
        ({"step_size": True}, TypeError, "step_size must be an int"),
        ({"step_size": 1.5}, TypeError, "step_size must be an int"),
    ],
)
def test_steplr_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        StepLR(SGD(tiny_model(), lr=0.1), **kwargs)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"T_max": 3, "eta_min": NAN}, ValueError, "eta_min must be a finite number"),
        ({"T_max": 3, "eta_min": -1.0}, ValueError, "eta_min must be >= 0"),
        ({"T_max": 0}, ValueError, "T_max must be an int >= 1"),
        ({"T_max": 2.0}, TypeError, "T_max must be an int"),
    ],
)
def test_cosine_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        CosineAnnealingLR(SGD(tiny_model(), lr=0.1), **kwargs)


def test_schedules_need_an_optimiser():
    for schedule, kwargs in ((StepLR, {"step_size": 1}), (CosineAnnealingLR, {"T_max": 1})):
        with pytest.raises(TypeError, match="optimizer must be an npresnet.optim.SGD"):
            schedule(None, **kwargs)


def test_a_growing_step_schedule_stops_before_the_rate_overflows():
    optimizer = SGD(tiny_model(), lr=1.0)
    schedule = StepLR(optimizer, step_size=1, gamma=1e200)
    schedule.step()
    assert optimizer.lr == 1e200
    with pytest.raises(ValueError, match="learning rate at epoch 2 overflows"):
        schedule.step()
    assert optimizer.lr == 1e200 and schedule.last_epoch == 1  # unchanged by the refused step


# ---------------------------------------------------------------- capture_intermediates
@pytest.mark.parametrize("names,error", [([""], ValueError), (["fc", 3], ValueError), ("fc", TypeError)])
def test_capture_names(names, error):
    model = npresnet.nn.Sequential(npresnet.nn.Linear(2, 1, rng=0))
    with pytest.raises(error, match="names must be"):
        npresnet.capture_intermediates(model, np.zeros((1, 2), np.float32), names=names)


def test_capture_needs_a_module():
    with pytest.raises(TypeError, match="model must be an npresnet Module"):
        npresnet.capture_intermediates(lambda x: x, np.zeros((1, 2), np.float32))


# ---------------------------------------------------------------- models and layers
@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"groups": 0}, ValueError, "groups must be an int >= 1"),
        ({"width_per_group": 0}, ValueError, "width_per_group must be an int >= 1"),
        ({"width_per_group": 2.0}, TypeError, "width_per_group must be an int"),
        ({"num_classes": 0}, ValueError, "num_classes must be an int >= 1"),
        ({"num_classes": -3}, ValueError, "num_classes must be an int >= 1"),
        ({"num_classes": True}, TypeError, "num_classes must be an int"),
    ],
)
def test_resnet_counts(kwargs, error, message):
    with pytest.raises(error, match=message):
        npresnet.resnet50(init=False, **kwargs)


def test_basic_block_models_refuse_groups():
    with pytest.raises(ValueError, match="BasicBlock only supports groups=1"):
        npresnet.resnet18(groups=2, init=False)


@pytest.mark.parametrize(
    "build",
    [
        lambda: npresnet.resnet18(num_classes=10**9),  # fc alone: 513e9 floats
        lambda: npresnet.resnet50(width_per_group=10**6, init=False),
        lambda: ResNet(BasicBlock, [10**9, 1, 1, 1], init=False),  # a billion blocks
    ],
)
def test_models_too_large_are_refused_before_allocating(build):
    start = time.monotonic()
    with pytest.raises(ValueError, match=f"more than the limit of {MAX_PARAMETER_BYTES:,} bytes"):
        build()
    assert time.monotonic() - start < 5  # no block was built


def test_the_largest_torchvision_model_fits_the_limit_in_float64():
    count = _parameter_count(Bottleneck, [3, 4, 23, 3], 1000, 1, 128)  # wide_resnet101_2
    assert 8 * count < MAX_PARAMETER_BYTES


@pytest.mark.parametrize(
    "block,layers,kwargs",
    [(None, None, {"arch": arch}) for arch in npresnet.ARCHITECTURES]
    + [
        (Bottleneck, [1, 2, 1, 3], {"num_classes": 3, "groups": 3, "width_per_group": 5}),
        (Bottleneck, [2, 1, 1, 1], {"replace_stride_with_dilation": [True, False, True], "width_per_group": 1}),
        (BasicBlock, [1, 1, 2, 1], {"num_classes": 1}),
    ],
)
def test_parameter_count_equals_the_built_state_dict(block, layers, kwargs):
    """The count the memory check uses, against the floats the built model actually holds."""
    arch = kwargs.pop("arch", None)
    model = npresnet.ARCHITECTURES[arch](init=False) if arch else ResNet(block, layers, init=False, **kwargs)
    stages = [len(model.layer1), len(model.layer2), len(model.layer3), len(model.layer4)]
    held = sum(v.size for v in model.state_dict().values() if v.dtype.kind == "f")
    expected = _parameter_count(type(model.layer1[0]), stages, model.fc.out_features, model.groups, model.base_width)
    assert held == expected


@pytest.mark.parametrize(
    "build,error,message",
    [
        (lambda: npresnet.nn.Conv2d(4, 4, 3, groups=0), ValueError, "groups must be an int >= 1"),
        (lambda: npresnet.nn.Conv2d(0, 4, 3), ValueError, "in_channels must be an int >= 1"),
        (lambda: npresnet.nn.Conv2d(4, 4.0, 3), TypeError, "out_channels must be an int"),
        (lambda: npresnet.nn.Conv2d(10**6, 10**6, 3, init=False), ValueError, "more than the limit"),
        (lambda: npresnet.nn.Linear(-1, 3), ValueError, "in_features must be an int >= 0"),
        (lambda: npresnet.nn.Linear(10**6, 10**6, init=False), ValueError, "more than the limit"),
        (lambda: npresnet.nn.BatchNorm2d(4, eps=NAN), ValueError, "eps must be a finite number"),
        (lambda: npresnet.nn.BatchNorm2d(4, momentum=2.0), ValueError, "momentum must be from 0 to 1"),
        (lambda: npresnet.nn.BatchNorm2d(0), ValueError, "num_features must be an int >= 1"),
    ],
)
def test_layer_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_linear_without_inputs_is_built_as_torch_builds_it():
    """torch's Linear(0, 3) draws its bias from U(0, 0) (fan-in 0); no ZeroDivisionError."""
    layer = npresnet.nn.Linear(0, 3, rng=0)
    assert layer.weight.shape == (3, 0) and layer.bias.tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------- images
def test_preprocess_arguments():
    Image = pytest.importorskip("PIL.Image")
    image = Image.new("RGB", (10, 10))
    cases = [
        ({"std": (0.229, 0, 0.225)}, ValueError, "std must be 3 non-zero numbers"),
        ({"std": (1e-50, 1, 1)}, ValueError, "std must be 3 non-zero numbers"),  # 0 in float32
        ({"std": (NAN, 1, 1)}, ValueError, "std must be 3 numbers finite in float32"),
        ({"mean": (0.5, INF, 0.5)}, ValueError, "mean must be 3 numbers finite in float32"),
        ({"mean": (0.5, 1e39, 0.5)}, ValueError, "mean must be 3 numbers finite in float32"),
        ({"mean": (0.5, 0.5)}, ValueError, "mean must be 3 numbers"),
        ({"mean": "abc"}, ValueError, "mean must be 3 numbers"),
        ({"mean": (0.5, True, 0.5)}, TypeError, "mean must be 3 real numbers"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            preprocess(image, **kwargs)
    for size in ((0, 10), (10, 0)):
        with pytest.raises(ValueError, match=r"image has no pixels: \d+×\d+"):
            preprocess(Image.new("RGB", size))
    with pytest.raises(TypeError, match="image must be a PIL.Image.Image"):
        preprocess(np.zeros((10, 10, 3), np.uint8))


@pytest.mark.parametrize("max_pixels,error", [(NAN, TypeError), (1.5, TypeError), (True, TypeError), (0, ValueError)])
def test_load_image_max_pixels(tmp_path, max_pixels, error):
    Image = pytest.importorskip("PIL.Image")
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    with pytest.raises(error, match="max_pixels must be an int"):
        load_image(tmp_path / "x.png", max_pixels=max_pixels)


def test_load_image_does_not_take_an_int_for_a_descriptor(tmp_path):
    pytest.importorskip("PIL")
    path = tmp_path / "x.bin"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
            load_image(fd)
        assert os.read(fd, 4) == b"data"  # still open: load_image neither read nor closed it
    finally:
        os.close(fd)


# ---------------------------------------------------------------- property: hostile numbers anywhere
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE = st.sampled_from([0, -1, -(2**62), 2**62, 10**400, NAN, INF, -INF, True, False, 1.5, -0.0, None, "1", 1e-300])


def _calls(tmp_path):
    """Each public function of preprocess, predictions, optim, fetch, the layers and models, with one
    numeric argument left open: ``name -> call(value)``."""
    from PIL import Image

    from npresnet.fetch import fetch

    image = Image.new("RGB", (12, 10))
    png = tmp_path / "x.png"
    image.save(png)
    model = tiny_model()
    return {
        "softmax_topk.k": lambda v: softmax_topk(np.zeros((2, 5)), v),
        "SGD.lr": lambda v: SGD(model, lr=v),
        "SGD.momentum": lambda v: SGD(model, lr=0.1, momentum=v),
        "SGD.dampening": lambda v: SGD(model, lr=0.1, momentum=0.9, dampening=v),
        "SGD.weight_decay": lambda v: SGD(model, lr=0.1, weight_decay=v),
        "StepLR.step_size": lambda v: StepLR(SGD(model, lr=0.1), v).step(),
        "StepLR.gamma": lambda v: StepLR(SGD(model, lr=0.1), 1, gamma=v).step(),
        "CosineAnnealingLR.T_max": lambda v: CosineAnnealingLR(SGD(model, lr=0.1), v).step(),
        "CosineAnnealingLR.eta_min": lambda v: CosineAnnealingLR(SGD(model, lr=0.1), 2, eta_min=v).step(),
        "preprocess.resize_size": lambda v: preprocess(image, resize_size=v, crop_size=8),
        "preprocess.crop_size": lambda v: preprocess(image, resize_size=16, crop_size=v),
        "preprocess.mean": lambda v: preprocess(image, 16, 8, mean=(0.5, v, 0.5)),
        "preprocess.std": lambda v: preprocess(image, 16, 8, std=(0.5, 0.5, v)),
        "load_image.max_pixels": lambda v: load_image(png, max_pixels=v),
        "fetch.timeout": lambda v: fetch("resnet18", dest=tmp_path / "cache", base_url="http://127.0.0.1:9", timeout=v),
        "resnet18.num_classes": lambda v: npresnet.resnet18(num_classes=v, init=False),
        "resnext50.groups": lambda v: npresnet.resnet50(groups=v, width_per_group=4, init=False),
        "resnet50.width_per_group": lambda v: npresnet.resnet50(width_per_group=v, init=False),
        "ResNet.layers": lambda v: ResNet(BasicBlock, [1, v, 1, 1], init=False),
        "Conv2d.out_channels": lambda v: npresnet.nn.Conv2d(2, v, 1, init=False),
        "Conv2d.groups": lambda v: npresnet.nn.Conv2d(4, 4, 1, groups=v, init=False),
        "Linear.out_features": lambda v: npresnet.nn.Linear(3, v, init=False),
        "BatchNorm2d.num_features": lambda v: npresnet.nn.BatchNorm2d(v),
        "BatchNorm2d.eps": lambda v: npresnet.nn.BatchNorm2d(2, eps=v),
        "BatchNorm2d.momentum": lambda v: npresnet.nn.BatchNorm2d(2, momentum=v),
    }


def test_hostile_numbers_get_the_documented_exceptions_only(tmp_path):
    """Every (function, argument) pair meets every hostile value: the answer is a result or a
    TypeError/ValueError/NpresnetError with a one-line message naming the argument."""
    pytest.importorskip("PIL")
    calls = _calls(tmp_path)

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(st.sampled_from(sorted(calls)), HOSTILE)
    def check(name, value):
        try:
            calls[name](value)
        except (TypeError, ValueError, npresnet.NpresnetError) as err:
            message = str(err)
            assert "\n" not in message, (name, value, message)
            argument = name.rsplit(".", 1)[1]
            if not isinstance(err, npresnet.FetchError):  # a refused connection names the URL instead
                assert argument in message or argument.rstrip("s") in message, (name, value, message)

    check()
