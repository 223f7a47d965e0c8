"""Regenerate the pictures under docs/images/ (README, Pictures page): ``python docs/make_pictures.py``.

Every picture is made by npresnet's own drawing code; none is edited by hand. The SVG and GIF
files are deterministic (tests/draw/test_windows.py regenerates them and compares the bytes); the
receptive-field PNG is drawn by matplotlib, whose bytes may change between its versions.

The receptive-field picture uses a synthetic image (shapes on a gradient, drawn below), so the
repository holds no third-party photograph.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"

# name -> (function of npresnet.draw, args, kwargs)
GEOMETRY = {
    "conv2d_5x5_k3_s2_p1.svg": ("conv2d", (5, 3), {"stride": 2, "padding": 1}),
    "conv2d_5x5_k3_s2_p1.gif": ("conv2d", (5, 3), {"stride": 2, "padding": 1}),
    "conv2d_7x7_k3_d2.gif": ("conv2d", (7, 3), {"dilation": 2}),
    "conv2d_1x1_grouped.svg": ("conv2d", (3, 1), {"groups": 2, "in_channels": 8, "out_channels": 4}),
    # input, kernel, stride, padding, output_padding
    "conv_transpose2d_3x3_k3_s2_p1_op1.gif": ("conv_transpose2d", (3, 3, 2, 1, 1), {}),
    "max_pool2d_5x5_k2_s2_ceil.svg": ("max_pool2d", (5, 2), {"stride": 2, "ceil_mode": True}),
}
RECEPTIVE_FIELD = "receptive_field_resnet18_layer3.1.png"


def synthetic_image(size: int = 256) -> numpy.ndarray:
    """An RGB uint8 (size, size, 3) picture: a colour gradient with a disc, a square and stripes."""
    y, x = numpy.mgrid[0:size, 0:size] / size
    rgb = numpy.stack([0.3 + 0.5 * x, 0.4 + 0.3 * y, 0.8 - 0.4 * x * y], axis=-1)
    disc = (x - 0.35) ** 2 + (y - 0.4) ** 2 < 0.04
    rgb[disc] = (0.9, 0.3, 0.2)
    rgb[(abs(x - 0.7) < 0.12) & (abs(y - 0.65) < 0.12)] = (0.15, 0.2, 0.25)
    rgb[(y > 0.85) & ((x * 20).astype(int) % 2 == 0)] = (1.0, 1.0, 0.9)
    return numpy.round(rgb * 255).astype(numpy.uint8)


def make_geometry(out_dir: Path) -> list[Path]:
    from npresnet import draw

    written = []
    for name, (function, args, kwargs) in GEOMETRY.items():
        path = out_dir / name
        draw.save(getattr(draw, function)(*args, **kwargs), path)
        written.append(path)
    return written


def make_receptive_field(out_dir: Path) -> Path:
    import npresnet
    from npresnet.draw.overlay import overlay
    from npresnet.draw.receptive_field import receptive_field
    from npresnet.imagenet import IMAGENET_MEAN, IMAGENET_STD

    rgb = synthetic_image(224)  # (224, 224, 3)
    mean, std = numpy.asarray(IMAGENET_MEAN), numpy.asarray(IMAGENET_STD)
    x = ((rgb / 255.0 - mean) / std).transpose(2, 0, 1)  # (3, 224, 224), normalised as preprocess does
    model = npresnet.resnet18(rng=0, dtype="float64")
    field = receptive_field(model, x, "layer3.1", (7, 7))
    path = out_dir / RECEPTIVE_FIELD
    overlay(rgb, field, path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help=f"directory (default {IMAGES})")
    parser.add_argument("--geometry-only", action="store_true", help="skip the receptive-field picture")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = make_geometry(args.out)
    if not args.geometry_only:
        written.append(make_receptive_field(args.out))
    for path in written:
        sys.stdout.write(f"{path} ({path.stat().st_size:,} bytes)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
