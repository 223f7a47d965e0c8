"""The ``npresnet`` command and its subcommands.

``summary``, ``predict``, ``convert``, ``fetch``, ``train``, ``embed``, ``draw`` and ``receptive-field``.

One module per command, each with ``add_parser(commands, archs)`` and ``run(args)``;
:mod:`.args` holds the argument types and limits they share, :mod:`.common` the rest.
The only package of npresnet that prints. Exit status: 0 on success, 1 when the work
failed or some inputs were bad (the others were still processed), 2 for usage errors,
130 after Ctrl-C and 143 after SIGTERM (each after its ``finally`` blocks have run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from . import convert, draw, embed, fetch, predict, receptive_field, summary, train
from .args import arch_names
from .common import STOPS_THE_COMMAND, CommandError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType

__all__ = ["main", "build_parser"]

_EPILOG = """examples:
  npresnet summary resnet18
  npresnet summary resnet50 --input-size 300x200 --depth 2 --format markdown
  npresnet fetch resnet18
  npresnet predict cat.jpg dog.png --arch resnet18 --weights "$(npresnet fetch resnet18)"
  npresnet convert resnet18-f37072fd.pth resnet18.safetensors --arch resnet18
  npresnet train digits --out runs/digits
  npresnet draw conv2d --input 5x5 --kernel 3 --stride 2 --padding 1 --out conv.svg
  npresnet receptive-field resnet18 photo.jpg --layer layer3.1 --unit 7,7 --out rf.png
"""

_COMMANDS = (summary, predict, convert, fetch, train, embed, draw, receptive_field)  # in the order --help lists them


def build_parser() -> argparse.ArgumentParser:
    """Build the ``npresnet`` parser: one subcommand per module of this package."""
    parser = argparse.ArgumentParser(
        prog="npresnet",
        description="ResNet from first principles in NumPy: inspect architectures, classify images, "
        "convert and download torchvision weights — no PyTorch needed.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"npresnet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    archs = ", ".join(arch_names())
    for command in _COMMANDS:
        command.add_parser(commands, archs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: str = args.command
    run: Callable[[argparse.Namespace], int] = args.run  # each subcommand's ``run``
    terminated = [False]
    try:
        with _sigterm_as_interrupt(terminated):
            status = run(args)
            if sys.stdout is not None:  # None when fd 1 was closed
                sys.stdout.flush()  # a write error (a full disk, /dev/full) surfaces here, not at exit
        return status
    except CommandError as err:
        print(f"npresnet {command}: error: {err}", file=sys.stderr)
        return 1
    except ImportError as err:  # an optional dependency is missing; the message says what to install
        print(f"npresnet {command}: error: {err}", file=sys.stderr)
        return 1
    except MemoryError:  # the limits are checked first, but another process may hold the memory
        print(
            f"npresnet {command}: error: out of memory; free memory or ask for less work "
            "(fewer images at once, or smaller ones)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        if terminated[0]:
            print("terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
        _drop_stdout()
        return 141
    except OSError as err:  # what no command reports itself, e.g. stdout on a full disk: one line, no traceback
        _drop_stdout()
        print(f"npresnet {command}: error: {err}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _sigterm_as_interrupt(terminated: list[bool]) -> Iterator[None]:
    """Stop on SIGTERM as on Ctrl-C, so that every ``finally`` runs and no temporary file is left behind.

    By default SIGTERM ends the process at once: ``fetch`` stopped by ``kill`` or a job
    scheduler left its partial download in the cache. While the command runs, SIGTERM instead
    sets ``terminated[0]`` and raises KeyboardInterrupt, through embed's SIGINT handler while
    embed runs (it tears the cluster down quietly); a host program's own SIGINT handler is not
    called, since it may not stop the command. Later SIGTERMs are ignored, so that the cleanup
    they would interrupt completes (a scheduler's SIGKILL still ends it). A SIGTERM handler that
    is not the default (set by a program that calls :func:`main`), or a call outside the main
    thread, is left alone.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        terminated[0] = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # until the command returns: its cleanup runs whole
        on_sigint = signal.getsignal(signal.SIGINT)
        if callable(on_sigint) and getattr(on_sigint, STOPS_THE_COMMAND, False):  # embed's: a quiet cluster teardown
            on_sigint(signal.SIGINT, frame)  # raises KeyboardInterrupt, unless a Ctrl-C already did
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _drop_stdout() -> None:
    """Point stdout at the null device, so that the unwritable rest of its buffer is not retried at exit."""
    if sys.stdout is None:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
