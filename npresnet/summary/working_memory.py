"""The working memory of an inference pass or a training step, and the limit ``predict``, ``embed``, ``train`` hold.

:func:`working_memory_bytes` adds one temporary to the peak activation memory of a summary
(:mod:`.memory`); :func:`check_working_memory` refuses, before any work, a pass that needs more
than :data:`npresnet.limits.MAX_ACTIVATION_BYTES`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..limits import MAX_ACTIVATION_BYTES
from .api import summarize

if TYPE_CHECKING:
    from .api import Summary

__all__ = ["working_memory_bytes", "check_working_memory", "largest_batch"]


def working_memory_bytes(summary: Summary, training: bool = False) -> int:
    """Working memory of one float32 inference pass, or training step, of ``summary``'s model and input.

    Inference: ``peak_activation_bytes`` counts the tensors alive at once; an operation may also
    hold one temporary of its output's size while it computes (batch norm's normalised values, for
    one), so the largest activation is added once. Training: every layer's output is held until the
    backward pass has used it, plus the gradients flowing into and out of the largest layer.
    ``summary`` is a :class:`npresnet.summary.Summary` of every layer (``depth=None``); weights, their
    gradients and the bounded im2col workspace are not counted. (Against ``tracemalloc``'s peak of
    one training step of ResNet-18 at 64×64, batch 32: 91 MiB counted, 98 MiB traced, which holds
    the parameters' gradients, up to 43 MiB, and the workspace too.)
    """
    itemsize = 4  # float32, the dtype predict, embed and train run in
    sizes = [math.prod(row.output_shape) * summary.batch * itemsize for row in summary.layers]
    if training:
        return sum(sizes) + 2 * max(sizes)
    return summary.peak_activation_bytes + max(sizes)


def check_working_memory(
    arch: str,
    crop_size: int,
    batch: int,
    *,
    batch_name: str = "batch_size",
    crop_name: str = "crop_size",
    training: bool = False,
) -> None:
    """Refuse, before any work, ``batch`` images of ``crop_size``² whose pass needs more than MAX_ACTIVATION_BYTES.

    Parameters
    ----------
    arch : str
        An architecture name, already checked.
    crop_size, batch : int
        The images' side and how many go through the network at once.
    batch_name, crop_name : str
        What the messages call the two (the CLI passes its flags).
    training : bool
        Count a training step (:func:`working_memory_bytes`) instead of an inference pass.

    Raises
    ------
    ValueError
        The crop is too small for the network, or the pass needs more than the limit; the message
        says which batch size fits.
    """
    try:
        summary = summarize(arch, crop_size, batch=batch)
    except ValueError as err:  # a crop too small for the network
        raise ValueError(f"{crop_name} {crop_size}: {err}") from None
    need = working_memory_bytes(summary, training)
    if need > MAX_ACTIVATION_BYTES:
        fits = largest_batch(arch, crop_size, batch, training=training)
        advice = f"use {batch_name} {fits} or less" if fits else f"use a smaller {crop_name}"
        raise ValueError(
            f"{arch} {'training' if training else 'on'} {batch} image(s) of {crop_size}×{crop_size} needs "
            f"{need / 2**30:.1f} GiB of activations, more than the {MAX_ACTIVATION_BYTES / 2**30:g} GiB limit; {advice}"
        )


def largest_batch(arch: str, crop_size: int, most: int, *, training: bool = False) -> int:
    """Return the largest batch, up to ``most``, whose pass of ``crop_size``² images fits MAX_ACTIVATION_BYTES.

    Every term of :func:`working_memory_bytes` is a sum of activations, each proportional to the
    batch, so one image's working memory divides the limit. Returns 0 if even one image does not fit.
    """
    one = working_memory_bytes(summarize(arch, crop_size, batch=1), training)
    return min(most, MAX_ACTIVATION_BYTES // one)
