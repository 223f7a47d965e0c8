"""Argument types and limits that the ``npresnet`` commands share.

Each type is an ``argparse`` ``type=`` callable: it returns the parsed value or raises
``argparse.ArgumentTypeError``, which argparse reports as a usage error (exit status 2)
naming the flag.
"""

from __future__ import annotations

import argparse

__all__ = [
    "MAX_BATCH_SIZE",
    "PREDICT_ACTIVATION_LIMIT",
    "positive_int",
    "int_up_to",
    "image_size",
    "timeout",
    "input_size",
    "arch_names",
]

# Upper bounds of flags that size work or memory (the image sizes are preprocess.MAX_SIZE,
# the timeout fetch.MAX_TIMEOUT).
MAX_BATCH_SIZE = 1024
PREDICT_ACTIVATION_LIMIT = 2 * 2**30  # bytes of activations of one forward pass, as `summary` counts them


def arch_names():
    from ..models import ARCHITECTURES

    return list(ARCHITECTURES)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_up_to(limit):
    """An argparse type: an integer from 1 to ``limit``."""

    def parse(text):
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"at most {limit:,} is accepted, got {value:,}")
        return value

    return parse


def image_size(text):
    from ..preprocess import MAX_SIZE

    return int_up_to(MAX_SIZE)(text)


def timeout(text):
    from ..fetch import MAX_TIMEOUT

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected seconds above 0 and at most {MAX_TIMEOUT:g}, got {text}")
    return value


def input_size(text):
    from ..summary import parse_input_size

    try:
        return parse_input_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
