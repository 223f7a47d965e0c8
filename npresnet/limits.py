"""Upper bounds on the sizes a user's input can ask for: one definition each.

``npresnet predict``, ``npresnet embed``, :mod:`npresnet.preprocess`, :mod:`npresnet.fetch`
and the layers check against these before any work starts, so a size accepted by one is
accepted by the others. The README's limits table lists them (a test compares it with this
module). Weight files have their own, in :mod:`npresnet.weights.limits`.
"""

from __future__ import annotations

__all__ = [
    "MAX_PIXELS",
    "MAX_IMAGE_SIZE",
    "MAX_BATCH_SIZE",
    "MAX_ACTIVATION_BYTES",
    "MAX_TOP",
    "MAX_WORKERS_PER_CORE",
    "MAX_IMAGE_FILE_BYTES",
    "MAX_JPEG_SCANS",
    "MAX_DOWNLOAD_BYTES",
    "MAX_PARAMETER_BYTES",
    "MAX_DRAW_SIZE",
    "MAX_DRAW_CHANNELS",
]

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

MAX_IMAGE_FILE_BYTES = 2**30
"""Largest image file read, in bytes (1 GiB). The largest image the pixel limit admits, stored
uncompressed as 16-bit RGBA (8 bytes per pixel), is 716 MB."""

MAX_JPEG_SCANS = 100
"""Most scans a JPEG may hold. Baseline files have 1 (or one per component), the standard
progressive scripts of libjpeg and Pillow 6 to 10; a scan per component, band and bit of
precision stays below 100."""

MAX_DOWNLOAD_BYTES = 2**30
"""Largest ``fetch`` download, in bytes (1 GiB); the largest published file, resnext101_32x8d's, is 340 MB."""

MAX_PARAMETER_BYTES = 4 * 2**30
"""Largest parameter memory of one layer or one model, in bytes (4 GiB): wide_resnet101_2,
the largest torchvision ResNet, holds 0.51 GB of float32 parameters (1.0 GB in float64)."""

MAX_DRAW_SIZE = 32
"""Largest extent of a drawn input along an axis (``npresnet draw``), padding and ceil-mode overhang included."""

MAX_DRAW_CHANNELS = 64
"""Most input or output channels of a drawn convolution (the channel view draws one block per channel)."""
