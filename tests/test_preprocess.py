"""Preprocessing equals torchvision's ImageNet preset, loaded as torchvision's loader loads."""

import io
import os
import struct
import time
import zlib
from unittest import mock

import numpy
import pytest

PIL = pytest.importorskip("PIL")
torchvision = pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402
from torchvision.datasets.folder import pil_loader  # noqa: E402  torchvision's Image.open(f).convert("RGB")

from _helpers.images import huge_png_header, make_image  # noqa: E402
from npresnet.preprocess import ImageError, load_and_preprocess, load_image, preprocess  # noqa: E402

PRESET = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
# torchvision and npresnet both compute (v/255 - mean)/std in float32 from the same uint8 pixels v
# (the same PIL resize and crop; a pixel one level off would differ by 1/255/std = 0.017). Each side
# rounds at most three times (v/255, or v·(1/255) with the reciprocal's rounding; the subtraction; the
# division), so with t = v/255 in [0, 1] each is within u (2t + |t - mean|)/std + u|y| = u (2t + 2|t - mean|)/std
# of the exact value: below 14.3u for ImageNet's statistics (at t = 1: (2 + 2·0.594)/0.224), and the
# two within 29u of each other (measured: bitwise equal with torch 2.x, which divides as npresnet does).
PIXEL_ATOL = 29 * 2.0**-24  # 1.7e-6


CASES = [
    ("RGB", (500, 375), "png"),
    ("RGB", (224, 224), "png"),
    ("RGB", (256, 300), "jpg"),
    ("L", (300, 200), "png"),
    ("LA", (120, 90), "png"),
    ("RGBA", (64, 400), "png"),
    ("P", (333, 257), "png"),
    ("CMYK", (280, 260), "jpg"),
    ("I;16", (260, 250), "png"),
    ("1", (257, 256), "png"),
    ("RGB", (1, 1), "png"),
    ("RGB", (2400, 1600), "jpg"),
]


@pytest.mark.parametrize("mode,size,ext", CASES)
def test_equals_torchvision_preset_on_files(tmp_path, mode, size, ext):
    rng = numpy.random.default_rng(zlib.crc32(repr((mode, size)).encode()))
    path = make_image(tmp_path / f"x.{ext}", mode, size, rng)
    ours = load_and_preprocess(path)
    theirs = PRESET(pil_loader(path)).numpy()
    assert ours.dtype == numpy.float32 and ours.shape == (3, 224, 224)
    numpy.testing.assert_allclose(ours, theirs, rtol=0, atol=PIXEL_ATOL)


@pytest.mark.parametrize("resize,crop", [(232, 224), (256, 256), (64, 100)])
def test_other_sizes_equal_torchvision(resize, crop):
    from torchvision.transforms._presets import ImageClassification

    image = Image.fromarray(numpy.random.default_rng(0).integers(0, 256, (180, 300, 3), dtype=numpy.uint8))
    theirs = ImageClassification(crop_size=crop, resize_size=resize)(image).numpy()
    numpy.testing.assert_allclose(preprocess(image, resize, crop), theirs, rtol=0, atol=PIXEL_ATOL)


def test_bad_files_raise_image_error(tmp_path):
    rng = numpy.random.default_rng(0)
    good = make_image(tmp_path / "good.jpg", "RGB", (300, 300), rng)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    bomb = huge_png_header(tmp_path / "bomb.png", 20000, 20000)
    cases = {
        tmp_path / "missing.png": "no such file",
        truncated: "cannot decode",
        text: "not an image",
        tmp_path: "directory",
        bomb: "too large",
    }
    for path, message in cases.items():
        with pytest.raises(ImageError, match=message):
            load_image(path)


def test_threads_leave_the_warning_filters_as_they_found_them(tmp_path):
    """load_image hides Pillow's bomb warning with catch_warnings, which swaps the process-wide
    filter list; without the lock, 8 threads left its "ignore" filter behind in 3 of 3 runs."""
    import threading
    import warnings

    path = make_image(tmp_path / "small.png", "RGB", (8, 8), numpy.random.default_rng(0))
    before = list(warnings.filters)
    failures = []

    def read_many():
        try:
            for _ in range(200):
                load_image(path)
        except Exception as err:  # pragma: no cover - reported below
            failures.append(err)

    threads = [threading.Thread(target=read_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert warnings.filters == before


def test_preprocess_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        preprocess(Image.new("L", (10, 10)))


def test_pixel_limit_replaces_pillows_bomb_warning(tmp_path):
    import warnings

    from npresnet.preprocess import MAX_PIXELS

    assert MAX_PIXELS == 89_478_485 and Image.MAX_IMAGE_PIXELS == MAX_PIXELS  # Pillow's default, left as it is
    over = huge_png_header(tmp_path / "100mp.png", 10000, 10000)  # 100 Mpx: Pillow alone would only warn
    under = huge_png_header(tmp_path / "81mp.png", 9000, 9000)  # under the limit: read, then found truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(
            ImageError,
            match=r"100mp\.png: image too large: 10000×10000 = 100,000,000 pixels, "
            r"more than the limit of 89,478,485",
        ):
            load_image(over)
        with pytest.raises(ImageError, match="cannot decode"):
            load_image(under)
        with pytest.raises(ImageError, match="too large"):
            load_image(under, max_pixels=80_000_000)
    assert [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS


def test_resize_and_crop_sizes_are_bounded_before_work(tmp_path):
    strip = Image.new("RGB", (100_000, 1))  # 300 kB of pixels; resized to a shorter side of 256: 25.6 Gpx
    with pytest.raises(ImageError, match=r"resizing 100000×1 to a shorter side of 256 gives 25600000×256"):
        preprocess(strip)
    strip.save(tmp_path / "strip.png")
    with pytest.raises(ImageError, match=r"strip\.png: resizing 100000×1"):
        load_and_preprocess(tmp_path / "strip.png")
    # ... refused from the header, before decoding: a strip within the pixel limit whose decode alone took 2 GB
    long = tmp_path / "long.png"
    Image.new("L", (1, 3_000_000)).save(long)  # 3 Mpx, resized to 256 × 768,000,000
    decoded = []
    real_convert = Image.Image.convert

    def convert(self, *args, **kwargs):
        decoded.append(self.size)
        return real_convert(self, *args, **kwargs)

    with mock.patch.object(Image.Image, "convert", convert):
        with pytest.raises(ImageError, match=r"long\.png: resizing 1×3000000 to a shorter side of 256"):
            load_and_preprocess(long)
        assert decoded == []
        with pytest.raises(ValueError, match="resize_size must be"):
            load_image(long, resize_size=4097)
        assert load_image(tmp_path / "strip.png", resize_size=None).size == (100_000, 1)
    image = Image.new("RGB", (64, 48))
    for kwargs in ({"resize_size": 100_000}, {"crop_size": 4097}, {"resize_size": 0}, {"crop_size": True}):
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be an int from 1 to 4096"):
            preprocess(image, **kwargs)
    assert preprocess(image, 4096, 8).shape == (3, 8, 8)  # the largest size is accepted


# ---------------------------------------------------------------- files that are not what they claim
def test_fifo_and_devices_are_refused_at_once(tmp_path):
    """A FIFO without a writer blocked ``open`` forever; a character device was read without end."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    start = time.monotonic()
    for path in (fifo, "/dev/zero", "/dev/null"):
        if not os.path.exists(path):
            continue
        with pytest.raises(ImageError, match="not a regular file"):
            load_image(path)
    assert time.monotonic() - start < 5


def test_files_above_the_size_cap_are_refused_before_reading(tmp_path, monkeypatch):
    import npresnet._imagefile as imagefile

    path = make_image(tmp_path / "x.png", "RGB", (40, 40), numpy.random.default_rng(0))
    monkeypatch.setattr(imagefile, "MAX_IMAGE_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(ImageError, match=rf"file too large: {path.stat().st_size:,} bytes, more than the limit"):
        load_image(path)
    monkeypatch.setattr(imagefile, "MAX_IMAGE_FILE_BYTES", path.stat().st_size)
    assert load_image(path).size == (40, 40)


def jpeg_segments(data):
    """(marker, bytes) of a JPEG up to EOI; a scan's bytes include its entropy-coded data."""
    import re

    segments, pos = [], 2
    while True:
        marker = data[pos + 1]
        if marker == 0xD9:
            return segments
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if marker == 0xDA:
            end = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(data, end).start()
        segments.append((marker, data[pos:end]))
        pos = end


def test_jpeg_scans_are_bounded_before_decoding(tmp_path):
    """A progressive JPEG's last scan repeated 2000 times: each costs a pass over the image."""
    from npresnet._imagefile import MAX_JPEG_SCANS, count_jpeg_scans

    rng = numpy.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=numpy.uint8))
    image.save(tmp_path / "progressive.jpg", progressive=True, quality=90)
    data = (tmp_path / "progressive.jpg").read_bytes()
    segments = jpeg_segments(data)
    scans = [s for m, s in segments if m == 0xDA]
    assert count_jpeg_scans(data, MAX_JPEG_SCANS) == len(scans) > 1  # the parser counts what was written
    numpy.testing.assert_allclose(  # a normal progressive file is read as torchvision reads it
        load_and_preprocess(tmp_path / "progressive.jpg"),
        PRESET(pil_loader(tmp_path / "progressive.jpg")).numpy(),
        rtol=0,
        atol=PIXEL_ATOL,
    )
    many = b"\xff\xd8" + b"".join(s for _, s in segments) + scans[-1] * 2000 + b"\xff\xd9"
    (tmp_path / "many.jpg").write_bytes(many)
    start = time.monotonic()
    with pytest.raises(ImageError, match=f"many.jpg: a JPEG with more than {MAX_JPEG_SCANS} scans"):
        load_image(tmp_path / "many.jpg")
    assert time.monotonic() - start < 5


def test_jpeg_scan_count_skips_thumbnails_and_stuffed_bytes():
    from npresnet._imagefile import count_jpeg_scans

    thumbnail = b"\xff\xd8" + b"\xff\xda\x00\x02" * 5 + b"\xff\xd9"  # SOS markers inside an APP1 payload
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(thumbnail)) + thumbnail
    scan = b"\xff\xda\x00\x02" + b"\x12\xff\x00\x34\xff\xd0\x56"  # entropy data: a stuffed 0xFF and a restart
    assert count_jpeg_scans(b"\xff\xd8" + app1 + scan * 3 + b"\xff\xd9" + scan * 9, 100) == 3


def png_bytes(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def ico_with(frame, claimed=16):
    entry = struct.pack("<BBBBHHII", claimed, claimed, 0, 0, 1, 32, len(frame), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + frame


def test_icons_are_held_to_the_pixel_limit_by_their_embedded_sizes(tmp_path):
    """The directory claimed 16×16 and Pillow decoded the embedded 1000×1000 PNG whatever max_pixels said."""
    small = tmp_path / "small.ico"
    small.write_bytes(ico_with(png_bytes(16, 16)))
    assert load_image(small, max_pixels=20_000).size == (16, 16)
    big = tmp_path / "big.ico"
    big.write_bytes(ico_with(png_bytes(1000, 1000)))
    with pytest.raises(ImageError, match=r"big\.ico: image too large: embeds a 1000×1000 = 1,000,000 pixel image"):
        load_image(big, max_pixels=20_000)
    dib = struct.pack("<IiiHHIIiiII", 40, 5000, 2 * 5000, 1, 32, 0, 0, 0, 0, 0, 0)  # a BMP frame, XOR + AND: 2× height
    (tmp_path / "dib.ico").write_bytes(ico_with(dib))
    with pytest.raises(ImageError, match=r"embeds a 5000×10000"):
        load_image(tmp_path / "dib.ico", max_pixels=20_000)

    png = png_bytes(1000, 1000)
    icns = b"icns" + struct.pack(">I", 8 + 8 + len(png)) + b"ic07" + struct.pack(">I", 8 + len(png)) + png
    (tmp_path / "big.icns").write_bytes(icns)
    with pytest.raises(ImageError, match=r"big\.icns: image too large: embeds a 1000×1000"):
        load_image(tmp_path / "big.icns", max_pixels=20_000)
