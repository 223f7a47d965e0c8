"""Upper bounds on the sizes a user's input can ask for: one definition each.

``npresnet predict``, ``npresnet embed`` (and :func:`npresnet.distributed.embed`),
``npresnet train``, :mod:`npresnet.preprocess`, :mod:`npresnet.fetch` and the layers check
against these before any work starts, so a size accepted by one is accepted by the others. The
README's limits table lists them (a test compares it with this module). Weight files have their
own, in ``npresnet.weights.limits``.
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
    "MAX_ELEMENTS",
    "MAX_CHUNKS",
    "MAX_FETCH_TIMEOUT",
    "MIN_DOWNLOAD_RATE",
    "MAX_IMAGES",
    "MAX_PATH_CHARS",
    "MAX_FEATURE_VALUES",
    "MAX_TRAIN_EPOCHS",
    "MAX_TRAIN_SIZE",
    "MAX_TRAIN_BATCH",
]

MAX_PIXELS = 89_478_485
"""Pixels of an image, as read or after resizing: Pillow's default ``MAX_IMAGE_PIXELS``, 256 MiB as 8-bit RGB."""

MAX_IMAGE_SIZE = 4096
"""Largest ``resize_size`` and ``crop_size`` (``--resize-size``, ``--crop-size``)."""

MAX_BATCH_SIZE = 1024
"""Images per forward pass (``predict --batch-size``) or per task and output chunk (``embed --batch-size``)."""

MAX_ACTIVATION_BYTES = 2 * 2**30
"""Working memory of one forward pass, counted by ``npresnet.summary.working_memory.working_memory_bytes()``."""

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

MAX_ELEMENTS = 2**31
"""Most elements of any one array a layer function allocates (2,147,483,648: 8 GiB of float32).

It bounds outputs, padded inputs, im2col columns (of the whole call for
:func:`npresnet.functional.im2col`, of one chunk for :func:`npresnet.functional.conv2d`) and the
gradients a backward function is asked to build from an ``input_shape``. The largest array
ResNet-50 needs at batch 256 and 224×224 is the stem's im2col columns when taken whole,
256·147·112² = 472,055,808 elements, so real networks stay 4.5 times below it; a padding, output
size or ``input_shape`` of ``2**40`` is refused before anything is allocated."""

MAX_CHUNKS = 2**18
"""Most workspace chunks one ``conv2d`` or ``conv2d_backward`` call may be split into (262,144).

A chunk costs a few array operations per kernel offset in Python, so a tiny ``workspace_bytes``
on a large input would otherwise mean hours of loop; a one-row chunk of every image of
ResNet-50's stem at batch 256 is 256·112 = 28,672 chunks."""

MAX_FETCH_TIMEOUT = 3600.0
"""Longest ``fetch`` timeout per connection and read, in seconds (``--timeout``); it must also be above 0,
which would make the socket non-blocking."""

MIN_DOWNLOAD_RATE = 16 * 2**10
"""Slowest ``fetch`` download kept, in bytes per second on average, checked once its first ``--timeout``
seconds have passed: a server that trickles data would otherwise hold it for ever, each read arriving
within the timeout. With :data:`MAX_DOWNLOAD_BYTES`, no download lasts more than about 18 hours; at
the rate the largest published file (340 MB) takes nearly 6 hours."""

MAX_IMAGES = 100_000_000
"""Most images (rows) of one ``embed`` output, counted while the paths are listed."""

MAX_PATH_CHARS = 4096
"""Longest image path ``embed`` accepts, in characters (``PATH_MAX`` on Linux)."""

MAX_FEATURE_VALUES = 1 << 24
"""Most feature values ``embed`` stores per image (16,777,216: 64 MiB of float32); a larger ``--layer`` is refused."""

MAX_TRAIN_EPOCHS = 1000
"""Most epochs of ``npresnet train`` (``--epochs``)."""

MAX_TRAIN_SIZE = 256
"""Largest input side of ``npresnet train`` (``--size``): the 8×8 digits upsampled at most 32 times."""

MAX_TRAIN_BATCH = 4096
"""Largest ``npresnet train --batch-size``: more than the 1,437 training images of the digits."""
