"""``npresnet fetch ARCH``: download torchvision's weights, verify them, cache them as .npz."""

from __future__ import annotations

import argparse

from .args import timeout
from .common import CommandError, Progress

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], archs: str) -> None:
    """Add the ``fetch`` subcommand to ``commands`` (``archs``: the names ``--arch`` accepts)."""
    p = commands.add_parser(
        "fetch",
        help="download torchvision's ImageNet weights, verify, cache as .npz, print the path",
        description="Download torchvision's published weights for ARCH, verify the SHA-256 prefix in the file "
        "name, convert to .npz in the cache directory ($NPRESNET_HOME, else the platform cache dir) "
        "and print its path. A cached file is reused. Nothing unverified is ever left under the "
        "final name.",
    )
    p.add_argument("arch", metavar="ARCH")
    p.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help="torchvision weights name: IMAGENET1K_V1 (default) or IMAGENET1K_V2 where published",
    )
    p.add_argument(
        "--dest",
        default=None,
        metavar="DIR",
        help="cache directory (default $NPRESNET_HOME or the platform's user cache dir)",
    )
    p.add_argument(
        "--url",
        default=None,
        metavar="BASE",
        help="base address of the .pth files (default $NPRESNET_WEIGHTS_URL or https://download.pytorch.org/models/)",
    )
    p.add_argument(
        "--timeout",
        type=timeout,
        default=30.0,
        metavar="SECONDS",
        help="network timeout per connection and read (default 30, at most 3600)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``npresnet fetch`` with the parsed ``args``; return the exit status."""
    from ..errors import WeightsError
    from ..fetch import FetchError, fetch

    progress = Progress("B")

    try:
        path = fetch(
            args.arch, variant=args.variant, dest=args.dest, base_url=args.url, timeout=args.timeout, progress=progress
        )
    except (FetchError, WeightsError, ValueError, OSError) as err:
        raise CommandError(err) from None
    finally:
        progress.close()
    print(path)
    return 0
