"""``npresnet draw LAYER``: the windows of a convolution, transposed convolution or pooling as an SVG, GIF or APNG.

``conv_transpose2d`` is drawn as the convolution with the roles of input and output swapped:
a panel per *input* cell, showing the output cells it writes (see :mod:`npresnet.draw.windows`).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .common import CommandError, check_output

if TYPE_CHECKING:
    from ..draw import Windows

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Draw every window of a convolution or pooling layer on a small input: the padded border, the
input cells each output position reads (its taps), and the output grid. The windows come from
the layers' own geometry, and a configuration a layer refuses is refused with its message.

conv_transpose2d (torch's semantics and parameters, with --output-padding) is the adjoint of
the convolution that maps its output back to its input, so its picture is that convolution's with
the roles of input and output swapped: one panel per INPUT cell, showing the output cells it
writes (its kernel, scaled by its value), drawn in the output with its --padding border; writes
that land in that border are cropped. The output has (n-1)*stride - 2*padding +
dilation*(kernel-1) + output_padding + 1 cells per axis, and --output-padding must be smaller
than --stride or --dilation, as torch requires.

Formats, chosen by --out's suffix:
  .svg   one static picture: a panel per output position; each output cell links to its window;
         for conv2d and conv_transpose2d, the channel view: which C_in/groups input channels
         feed each output channel
  .gif   an animation stepping through the output positions
  .png   the same animation as an animated PNG (APNG)
Without --out the SVG is written to standard output; an existing --out file is replaced only
with --force.

Colours: blue taps read the input, orange taps the padding (zeros; -inf for max pooling), red
taps (ceil_mode) fall beyond the padding and are skipped; green is the output being computed
(for conv_transpose2d: blue taps write the output, orange ones are cropped, green is the input
cell being scattered).
"""

_EPILOG = """examples:
  npresnet draw conv2d --input 5x5 --kernel 3 --stride 2 --padding 1 --out conv.svg
  npresnet draw conv2d --input 7 --kernel 3 --dilation 2 --out dilated.gif
  npresnet draw conv2d --input 4 --kernel 1 --in-channels 8 --out-channels 4 --groups 2 --out grouped.svg
  npresnet draw conv_transpose2d --input 3 --kernel 3 --stride 2 --padding 1 --output-padding 1 --out up.svg
  npresnet draw max_pool2d --input 6 --kernel 3 --stride 2 --padding 1 --ceil-mode --out pool.png
"""


def int_pair(text: str) -> tuple[int, int]:
    """``3`` → (3, 3); ``3x2`` or ``3,2`` → (3, 2): non-negative ints (the layer checks their ranges)."""
    parts = text.lower().replace("×", "x").replace(",", "x").split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected N or NxM with non-negative integers, got {text!r}")
    values = [int(p) for p in parts]
    if any(v > 10**6 for v in values):
        raise argparse.ArgumentTypeError(f"at most 1,000,000 is accepted, got {text!r}")
    return values[0], values[-1]  # N stands for NxN


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], archs: str) -> None:
    """Add the ``draw`` subcommand to ``commands`` (``archs``: the names ``--arch`` accepts)."""
    p = commands.add_parser(
        "draw",
        help="draw the windows of conv2d, conv_transpose2d, max_pool2d or avg_pool2d (SVG, GIF, APNG)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "layer",
        choices=("conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d"),
        metavar="LAYER",
        help="conv2d, conv_transpose2d, max_pool2d or avg_pool2d",
    )
    p.add_argument("--input", type=int_pair, required=True, metavar="H[xW]", help="input height and width")
    p.add_argument("--kernel", type=int_pair, required=True, metavar="K[xK]", help="kernel_size")
    p.add_argument(
        "--stride",
        type=int_pair,
        default=None,
        metavar="S[xS]",
        help="stride (default 1 for the convolutions, the kernel size for pooling)",
    )
    p.add_argument("--padding", type=int_pair, default=(0, 0), metavar="P[xP]", help="padding on each side")
    p.add_argument("--dilation", type=int_pair, default=(1, 1), metavar="D[xD]", help="dilation (not avg_pool2d)")
    p.add_argument(
        "--output-padding",
        type=int_pair,
        default=(0, 0),
        metavar="P[xP]",
        help="conv_transpose2d: cells added at the output's bottom/right, smaller than stride or dilation",
    )
    p.add_argument("--groups", type=int, default=1, metavar="G", help="convolutions: groups (default 1)")
    p.add_argument("--in-channels", type=int, default=None, metavar="C", help="convolutions: C_in (default: groups)")
    p.add_argument("--out-channels", type=int, default=None, metavar="O", help="convolutions: C_out (default: groups)")
    p.add_argument("--ceil-mode", action="store_true", help="pooling: round the output size up, as ceil_mode=True")
    p.add_argument(
        "--no-count-include-pad",
        dest="count_include_pad",
        action="store_false",
        help="avg_pool2d: leave padding out of the divisor",
    )
    p.add_argument("--out", metavar="PATH", help="write to PATH (.svg, .gif or .png) instead of the SVG on stdout")
    p.add_argument("--force", action="store_true", help="replace --out's file if it exists")
    p.set_defaults(run=run)


def _refuse(layer: str, flag: str, value: object, default: object, layers: tuple[str, ...]) -> None:
    if value != default and layer not in layers:
        names = layers[0] if len(layers) == 1 else f"{', '.join(layers[:-1])} and {layers[-1]}"
        raise CommandError(f"{flag} applies to {names}, not {layer}")


def _windows(args: argparse.Namespace) -> Windows:
    from .. import draw

    layer: str = args.layer
    size: tuple[int, int] = args.input
    kernel: tuple[int, int] = args.kernel
    stride: tuple[int, int] | None = args.stride
    padding: tuple[int, int] = args.padding
    dilation: tuple[int, int] = args.dilation
    output_padding: tuple[int, int] = args.output_padding
    groups: int = args.groups
    in_channels: int | None = args.in_channels
    out_channels: int | None = args.out_channels
    ceil_mode: bool = args.ceil_mode
    count_include_pad: bool = args.count_include_pad
    convolutions = ("conv2d", "conv_transpose2d")
    _refuse(layer, "--groups", groups, 1, convolutions)
    _refuse(layer, "--in-channels", in_channels, None, convolutions)
    _refuse(layer, "--out-channels", out_channels, None, convolutions)
    _refuse(layer, "--output-padding", output_padding, (0, 0), ("conv_transpose2d",))
    _refuse(layer, "--ceil-mode", ceil_mode, False, ("max_pool2d", "avg_pool2d"))
    _refuse(layer, "--no-count-include-pad", count_include_pad, True, ("avg_pool2d",))
    _refuse(layer, "--dilation", dilation, (1, 1), ("conv2d", "conv_transpose2d", "max_pool2d"))
    if layer == "conv_transpose2d":
        return draw.conv_transpose2d(
            size, kernel, stride or 1, padding, output_padding, groups, dilation, in_channels, out_channels
        )
    if layer == "conv2d":
        return draw.conv2d(size, kernel, stride or 1, padding, dilation, groups, in_channels, out_channels)
    if layer == "max_pool2d":
        return draw.max_pool2d(size, kernel, stride, padding, dilation, ceil_mode)
    return draw.avg_pool2d(size, kernel, stride, padding, ceil_mode, count_include_pad)


def run(args: argparse.Namespace) -> int:
    """Run ``npresnet draw`` with the parsed ``args``; return the exit status."""
    from .. import draw

    if args.out is not None:
        check_output(args.out, "--out", args.force)
    try:
        windows = _windows(args)
    except (ValueError, TypeError) as err:
        raise CommandError(err) from None
    out: str | None = args.out
    if out is None:
        sys.stdout.write(draw.svg(windows))
        return 0
    try:
        draw.save(windows, out)
    except ValueError as err:
        raise CommandError(f"--out: {err}") from None
    except OSError as err:
        raise CommandError(f"cannot write {out}: {err.strerror or err}") from None
    return 0
