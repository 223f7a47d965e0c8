"""``npresnet receptive-field ARCH IMAGE``: a unit's theoretical and effective receptive field on an image."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .args import image_size
from .common import CommandError, check_arch, check_output, load_model

if TYPE_CHECKING:
    from ..draw.receptive_field import Box, Field

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Show which pixels of an image one unit of a ResNet sees, computed two ways:

  theoretical  the box the layer's windows can reach, from the summary's receptive-field
               formulas (size and jump per layer); near the border part of it is padding;
  effective    |d unit / d input|, summed over the colour channels, computed with npresnet's
               own backward (batch norm in inference mode), drawn as a heat map.

The effective field is roughly Gaussian and covers a fraction of the theoretical one (Luo et
al., "Understanding the Effective Receptive Field in Deep Convolutional Neural Networks",
NeurIPS 2016). Without --weights the network is randomly initialised (--seed), which shows
that shape; with trained weights it is the real field. For a residual block (layerS.B) the
picture also shows the main path's and the shortcut's fields side by side.

The unit is the sum over the layer's channels at one position, or --channel C.
Layers: conv1, bn1, relu, maxpool, a stage layerS, or a block layerS.B.
The numbers are printed; --out also draws them (PNG; needs matplotlib, the viz extra); an
existing file is replaced only with --force, and never the image itself.
"""

_EPILOG = """examples:
  npresnet receptive-field resnet18 photo.jpg --layer layer3.1 --unit 7,7 --out rf.png
  npresnet receptive-field resnet50 photo.jpg --layer layer2 --unit 0,0 --weights resnet50.safetensors
"""


def unit(text: str) -> tuple[int, int]:
    """``Y,X`` (or ``YxX``) → ``(y, x)``: non-negative ints (the layer's output size checks their range)."""
    parts = text.replace("x", ",").split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected Y,X with non-negative integers, got {text!r}")
    return int(parts[0]), int(parts[1])


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], archs: str) -> None:
    """Add the ``receptive-field`` subcommand to ``commands`` (``archs``: the names ``--arch`` accepts)."""
    p = commands.add_parser(
        "receptive-field",
        help="a unit's theoretical and effective (gradient) receptive field on an image",
        description=_DESCRIPTION + f"Architectures: {archs}.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("arch", metavar="ARCH", help="architecture name, e.g. resnet18")
    p.add_argument("image", metavar="IMAGE", help="an image file (preprocessed as for classification)")
    p.add_argument("--layer", required=True, help="conv1, bn1, relu, maxpool, layerS or layerS.B (e.g. layer3.1)")
    p.add_argument("--unit", type=unit, required=True, metavar="Y,X", help="position in the layer's output")
    p.add_argument("--channel", type=int, default=None, metavar="C", help="one output channel (default: all)")
    p.add_argument("--weights", metavar="PATH", help="weights file (.pth, .safetensors, .npz); default: random")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation (default 0)")
    p.add_argument("--resize-size", type=image_size, default=256, metavar="N", help="shorter side (default 256)")
    p.add_argument("--crop-size", type=image_size, default=224, metavar="N", help="center crop (default 224)")
    p.add_argument("--out", metavar="PATH", help="write the picture (PNG) to PATH")
    p.add_argument("--force", action="store_true", help="replace --out's file if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``npresnet receptive-field`` with the parsed ``args``; return the exit status."""
    import numpy

    from ..draw.receptive_field import receptive_field
    from ..errors import ImageError
    from ..imagenet import IMAGENET_MEAN, IMAGENET_STD
    from ..models import ARCHITECTURES
    from ..preprocess import load_image, preprocess

    arch: str = args.arch
    out: str | None = args.out
    image: str = args.image
    crop_size: int = args.crop_size
    weights: str | None = args.weights
    check_arch(arch)
    if out is not None:
        if not str(out).lower().endswith(".png"):
            raise CommandError(f"--out: the picture is a PNG; its name must end in .png, got {out!r}")
        check_output(out, "--out", args.force, inputs=[image] + ([weights] if weights else []))
    _check_memory(arch, crop_size)
    try:
        x = preprocess(load_image(image, resize_size=args.resize_size), args.resize_size, crop_size)  # (3, crop, crop)
    except (ImageError, OSError, ValueError) as err:
        raise CommandError(f"{image}: {err}") from None
    if weights:
        model = load_model(arch, weights)
        model.to(dtype="float64")  # in place
    else:
        model = ARCHITECTURES[arch](rng=args.seed, dtype="float64")
    try:
        field = receptive_field(model, x, args.layer, args.unit, args.channel)
    except (ValueError, TypeError) as err:
        raise CommandError(err) from None
    _report(field)
    if out is not None:
        from ..draw.overlay import overlay

        mean, std = numpy.asarray(IMAGENET_MEAN)[:, None, None], numpy.asarray(IMAGENET_STD)[:, None, None]
        rgb = numpy.clip(numpy.round((x * std + mean) * 255), 0, 255).astype(numpy.uint8).transpose(1, 2, 0)
        try:
            overlay(rgb, field, out)
        except OSError as err:
            raise CommandError(f"cannot write {out}: {err.strerror or err}") from None
    return 0


def _check_memory(arch: str, crop_size: int) -> None:
    """Refuse, before any work, a crop whose two float64 passes need more than MAX_ACTIVATION_BYTES."""
    from ..limits import MAX_ACTIVATION_BYTES
    from ..summary import summarize
    from ..summary.working_memory import working_memory_bytes

    try:
        summary = summarize(arch, crop_size)
    except ValueError as err:  # a crop too small for the network
        raise CommandError(f"--crop-size {crop_size}: {err}") from None
    need = 4 * working_memory_bytes(summary)  # float32's figure, doubled for float64, for two passes
    if need > MAX_ACTIVATION_BYTES:
        raise CommandError(
            f"{arch} at {crop_size}×{crop_size} needs {need / 2**30:.1f} GiB of float64 activations here, more "
            f"than the {MAX_ACTIVATION_BYTES / 2**30:g} GiB limit; use a smaller --crop-size"
        )


def _box_text(box: Box) -> str:
    (y0, y1), (x0, x1) = box
    return f"rows {y0}..{y1}, columns {x0}..{x1} ({y1 - y0 + 1}×{x1 - x0 + 1} pixels)"


def _report(field: Field) -> None:
    from ..draw.overlay import effective_extent

    (cy, cx), (sy, sx) = effective_extent(field.gradient)
    (y0, y1), (x0, x1) = field.box
    print(f"{field.layer} unit {field.unit}" + ("" if field.channel is None else f", channel {field.channel}"))
    print(f"theoretical field: {_box_text(field.box)}")
    print(
        f"effective field: centre ({cy:.1f}, {cx:.1f}), standard deviation {sy:.1f}×{sx:.1f} pixels "
        f"(±2σ spans {4 * sy / (y1 - y0 + 1):.0%}×{4 * sx / (x1 - x0 + 1):.0%} of the theoretical size)"
    )
    if field.main_box is not None and field.shortcut_box is not None:  # a block's (set with field.main)
        print(f"main path: theoretical {_box_text(field.main_box)}")
        print(f"shortcut: theoretical {_box_text(field.shortcut_box)}")
