"""One Dask task: read a chunk of images, run the model once, write that chunk of every output.

The task is idempotent: it writes the same bytes whenever it runs, so a task that Dask
re-runs after its worker died, or a chunk recomputed on resume, changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from ..predictions import softmax_topk
from .model import ModelKey, cached_model

__all__ = ["Job", "Chunk", "run_chunk"]


@dataclass(frozen=True)
class Job:
    """Everything a task needs besides its images and the weights (small; sent with every task)."""

    model: ModelKey
    resize_size: int = 256
    crop_size: int = 224
    top: int = 5
    layer: str | None = "avgpool"  # features from this module's output; None: no features
    features_manifest: dict | None = None
    features_path: str | None = None
    predictions_manifest: dict | None = None
    predictions_path: str | None = None


@dataclass(frozen=True)
class Chunk:
    """Rows ``start … start + len(paths)`` of the output: chunk ``index``."""

    index: int
    start: int
    paths: tuple


def _labels(num_classes: int):
    if num_classes == 1000:
        from ..imagenet import imagenet_classes

        return imagenet_classes()
    return [f"class {i}" for i in range(num_classes)]


def _load(paths, resize_size, crop_size):
    """Preprocessed images of the readable paths and, per path, None or the reason it is unreadable."""
    from ..preprocess import ImageError, load_and_preprocess

    arrays, errors = [], []
    for path in paths:
        try:
            arrays.append(load_and_preprocess(path, resize_size, crop_size))  # (3, crop, crop)
            errors.append(None)
        except ImageError as err:
            errors.append(str(err))
    return arrays, errors


def _forward(job: Job, state_dict, batch):
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


def run_chunk(chunk: Chunk, state_dict, job: Job) -> dict:
    """Compute and write one chunk; return ``{"index", "rows", "errors": [(row, path, reason), ...]}``.

    ``state_dict`` is only used the first time this worker needs the model (see ModelCache).
    """
    from .store import FeatureStore, PredictionStore, predictions_table

    paths = list(chunk.paths)
    n = len(paths)
    arrays, errors = _load(paths, job.resize_size, job.crop_size)
    good = [i for i, e in enumerate(errors) if e is None]
    logits = features = None
    if arrays:
        logits, features = _forward(job, state_dict, numpy.stack(arrays))  # batch (B, 3, crop, crop)

    if job.predictions_path is not None:
        k = job.predictions_manifest["top"]
        top_indices, top_probs, top_labels = [None] * n, [None] * n, [None] * n
        if good:
            labels = _labels(job.model.num_classes)
            indices, probs = softmax_topk(logits, k)  # (B, k) each
            for i, idx, p in zip(good, indices, probs):
                top_indices[i], top_probs[i] = idx.tolist(), p.tolist()
                top_labels[i] = [labels[j] for j in idx]
        table = predictions_table(
            list(range(chunk.start, chunk.start + n)), paths, top_indices, top_probs, top_labels, errors
        )
        PredictionStore(job.predictions_path, job.predictions_manifest).write_chunk(chunk.index, table)

    # features last: their `done` flag is the chunk's final write, so done there means done everywhere
    if job.features_path is not None:
        dim = job.features_manifest["feature_dim"]
        rows = numpy.full((n, dim), numpy.nan, dtype=numpy.float32)  # (n, D), NaN where unreadable
        if good:
            rows[good] = features
        FeatureStore(job.features_path, job.features_manifest).write_chunk(
            chunk.index, chunk.start, rows, [e or "" for e in errors]
        )

    return {
        "index": chunk.index,
        "rows": n,
        "errors": [(chunk.start + i, p, e) for i, (p, e) in enumerate(zip(paths, errors)) if e is not None],
    }
