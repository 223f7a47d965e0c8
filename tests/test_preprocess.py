"""Preprocessing equals torchvision's ImageNet preset, loaded as torchvision's loader loads."""
import struct
import zlib

import numpy
import pytest

PIL = pytest.importorskip("PIL")
torchvision = pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402
from torchvision.datasets.folder import pil_loader  # noqa: E402  torchvision's Image.open(f).convert("RGB")

from npresnet.preprocess import ImageError, load_and_preprocess, load_image, preprocess  # noqa: E402

PRESET = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()


def make_image(path, mode, size, rng):
    w, h = size
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=numpy.uint16))
    elif mode == "P":
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=numpy.uint8)).convert("P")
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        data = rng.integers(0, 256, (h, w, bands), dtype=numpy.uint8)
        image = Image.fromarray(data[..., 0] if bands == 1 else data, mode=None if bands > 1 else "L")
        image = image.convert(mode) if image.mode != mode else image
    image.save(path)
    return path


CASES = [
    ("RGB", (500, 375), "png"), ("RGB", (224, 224), "png"), ("RGB", (256, 300), "jpg"), ("L", (300, 200), "png"),
    ("LA", (120, 90), "png"), ("RGBA", (64, 400), "png"), ("P", (333, 257), "png"), ("CMYK", (280, 260), "jpg"),
    ("I;16", (260, 250), "png"), ("1", (257, 256), "png"), ("RGB", (1, 1), "png"), ("RGB", (2400, 1600), "jpg"),
]


@pytest.mark.parametrize("mode,size,ext", CASES)
def test_equals_torchvision_preset_on_files(tmp_path, mode, size, ext):
    rng = numpy.random.default_rng(zlib.crc32(repr((mode, size)).encode()))
    path = make_image(tmp_path / f"x.{ext}", mode, size, rng)
    ours = load_and_preprocess(path)
    theirs = PRESET(pil_loader(path)).numpy()
    assert ours.dtype == numpy.float32 and ours.shape == (3, 224, 224)
    numpy.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("resize,crop", [(232, 224), (256, 256), (64, 100)])
def test_other_sizes_equal_torchvision(resize, crop):
    from torchvision.transforms._presets import ImageClassification

    image = Image.fromarray(numpy.random.default_rng(0).integers(0, 256, (180, 300, 3), dtype=numpy.uint8))
    theirs = ImageClassification(crop_size=crop, resize_size=resize)(image).numpy()
    numpy.testing.assert_allclose(preprocess(image, resize, crop), theirs, rtol=0, atol=1e-6)


def huge_png_header(path, width, height):
    """A PNG whose header claims width×height pixels (the data is a stub): a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def test_bad_files_raise_image_error(tmp_path):
    rng = numpy.random.default_rng(0)
    good = make_image(tmp_path / "good.jpg", "RGB", (300, 300), rng)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    bomb = huge_png_header(tmp_path / "bomb.png", 20000, 20000)
    cases = {tmp_path / "missing.png": "no such file", truncated: "cannot decode", text: "not an image",
             tmp_path: "directory", bomb: "too large"}
    for path, message in cases.items():
        with pytest.raises(ImageError, match=message):
            load_image(path)


def test_preprocess_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        preprocess(Image.new("L", (10, 10)))
