"""``embed``: batched inference over many images as Dask tasks, written to Zarr and/or Parquet."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .. import __version__
from ..imagenet import IMAGENET_MEAN, IMAGENET_STD
from ..limits import MAX_BATCH_SIZE, MAX_FEATURE_VALUES, MAX_IMAGE_SIZE, MAX_TOP
from ..models.registry import check_arch
from ..summary.working_memory import check_working_memory
from .cluster import check_local_workers, choose_scheduler, connect
from .lock import output_lock
from .model import ensure_plugin, load_checked_weights
from .paths import list_images, paths_digest
from .store import FORMAT, FeatureStore, PredictionStore, storage_rows
from .task import Chunk, Job, run_chunk, write_storage_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from distributed import Client

    from .._typing import Array, PathLike
    from ._records import FeatureManifest, Manifest, Record
    from .model import ModelKey

    # where embed runs: (client, scheduler, n_workers, processes, backend), as cluster.connect takes them
    Where = tuple[Client | None, str | None, int | None, bool, str]

__all__ = ["embed", "EmbedResult", "MAX_BATCH_SIZE"]  # MAX_BATCH_SIZE: npresnet.limits', shared with predict


@dataclass
class EmbedResult:
    """What a run did.

    ``errors`` lists ``(path, reason)`` for unreadable images in the chunks computed now;
    ``error_rows`` and ``retryable_rows`` count the error rows of the whole output, resumed
    chunks included; ``recomputed`` counts the chunks that claimed to be done but did not verify
    (damaged, altered, or from another run), which were computed again.
    """

    num_images: int
    chunks: int
    computed: int
    skipped: int
    features: str | None = None
    predictions: str | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    error_rows: int = 0
    retryable_rows: int = 0
    recomputed: int = 0


def _feature_dim(key: ModelKey, layer: str, crop_size: int) -> int:
    """Values per image at ``layer`` for a crop_size² input, from a shape-only pass (no convolution runs)."""
    import math

    from ..models.registry import build_model
    from ..nn import TensorSpec, capture_intermediates

    model = build_model(key.arch, num_classes=key.num_classes)
    _, captured = capture_intermediates(model, TensorSpec((1, 3, crop_size, crop_size)), [layer])
    dim: int = math.prod(captured[layer].shape[1:])
    return dim


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int between {low} and {high}, got {value!r}")


def embed(
    images: PathLike | Sequence[PathLike],
    arch: str,
    weights: PathLike,
    *,
    features: PathLike | None = None,
    predictions: PathLike | None = None,
    client: Client | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    processes: bool = True,
    batch_size: int = 32,
    top: int = 5,
    layer: str = "avgpool",
    resize_size: int = 256,
    crop_size: int = 224,
    backend: str = "numpy",
    progress: Callable[[int, int], object] | None = None,
) -> EmbedResult:
    """Run ``arch`` with ``weights`` over ``images`` on Dask; write features (Zarr) and/or predictions (Parquet).

    Each image is preprocessed exactly as ``npresnet predict`` does
    (:func:`npresnet.preprocess.load_and_preprocess`), so every row equals what
    single-process ``predict`` (or the model on that array) gives. Row ``i`` of each
    output is ``paths[i]`` (see :func:`list_images` for the order).

    Parameters
    ----------
    images : str, path, or sequence of them
        Files, directories or glob patterns (:func:`npresnet.distributed.list_images`).
    arch : str
        Architecture name, e.g. ``"resnet50"``.
    weights : str or path
        A ``.pth``, ``.npz`` or ``.safetensors`` state dict. Read and checked on the client
        before any task is submitted; sent to each worker once.
    features : str or path, optional
        A Zarr store to write: ``features`` (N, D) float32 — the output of ``layer`` per image,
        flattened (D = 512 or 2048 for ``avgpool``) — with ``paths``, ``errors`` and ``done``.
    predictions : str or path, optional
        A Parquet dataset directory: row, path, top_indices, top_probs, top_labels, error.
    client : distributed.Client, optional
        Run on this client's cluster.
    scheduler : str, optional
        Else connect to this scheduler (``tcp://host:8786``). Else to the one Dask's configuration
        names (``DASK_SCHEDULER_ADDRESS``, or ``scheduler-address`` in a Dask config file), as
        ``distributed.Client()`` does. Else start a local cluster.
    n_workers : int, optional
        Workers of the local cluster (default and most: one per usable core,
        ``npresnet.distributed.cluster.max_local_workers()``). Refused when the scheduler comes
        from Dask's configuration.
    processes : bool
        Local cluster of processes (default) or of threads in this process. ``False`` is refused
        when the scheduler comes from Dask's configuration.
    batch_size : int
        Images per task: rows per Parquet part and per chunk record. One task's pass may need at
        most :data:`npresnet.limits.MAX_ACTIVATION_BYTES` of working memory, checked first
        (``npresnet.summary.working_memory.check_working_memory()``). A Zarr chunk holds whole
        tasks' rows, about 8 MiB (``npresnet.distributed.store.storage_rows()``).
    top : int
        Classes per image in ``predictions`` (at most the number of classes).
    layer : str
        Module whose output the features are (default ``"avgpool"``, the pooled penultimate activations).
    resize_size, crop_size : int
        Preprocessing, as ``predict --resize-size/--crop-size``.
    backend : {"numpy", "cupy"}
        Array backend on the workers. With ``"cupy"`` run one worker per GPU, as dask-cuda does
        (the embedded cluster uses ``dask_cuda.LocalCUDACluster`` when installed, else one worker).
    progress : callable, optional
        ``progress(done, total)`` after each chunk, on the calling thread.

    Returns
    -------
    EmbedResult

    Raises
    ------
    WeightsError
        The weights cannot be read or do not fit ``arch`` (nothing submitted, no output created).
    OutputMismatchError
        An output exists but was made for other images or settings.
    UnsafeOutputError
        An output is a link, or holds a link, FIFO, socket or device (nothing is written).
    OutputLockedError
        Another run holds an output (the message names its pid and host).
    OSError
        The scheduler cannot be reached (no output is created).
    ValueError
        Bad arguments, no images.
    RuntimeError
        A task failed for a reason other than an unreadable image; finished chunks are kept,
        so the same call resumes.
    """
    if features is None and predictions is None:
        raise ValueError("give features= (a .zarr path), predictions= (a .parquet path), or both")
    _check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
    _check_int("top", top, 1, MAX_TOP)
    _check_int("resize_size", resize_size, 1, MAX_IMAGE_SIZE)
    _check_int("crop_size", crop_size, 1, MAX_IMAGE_SIZE)
    if backend not in ("numpy", "cupy"):
        raise ValueError(f"backend must be 'numpy' or 'cupy', got {backend!r}")
    local = client is None and choose_scheduler(client, scheduler, n_workers, processes) is None
    if local and n_workers is not None:
        check_local_workers(n_workers)
    if backend == "cupy" and local:
        _check_local_backend(backend)
    paths = [os.path.abspath(p) for p in list_images(images)]  # workers may run in another directory
    check_arch(arch)
    check_working_memory(arch, crop_size, min(batch_size, len(paths)))  # one task's pass
    key, state_dict = load_checked_weights(arch, weights)
    key = replace(key, backend=backend)
    if predictions is not None and top > key.num_classes:  # as predict refuses it
        raise ValueError(f"top={top} asks for more classes than the {key.num_classes} of {weights}")
    common: Manifest = {
        "format": FORMAT,
        "npresnet_version": __version__,
        "arch": arch,
        "num_classes": key.num_classes,
        "weights_sha256": key.weights_sha256,
        "num_images": len(paths),
        "paths_sha256": paths_digest(paths),
        "chunk_rows": batch_size,
        "resize_size": resize_size,
        "crop_size": crop_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "backend": backend,
    }

    stores: list[FeatureStore | PredictionStore] = []
    feature_store: FeatureStore | None = None
    prediction_store: PredictionStore | None = None
    if features is not None:
        dim = _feature_dim(key, layer, crop_size)
        if dim > MAX_FEATURE_VALUES:
            raise ValueError(
                f"layer {layer!r} has {dim:,} values per image at {crop_size}×{crop_size}; "
                f"at most {MAX_FEATURE_VALUES:,} are stored per row"
            )
        manifest: FeatureManifest = {
            **common,
            "layer": layer,
            "feature_dim": dim,
            "dtype": "float32",
            "storage_rows": storage_rows(batch_size, dim, len(paths)),
        }
        feature_store = FeatureStore(features, manifest)
        stores.append(feature_store)
    if predictions is not None:
        prediction_store = PredictionStore(predictions, {**common, "top": min(top, key.num_classes)})
        stores.append(prediction_store)
    if feature_store is not None and prediction_store is not None:
        _check_apart(feature_store.path, prediction_store.path)

    with output_lock([store.path for store in stores]):
        return _run(
            paths,
            stores,
            feature_store,
            prediction_store,
            state_dict,
            Job(key, resize_size, crop_size, top=min(top, key.num_classes), layer=layer if features else None),
            (client, scheduler, n_workers, processes, backend),
            progress,
        )


def _check_local_backend(backend: str) -> None:
    from ..backend import available_backends, cupy_unavailable_reason

    if backend not in available_backends():
        raise ValueError(f"backend {backend!r} is not available here: {cupy_unavailable_reason()}")


def _check_apart(a: str, b: str) -> None:
    """Refuse features and predictions at one path, or one inside the other (both absolute, parents resolved)."""
    if a == b or os.path.commonpath([a, b]) in (a, b):
        raise ValueError(f"features ({a}) and predictions ({b}) must be two separate paths, neither inside the other")


def _run(
    paths: list[str],
    stores: Sequence[FeatureStore | PredictionStore],
    feature_store: FeatureStore | None,
    prediction_store: PredictionStore | None,
    state_dict: Mapping[str, Array],
    job: Job,
    where: Where,
    progress: Callable[[int, int], object] | None,
) -> EmbedResult:
    """Resume or start the run, holding the outputs' locks."""
    rows = stores[0].manifest["chunk_rows"]
    n_chunks = -(-len(paths) // rows)
    done = set(range(n_chunks))
    counted: dict[int, Record] = {}
    recomputed = 0
    for store in stores:
        if store.exists():
            store.check()
            records, unverified = store.records()
            recomputed = max(recomputed, unverified)
        else:
            records = {}
        done &= {i for i, record in records.items() if not record.get("retryable")}
        counted = counted or records
    todo = [i for i in range(n_chunks) if i not in done]
    result = EmbedResult(
        len(paths),
        n_chunks,
        len(todo),
        len(done),
        features=None if feature_store is None else feature_store.name,
        predictions=None if prediction_store is None else prediction_store.name,
        recomputed=recomputed,
    )
    result.error_rows = sum(counted[i].get("errors", 0) for i in done)
    if progress is not None:
        progress(len(done), n_chunks)
    # storage chunks of features to (re)write: those with a chunk to compute, or staged rows left by a killed run
    pending = [] if feature_store is None or not feature_store.exists() else feature_store.unfinished(done)
    if not todo and not pending:
        return result

    client, scheduler, n_workers, processes, backend = where
    with connect(client, scheduler, n_workers, processes, backend) as dask_client:
        if backend != "numpy":
            _check_workers_backend(dask_client, backend)
        for store in stores:  # created only now: a run that cannot start leaves nothing behind
            if store.exists():
                store.remove_leftovers()  # safe: this run holds the lock
            else:
                store.create(paths)
        if feature_store is not None and not pending:
            pending = feature_store.unfinished(done)
        job = replace(job, features=feature_store, predictions=prediction_store)
        _submit_and_wait(dask_client, paths, todo, pending, rows, state_dict, job, result, progress, len(done))
    for store in stores:
        store.remove_leftovers()
    return result


def _check_workers_backend(client: Client, backend: str) -> None:
    from ..backend import available_backends

    answers: dict[str, bool] = client.run(lambda: backend in available_backends())
    missing = sorted(worker for worker, ok in answers.items() if not ok)
    if not answers or missing:
        raise ValueError(
            f"backend {backend!r} is not available on the worker(s) {', '.join(missing) or '(none connected)'}"
        )


def _submit_and_wait(
    client: Client,
    paths: Sequence[str],
    todo: Iterable[int],
    pending: Iterable[int],
    batch_size: int,
    state_dict: Mapping[str, Array],
    job: Job,
    result: EmbedResult,
    progress: Callable[[int, int], object] | None,
    done: int,
) -> None:
    """Submit the chunks ``todo`` and the storage chunks ``pending`` (each after its chunks); wait for all."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:12]
    ensure_plugin(client)
    # the state dict goes once to every worker. Client.scatter, Client.cancel and as_completed are unannotated in
    # distributed; where the type check runs without distributed installed, all of it is Any and the ignores unused
    [weights] = client.scatter([state_dict], broadcast=True, hash=False)  # type: ignore[no-untyped-call, unused-ignore]
    chunks = {
        i: client.submit(
            run_chunk,
            Chunk(i, i * batch_size, tuple(paths[i * batch_size : (i + 1) * batch_size])),
            weights,
            job,
            key=f"npresnet-embed-{run}-{i:08d}",
            pure=False,
        )
        for i in todo
    }
    k = 0 if job.features is None else job.features.chunks_per_storage
    storage = [
        client.submit(
            write_storage_chunk,
            job.features,
            s,
            *[chunks[i] for i in range(s * k, (s + 1) * k) if i in chunks],  # runs after them
            key=f"npresnet-store-{run}-{s:08d}",
            pure=False,
            priority=1,  # before further chunks: staged rows do not pile up
        )
        for s in pending
    ]
    futures = [*chunks.values(), *storage]
    errors: list[tuple[int, str, str]] = []  # (row, path, reason)
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call, unused-ignore]
            kind, index = future.key.split("-")[1], int(future.key.rsplit("-", 1)[1])
            try:
                outcome = future.result()
            except Exception as err:
                if kind == "store":
                    assert job.features is not None  # storage chunks are submitted only for a features store
                    what = f"writing storage chunk {index} of {job.features.path}"
                else:
                    what = f"the task for images {index * batch_size}–{min((index + 1) * batch_size, len(paths)) - 1}"
                raise RuntimeError(
                    f"{what} failed: {type(err).__name__}: {err}. Finished chunks are kept: run the same command "
                    "again to resume."
                ) from err
            if kind == "store":
                continue
            errors += outcome["errors_list"]
            result.error_rows += outcome["errors"]
            result.retryable_rows += outcome["retryable"]
            done += 1
            if progress is not None:
                progress(done, result.chunks)
    finally:
        client.cancel(futures + [weights])  # type: ignore[no-untyped-call, unused-ignore]
    result.errors = [(path, reason) for _row, path, reason in sorted(errors)]
