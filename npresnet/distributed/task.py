"""One Dask task: read a chunk of images, run the model once, write that chunk of every output.

The task is idempotent: it writes the same bytes whenever it runs, so a task that Dask
re-runs after its worker died, or a chunk recomputed on resume, changes nothing.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy

from ..predictions import softmax_topk
from ._records import Counts
from .model import ModelKey, cached_model
from .predictions import PredictionStore, predictions_table
from .store import FeatureStore

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .._typing import Array

__all__ = ["Job", "Chunk", "ChunkResult", "run_chunk", "write_storage_chunk", "TRANSIENT_ERRNOS", "RETRY_DELAYS"]

# OSErrors that say "not now" rather than "not an image": the read is tried again, and a row that
# still fails is stored as retryable, so that the next run computes its chunk again
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EIO", "EMFILE", "ENFILE", "EAGAIN", "EINTR", "ENOMEM", "ENOBUFS", "ETIMEDOUT", "ESTALE", "EBUSY")
    if hasattr(errno, name)
)
RETRY_DELAYS = (0.1, 0.5)  # seconds before the second and the third attempt
RETRYABLE = " (a transient error: the next run tries this image again)"


@dataclass(frozen=True)
class Job:
    """Everything a task needs besides its images and the weights (small; sent with every task)."""

    model: ModelKey
    resize_size: int = 256
    crop_size: int = 224
    top: int = 5
    layer: str | None = "avgpool"  # features from this module's output; None: no features
    features: FeatureStore | None = None
    predictions: PredictionStore | None = None


@dataclass(frozen=True)
class Chunk:
    """Rows ``start … start + len(paths)`` of the output: chunk ``index``."""

    index: int
    start: int
    paths: tuple[str, ...]


class ChunkResult(Counts):
    """What :func:`run_chunk` returns: the chunk, its rows, its error counts and ``errors_list``."""

    index: int
    rows: int
    errors_list: list[tuple[int, str, str]]  # (row, path, reason) of each unreadable image


def _labels(num_classes: int) -> Sequence[str]:
    if num_classes == 1000:
        from ..imagenet import imagenet_classes

        return imagenet_classes()
    return [f"class {i}" for i in range(num_classes)]


def _transient(err: BaseException) -> bool:
    """Return True if ``err`` or an exception it was raised from is an OSError with a transient errno."""
    cause: BaseException | None = err
    seen = 0
    while cause is not None and seen < 16:
        if isinstance(cause, OSError) and cause.errno in TRANSIENT_ERRNOS:
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def _load(paths: Iterable[str], resize_size: int, crop_size: int) -> tuple[list[Array], list[str | None]]:
    """Preprocessed images of the readable paths and, per path, None or the reason it is unreadable.

    A read that fails for a transient reason (:data:`TRANSIENT_ERRNOS`) is tried again after each of
    :data:`RETRY_DELAYS`; if it still fails, its reason ends with :data:`RETRYABLE`.
    """
    from .. import preprocess

    arrays: list[Array] = []
    errors: list[str | None] = []
    for path in paths:
        for delay in (*RETRY_DELAYS, None):
            try:
                arrays.append(preprocess.load_and_preprocess(path, resize_size, crop_size))  # (3, crop, crop)
                errors.append(None)
            except preprocess.ImageError as err:
                if _transient(err) and delay is not None:
                    time.sleep(delay)
                    continue
                errors.append(str(err) + (RETRYABLE if _transient(err) else ""))
            break
    return arrays, errors


def _forward(job: Job, state_dict: Mapping[str, Array], batch: Array) -> tuple[Array, Array | None]:
    """Logits (B, classes) and features (B, D) (None without a layer), as NumPy arrays."""
    from ..backend import available_backends, cupy_unavailable_reason, to_backend, to_numpy
    from ..nn import capture_intermediates

    backend = job.model.backend
    if backend not in available_backends():
        raise RuntimeError(f"backend {backend!r} is not available on this worker: {cupy_unavailable_reason()}")
    model, lock = cached_model(job.model, state_dict)
    x = to_backend(batch, backend)
    with lock:
        if job.layer is None:
            return to_numpy(model(x)), None
        logits, captured = capture_intermediates(model, x, [job.layer])
    features = to_numpy(captured[job.layer])
    return to_numpy(logits), features.reshape(features.shape[0], -1)  # (B, D)


def run_chunk(chunk: Chunk, state_dict: Mapping[str, Array], job: Job) -> ChunkResult:
    """Compute and write one chunk; return ``{"index", "rows", "errors", "retryable", "errors_list"}``.

    ``errors`` and ``retryable`` count the chunk's error rows; ``errors_list`` is ``[(row, path, reason), ...]``.

    ``state_dict`` is only used the first time this worker needs the model (see ModelCache).
    """
    paths = list(chunk.paths)
    n = len(paths)
    arrays, errors = _load(paths, job.resize_size, job.crop_size)
    good = [i for i, e in enumerate(errors) if e is None]
    counts: Counts = {
        "errors": n - len(good),
        "retryable": sum(e is not None and e.endswith(RETRYABLE) for e in errors),
    }
    logits: Array | None = None
    features: Array | None = None
    if arrays:
        logits, features = _forward(job, state_dict, numpy.stack(arrays))  # batch (B, 3, crop, crop)

    if job.predictions is not None:
        k = job.predictions.manifest["top"]
        top_indices: list[list[int] | None] = [None] * n
        top_probs: list[list[float] | None] = [None] * n
        top_labels: list[list[str] | None] = [None] * n
        if logits is not None:  # the model ran: an image was read (good is not empty)
            labels = _labels(job.model.num_classes)
            indices, probs = softmax_topk(logits, k)  # (B, k) each
            for i, idx, p in zip(good, indices, probs):
                top_indices[i], top_probs[i] = idx.tolist(), p.tolist()
                top_labels[i] = [labels[j] for j in idx]
        table = predictions_table(
            list(range(chunk.start, chunk.start + n)), paths, top_indices, top_probs, top_labels, errors
        )
        job.predictions.write_chunk(chunk.index, table, counts)

    # features last: their `done` flag is the chunk's final write
    if job.features is not None:
        dim = job.features.manifest["feature_dim"]
        rows = numpy.full((n, dim), numpy.nan, dtype=numpy.float32)  # (n, D), NaN where unreadable
        if features is not None:  # None: no image was read (good is empty), or no layer; the rows stay NaN
            rows[good] = features
        job.features.write_chunk(chunk.index, chunk.start, rows, [e or "" for e in errors], counts)

    return {
        "index": chunk.index,
        "rows": n,
        **counts,
        "errors_list": [(chunk.start + i, p, e) for i, (p, e) in enumerate(zip(paths, errors)) if e is not None],
    }


def write_storage_chunk(store: FeatureStore, index: int, *_after: ChunkResult) -> None:
    """Write storage chunk ``index`` of ``store`` (see :meth:`.FeatureStore.write_storage_chunk`).

    ``_after`` are the results of the chunk tasks it waits for; their rows are read from the store.
    """
    store.write_storage_chunk(index)
