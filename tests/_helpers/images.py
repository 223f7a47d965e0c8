"""Image files built for the tests: generated pictures in any Pillow mode, and a PNG decompression bomb."""

import struct
import zlib

import numpy
from PIL import Image


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


def huge_png_header(path, width, height):
    """A PNG whose header claims width×height pixels (the data is a stub): a decompression bomb."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )
    return path
