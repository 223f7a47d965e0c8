"""What the commands share at run time: the error they report, the architecture check, the progress bar."""

from __future__ import annotations

import sys

__all__ = ["CommandError", "check_arch", "load_model", "progress_bar"]


class CommandError(Exception):
    """A failure to report on stderr as ``npresnet <cmd>: error: ...`` with exit status 1."""


def check_arch(arch):
    """``arch`` if it names an architecture, else a CommandError with close names: checked before any file is read."""
    from ..models import check_arch

    try:
        return check_arch(arch)
    except ValueError as err:
        raise CommandError(err) from None


def load_model(arch, path):
    """Build ``arch`` with the weights in ``path``, the classifier sized by the file."""
    from ..errors import WeightsError
    from ..models import fit_state_dict
    from ..weights import load_weights

    check_arch(arch)
    try:
        state_dict = load_weights(path)
    except (WeightsError, OSError) as err:
        raise CommandError(f"cannot read weights: {err}") from None
    try:
        return fit_state_dict(arch, state_dict, str(path))
    except WeightsError as err:
        raise CommandError(err) from None


def progress_bar(total, unit):
    """A tqdm bar on stderr when it is a terminal and tqdm is installed, else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, unit_scale=unit == "B", file=sys.stderr, leave=False)
