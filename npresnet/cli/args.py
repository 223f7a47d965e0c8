"""Argument types and limits that the ``npresnet`` commands share.

Each type is an ``argparse`` ``type=`` callable: it returns the parsed value or raises
``argparse.ArgumentTypeError``, which argparse reports as a usage error (exit status 2)
naming the flag.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..limits import (
    MAX_BATCH_SIZE,
    MAX_FETCH_TIMEOUT,
    MAX_IMAGE_SIZE,
    MAX_TOP,
    MAX_TRAIN_BATCH,
    MAX_TRAIN_EPOCHS,
    MAX_TRAIN_SIZE,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "positive_int",
    "non_negative_int",
    "int_up_to",
    "image_size",
    "batch_size",
    "top_k",
    "train_epochs",
    "train_size",
    "train_batch_size",
    "timeout",
    "input_size",
    "arch_names",
]


def arch_names() -> list[str]:
    """Return the architecture names ``--arch`` accepts, in the registry's order."""
    from ..models import ARCHITECTURES

    return list(ARCHITECTURES)


def positive_int(text: str) -> int:
    """Parse an argparse value: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Parse an argparse value: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def int_up_to(limit: int) -> Callable[[str], int]:
    """Return an argparse type: an integer from 1 to ``limit``."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"at most {limit:,} is accepted, got {value:,}")
        return value

    return parse


image_size = int_up_to(MAX_IMAGE_SIZE)  # --resize-size, --crop-size
batch_size = int_up_to(MAX_BATCH_SIZE)  # predict's and embed's --batch-size
top_k = int_up_to(MAX_TOP)  # --top
train_epochs = int_up_to(MAX_TRAIN_EPOCHS)  # train --epochs
train_size = int_up_to(MAX_TRAIN_SIZE)  # train --size (a multiple of 8, checked by TrainConfig)
train_batch_size = int_up_to(MAX_TRAIN_BATCH)  # train --batch-size (at least 2, checked by TrainConfig)


def timeout(text: str) -> float:
    """Parse an argparse value: seconds above 0 and at most :data:`npresnet.limits.MAX_FETCH_TIMEOUT`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= MAX_FETCH_TIMEOUT:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected seconds above 0 and at most {MAX_FETCH_TIMEOUT:g}, got {text}")
    return value


def input_size(text: str) -> tuple[int, int]:
    """Parse an argparse value: ``summary``'s input size (see :func:`npresnet.summary.parse_input_size`)."""
    from ..summary import parse_input_size

    try:
        return parse_input_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_preprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resize-size`` and ``--crop-size``, as ``predict`` and ``embed`` both take them (torchvision's preset)."""
    parser.add_argument(
        "--resize-size",
        type=image_size,
        default=256,
        metavar="S",
        help=f"shorter side after resizing (default 256; torchvision's V2 weights use 232; at most {MAX_IMAGE_SIZE})",
    )
    parser.add_argument(
        "--crop-size",
        type=image_size,
        default=224,
        metavar="S",
        help=f"side of the square center crop the network sees (default 224; at most {MAX_IMAGE_SIZE})",
    )
