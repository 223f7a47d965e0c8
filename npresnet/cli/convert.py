"""``npresnet convert SRC DST``: weights between .pth, .npz and .safetensors, written atomically."""

from __future__ import annotations

import argparse
import os
import sys

from .common import CommandError, check_arch, check_output

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], archs: str) -> None:
    """Add the ``convert`` subcommand to ``commands`` (``archs``: the names ``--arch`` accepts)."""
    p = commands.add_parser(
        "convert",
        help="convert weights between .pth, .npz and .safetensors",
        description="Read SRC (.pth read safely without PyTorch, .npz or .safetensors; the format is detected "
        "from the content) and write DST as .npz or .safetensors (from its suffix), atomically. "
        "SRC is never overwritten; an existing DST is replaced only with --force.",
    )
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help="check every key and shape against this architecture first; report all mismatches",
    )
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``npresnet convert`` with the parsed ``args``; return the exit status."""
    from ..errors import WeightsError
    from ..weights import load_weights, save_weights

    src: str = args.src
    dst: str = args.dst
    arch: str | None = args.arch
    if arch:
        check_arch(arch)
    for name, path in (("SRC", src), ("DST", dst)):
        if not path:
            raise CommandError(f"{name} is an empty file name")
    if os.path.splitext(dst)[1].lower() not in (".npz", ".safetensors"):
        raise CommandError(f"DST must end in .npz or .safetensors (npresnet never writes pickles), got {dst!r}")
    if not os.path.isfile(src):
        raise CommandError(f"{src}: no such file" if not os.path.exists(src) else f"{src}: not a regular file")
    check_output(dst, "DST", args.force, inputs=[src])
    try:
        state_dict = load_weights(src)
    except (WeightsError, OSError) as err:
        raise CommandError(f"cannot read {src}: {err}") from None
    if arch:
        from ..models.registry import fit_state_dict

        try:
            fit_state_dict(arch, state_dict, str(src))
        except (WeightsError, ValueError) as err:
            raise CommandError(f"{err}\nnothing was written") from None
    try:
        save_weights(state_dict, dst)
    except OSError as err:  # its file name is the temporary file's, which no longer exists: not shown
        raise CommandError(f"cannot write {dst}: {err.strerror or err}") from None
    except WeightsError as err:
        raise CommandError(f"cannot write {dst}: {err}") from None
    total = sum(int(v.size) for v in state_dict.values())
    print(f"wrote {dst}: {len(state_dict)} arrays, {total:,} values", file=sys.stderr)
    return 0
