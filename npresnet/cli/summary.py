"""``npresnet summary ARCH``: the per-layer table of an architecture, from a shape-only pass."""

from __future__ import annotations

import argparse
import json

from .args import input_size, non_negative_int, positive_int
from .common import CommandError, check_output

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], archs: str) -> None:
    """Add the ``summary`` subcommand to ``commands`` (``archs``: the names ``--arch`` accepts)."""
    p = commands.add_parser(
        "summary",
        help="per-layer table: shapes, parameters, MACs, receptive fields (no weights needed)",
        description="Walk the real model with a shape-only pass and print, per layer: torchvision module name, "
        "type with kernel/stride/padding, output C@H×W, parameters, multiply-accumulates, and the "
        "receptive field (size / jump, in input pixels). Totals: parameters, MACs (FLOPs = 2 × MACs), "
        "peak activation memory of an inference pass, and the layer count as the paper gives it. "
        f"Architectures: {archs}.",
    )
    p.add_argument("arch", metavar="ARCH", help="architecture name, e.g. resnet18")
    p.add_argument(
        "--input-size",
        type=input_size,
        default=(224, 224),
        metavar="H[xW]",
        help="input height and width (default 224; e.g. 512, 300x200)",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        default=1,
        metavar="N",
        help="batch size N; MACs and memory are for the whole batch (default 1)",
    )
    p.add_argument(
        "--depth",
        type=non_negative_int,
        default=None,
        metavar="D",
        help="fold rows: 0 = the whole model, 1 = stem layers + stages, 2 = blocks, 3 = layers in blocks "
        "(shortcut folded), 4 or more = every layer (the default)",
    )
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument(
        "--maxpool-padding",
        type=int,
        choices=(0, 1),
        default=1,
        help="stem max pool padding: 1 as torchvision (default), 0 as many re-implementations",
    )
    p.add_argument(
        "--html",
        metavar="PATH",
        help="write the summary as one self-contained HTML page to PATH instead: the table, each layer's output "
        "shape to scale, the receptive field over depth, parameters and MACs per stage",
    )
    p.add_argument("--force", action="store_true", help="replace --html's file if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``npresnet summary`` with the parsed ``args``; return the exit status."""
    from ..models import ARCHITECTURES
    from ..summary import format_markdown, format_table, summarize
    from ..summary.rows import max_depth

    arch: str = args.arch
    depth: int | None = args.depth
    html: str | None = args.html
    if html is not None:
        check_output(html, "--html", args.force)
    if depth is not None and arch in ARCHITECTURES:  # deeper than the model: every layer
        deepest = max_depth(ARCHITECTURES[arch](init=False))
        depth = None if depth > deepest else depth
    try:
        result = summarize(arch, args.input_size, batch=args.batch, depth=depth, maxpool_padding=args.maxpool_padding)
    except ValueError as err:
        raise CommandError(err) from None
    if html is not None:
        from .._atomic import atomic_write
        from ..summary import format_html

        try:
            with atomic_write(html) as f:
                f.write(format_html(result).encode("utf-8"))
        except OSError as err:
            raise CommandError(f"cannot write {html}: {err.strerror or err}") from None
    elif args.format == "json":
        print(json.dumps(result.to_dict(), indent=1, ensure_ascii=False))
    elif args.format == "markdown":
        print(format_markdown(result))
    else:
        print(format_table(result))
    return 0
