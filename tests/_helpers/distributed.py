"""What the embed tests share: a seeded ResNet-18 saved as ``.pth``, ~200 small images (5 unreadable), a client.

Small on purpose (CI has 2 cores): images of at most 48×48 px, resized to 40 and cropped to 32,
ResNet-18 with 10 classes. The fixtures are module-scoped; a test module takes them with
``from _helpers.distributed import images, torch_model`` (each module builds its own).
The importing module has already skipped itself when torch, Dask, Zarr or pyarrow is missing.
"""

import os
from pathlib import Path

import numpy
import pytest

from _helpers.images import huge_png_header, make_image
from _torchvision import torchvision_resnet
from npresnet.distributed import embed
from npresnet.distributed.cluster import connect

RESIZE, CROP, TOP, CLASSES = 40, 32, 3, 10
SIZE_ARGS = dict(resize_size=RESIZE, crop_size=CROP)
NOWHERE = "tcp://127.0.0.1:9"  # a scheduler address that refuses: any attempt to use it fails the test
ROWS = 4  # images per chunk of the small outputs built by :func:`run`


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory):
    """A seeded torchvision ResNet-18 with 10 classes, saved as .pth; returns (model, path)."""
    import torch

    model = torchvision_resnet("resnet18", seed=3, num_classes=CLASSES)
    with torch.no_grad():
        model.fc.weight.mul_(20)  # spread the logits so the top-K order is well defined
    path = tmp_path_factory.mktemp("weights") / "resnet18-10.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """~200 small generated images in several modes and formats, with 5 unreadable files among them."""
    folder = tmp_path_factory.mktemp("images")
    rng = numpy.random.default_rng(0)
    modes = [("RGB", "png"), ("RGB", "jpg"), ("L", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "jpg")]
    paths = []
    for i in range(196):
        mode, ext = modes[i % len(modes)]
        size = (int(rng.integers(20, 49)), int(rng.integers(20, 49)))
        paths.append(str(make_image(folder / f"img{i:03d}.{ext}", mode, size, rng)))
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(Path(paths[1]).read_bytes()[:200])
    text = folder / "notes.png"
    text.write_text("not an image")
    bomb = huge_png_header(folder / "bomb.png", 30000, 30000)
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    bad = [str(folder / "missing.jpg"), str(truncated), str(text), str(bomb), str(empty)]
    for position, path in zip((0, 37, 38, 120, 195), bad):  # first row, neighbours, middle, end
        paths.insert(position, path)
    return paths, bad


@pytest.fixture(scope="module")
def client():
    with connect(n_workers=1, processes=False) as c:
        yield c


@pytest.fixture
def good(images):
    paths, bad = images
    return [p for p in paths if p not in bad][:12]  # 3 chunks of 4


def run(paths, weights, tmp, client, features="a.zarr", predictions="a.parquet", **kwargs):
    return embed(
        paths,
        "resnet18",
        weights,
        features=None if features is None else tmp / features,
        predictions=None if predictions is None else tmp / predictions,
        client=client,
        **{"top": 3, "batch_size": ROWS, **SIZE_ARGS, **kwargs},
    )


def leftovers(*outputs):
    return [
        os.path.join(root, f)
        for out in outputs
        for root, _d, files in os.walk(out)
        for f in files
        if f.endswith((".partial", ".tmp"))
    ]
