"""Upper bounds on the sizes a user's input can ask for: one definition each.

``npresnet predict``, ``npresnet embed`` and :mod:`npresnet.preprocess` check against
these before any work starts, so a size accepted by one is accepted by the others. The
README's limits table lists them (a test compares it with this module).
"""

from __future__ import annotations

__all__ = ["MAX_PIXELS", "MAX_IMAGE_SIZE", "MAX_BATCH_SIZE", "MAX_ACTIVATION_BYTES", "MAX_TOP", "MAX_WORKERS_PER_CORE"]

MAX_PIXELS = 89_478_485
"""Pixels of an image, as read or after resizing: Pillow's default ``MAX_IMAGE_PIXELS``, 256 MiB as 8-bit RGB."""

MAX_IMAGE_SIZE = 4096
"""Largest ``resize_size`` and ``crop_size`` (``--resize-size``, ``--crop-size``)."""

MAX_BATCH_SIZE = 1024
"""Images per forward pass (``predict --batch-size``) or per task and output chunk (``embed --batch-size``)."""

MAX_ACTIVATION_BYTES = 2 * 2**30
"""Working memory of one forward pass, counted by :func:`npresnet.cli.common.activation_bytes`."""

MAX_TOP = 100_000
"""Classes per image (``--top``); ``predict`` also refuses more than the weights have."""

MAX_WORKERS_PER_CORE = 1
"""``embed --workers`` of a local cluster, per usable core: each worker runs one single-threaded task at a
time, so more workers than cores only compete for them (and each process costs its start-up and memory)."""
