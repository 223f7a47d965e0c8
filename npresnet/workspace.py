"""The workspace knob: how many bytes one chunk of a convolution may use, and how a call is chunked.

One parameter, ``workspace_bytes``, with one meaning everywhere it appears
(:func:`npresnet.functional.conv2d`, :class:`npresnet.nn.Conv2d`, the models, and
:func:`npresnet.fast.fuse`): **the bound, in bytes, on one chunk's im2col columns (or
Winograd tiles) plus the chunk's output**. A convolution whose whole working set is
larger is computed in chunks, over images first and then over bands of output rows,
and gives identical results. ``None`` means the backend's default,
:func:`default_workspace_bytes`:

- NumPy: :data:`NUMPY_WORKSPACE_BYTES` (8 MiB), cache-sized: a chunk's product and its
  epilogue stay in the CPU caches;
- CuPy: a fraction of the device memory that is free now (:func:`device_workspace_bytes`),
  because on a GPU small chunks mean many small matrix products and launches.

There is no module-level setting to patch: callers pass the parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._args import is_int

if TYPE_CHECKING:
    import types

__all__ = [
    "NUMPY_WORKSPACE_BYTES",
    "default_workspace_bytes",
    "device_workspace_bytes",
    "resolve_workspace_bytes",
    "workspace_chunks",
    "workspace_chunk_count",
]

NUMPY_WORKSPACE_BYTES = 8 * 2**20
"""NumPy's default bound on one chunk's columns plus output: 8 MiB, cache-sized.

A chunk's matrix product and its epilogue then run in the CPU caches; how it was chosen is
recorded in ``benchmarks/RESULTS.md`` ("The NumPy workspace default")."""

DEVICE_FRACTION = 0.25
DEVICE_FLOOR_BYTES = 16 * 2**20
DEVICE_CAP_BYTES = 4 * 2**30


def device_workspace_bytes(
    free_bytes: int, fraction: float = DEVICE_FRACTION, floor: int = DEVICE_FLOOR_BYTES, cap: int = DEVICE_CAP_BYTES
) -> int:
    """Return a GPU workspace from the device's free memory: ``fraction`` of it, clamped to ``[floor, cap]``.

    Why these numbers: on an H100, workspaces of 1–4 GiB ran ResNet-50 at batch 64 15–40× faster than
    the CPU-sized 4–8 MiB (many small products and launches; benchmarks/RESULTS.md, "On an NVIDIA H100",
    from the one GPU run so far, before the GPU-native path). A quarter of the free memory leaves room
    for the activations (the fused path's buffers, about twice the largest activation) and for other
    users of the device. The cap, 4 GiB, already holds the largest single chunk of ResNet-50 at batch
    256 whole (the stem's columns, 256·112²·147 floats = 1.9 GB, plus its output), so more would only
    take memory from others. The floor, 16 MiB, keeps a nearly full device working in small chunks
    rather than failing.
    Never more than the free memory itself, and at least 1 byte.

    Parameters
    ----------
    free_bytes : int
        Bytes the device can still hand out (driver free memory plus the memory pool's unused blocks).
    """
    wanted = min(int(free_bytes * fraction), cap)
    return max(1, min(max(wanted, floor), int(free_bytes)))


def _cupy_free_bytes(xp: types.ModuleType) -> int:
    """Free device memory as CuPy sees it: the driver's free bytes plus the pool's cached, unused blocks."""
    free, _total = xp.cuda.runtime.memGetInfo()
    return int(free) + int(xp.get_default_memory_pool().free_bytes())


def default_workspace_bytes(xp: types.ModuleType | None = None) -> int:
    """Return the default ``workspace_bytes`` for the array module ``xp`` (``numpy`` when None).

    NumPy: :data:`NUMPY_WORKSPACE_BYTES`. CuPy: :func:`device_workspace_bytes` of the current
    device's free memory, read at the call (so it follows what the process has allocated).
    """
    if xp is None or getattr(xp, "__name__", "numpy") != "cupy":
        return NUMPY_WORKSPACE_BYTES
    return device_workspace_bytes(_cupy_free_bytes(xp))


def resolve_workspace_bytes(workspace_bytes: int | None, xp: types.ModuleType | None = None) -> int:
    """``workspace_bytes`` checked (a positive int), or the backend's default when it is None."""
    if workspace_bytes is None:
        return default_workspace_bytes(xp)
    if not is_int(workspace_bytes) or workspace_bytes < 1:
        raise ValueError(f"workspace_bytes must be a positive int (bytes) or None, got {workspace_bytes!r}")
    return int(workspace_bytes)


def workspace_chunks(N: int, out_h: int, row_bytes: int, budget: int) -> list[tuple[int, int, int, int]]:
    """Split ``N`` images of ``out_h`` output rows into chunks whose workspace fits in ``budget`` bytes.

    The one chunk planner of npresnet: :func:`npresnet.functional.conv2d` and the fused path
    (:mod:`npresnet.fast`) both use it.

    Parameters
    ----------
    N, out_h : int
        Batch size and output rows per image.
    row_bytes : int
        Workspace bytes needed per output row of one image (columns plus output: ``out_w * (K + O) * itemsize``).
    budget : int
        The bound (``workspace_bytes``); a single row larger than it still makes a one-row chunk.

    Returns
    -------
    list of (n0, n1, y0, y1)
        Images ``n0:n1``, output rows ``y0:y1``; either whole images (``y0, y1 = 0, out_h``)
        or a band of rows of one image. Every output row is covered once; empty when ``N == 0``.
    """
    nb, rb = _per_chunk(out_h, row_bytes, budget)
    if rb >= out_h:  # whole images
        return [(n, min(n + nb, N), 0, out_h) for n in range(0, N, nb)]
    return [(n, n + 1, y, min(y + rb, out_h)) for n in range(N) for y in range(0, out_h, rb)]


def workspace_chunk_count(N: int, out_h: int, row_bytes: int, budget: int) -> int:
    """``len(workspace_chunks(N, out_h, row_bytes, budget))``, without building the list.

    Lets a caller refuse a call that would make too many chunks before the list is built
    (:data:`npresnet.functional.MAX_CHUNKS`).
    """
    nb, rb = _per_chunk(out_h, row_bytes, budget)
    if rb >= out_h:  # whole images
        return -(-N // nb)
    return N * -(-out_h // rb)


def _per_chunk(out_h: int, row_bytes: int, budget: int) -> tuple[int, int]:
    """Return ``(images, output rows)`` per chunk.

    ``(k, out_h)``, the most whole images within ``budget``, when one image fits; else ``(1, r)``,
    bands of the most rows within it (at least one row).
    """
    image_bytes = out_h * row_bytes
    if image_bytes <= budget:
        return max(1, budget // max(image_bytes, 1)), out_h
    return 1, max(1, budget // max(row_bytes, 1))
