"""What the commands share at run time: the error they report, checks of inputs and outputs, the progress bar."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._typing import PathLike
    from ..models import ResNet

__all__ = [
    "CommandError",
    "ProgressBar",
    "check_arch",
    "check_output",
    "load_model",
    "check_activation_memory",
    "Progress",
    "progress_bar",
]


STOPS_THE_COMMAND = "npresnet_stops_the_command"
"""The attribute that marks a command's own SIGINT handler, which SIGTERM calls too (see ``cli.main``)."""


class CommandError(Exception):
    """A failure to report on stderr as ``npresnet <cmd>: error: ...`` with exit status 1."""


class ProgressBar(Protocol):
    """What the commands use of the ``tqdm`` bar :func:`progress_bar` returns (tqdm ships no types)."""

    n: float
    total: float | None

    def update(self, n: float = 1) -> object:
        """Advance the bar by ``n``."""
        ...

    def close(self) -> None:
        """Remove the bar from the terminal."""
        ...

    def set_description(self, desc: str) -> None:
        """Show ``desc`` before the bar."""
        ...

    def set_postfix(self, *, refresh: bool = True, **values: str) -> None:
        """Show ``name=value`` pairs after the bar."""
        ...


def check_output(path: str, flag: str, force: bool, inputs: Iterable[PathLike] = ()) -> None:
    """Refuse, before any work, an output path whose writing would lose something the user did not offer.

    An existing file is replaced only with ``--force``; a directory, a FIFO, device or socket, or
    one of the command's own ``inputs`` (the same file under any name), never. The folder it goes
    in must exist.
    """
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise CommandError(f"{flag} {path}: no such directory {folder}")
    if not os.path.lexists(path):
        return
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise CommandError(f"{flag} {path} is the input {source}; refusing to overwrite it")
    if os.path.isdir(path):
        raise CommandError(f"{flag} {path} is a directory; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):  # a link to one counts too; a dangling link is replaced
        raise CommandError(f"{flag} {path} is a FIFO, device or socket, not a file; it is never replaced")
    if not force:
        raise CommandError(f"{flag} {path} exists; pass --force to replace it")


def check_arch(arch: str) -> str:
    """``arch`` if it names an architecture, else a CommandError with close names: checked before any file is read."""
    from ..models.registry import check_arch

    try:
        return check_arch(arch)
    except ValueError as err:
        raise CommandError(err) from None


def load_model(arch: str, path: PathLike) -> ResNet:
    """Build ``arch`` with the weights in ``path``, the classifier sized by the file."""
    from ..errors import WeightsError
    from ..models.registry import fit_state_dict
    from ..weights import load_weights

    check_arch(arch)
    if not path:
        raise CommandError("--weights: an empty file name")
    try:
        state_dict = load_weights(path)
    except (WeightsError, OSError) as err:
        raise CommandError(f"cannot read weights: {err}") from None
    try:
        return fit_state_dict(arch, state_dict, str(path))
    except WeightsError as err:
        raise CommandError(err) from None


def check_activation_memory(arch: str, crop_size: int, batch: int) -> None:
    """Refuse, before any work, a pass over more working memory than MAX_ACTIVATION_BYTES, naming the flags.

    :func:`npresnet.summary.working_memory.check_working_memory`, as a CommandError.
    """
    from ..summary.working_memory import check_working_memory

    try:
        check_working_memory(arch, crop_size, batch, batch_name="--batch-size", crop_name="--crop-size")
    except ValueError as err:
        raise CommandError(err) from None


def progress_bar(total: float | None, unit: str) -> ProgressBar | None:
    """Return a tqdm bar on stderr when it is a terminal and tqdm is installed, else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar: ProgressBar = tqdm(total=total, unit=unit, unit_scale=unit == "B", file=sys.stderr, leave=False)
    return bar


class Progress:
    """A ``progress(done, total)`` callback that opens its bar on the first report, when the total is known.

    ``total`` may be None (a download of unknown length). The bar is tested with ``is None``,
    never for truth: tqdm's ``__bool__`` raises TypeError when its total is None.
    """

    def __init__(self, unit: str) -> None:
        self._unit = unit
        self._opened = False
        self._bar: ProgressBar | None = None

    def __call__(self, done: int, total: int | None) -> None:
        """Show ``done`` of ``total`` (opening the bar on the first call)."""
        if not self._opened:
            self._opened = True
            self._bar = progress_bar(total, self._unit)
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        """Remove the bar, if one was opened."""
        if self._bar is not None:
            self._bar.close()
