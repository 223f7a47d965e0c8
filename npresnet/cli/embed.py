"""``npresnet embed IMAGES...``: features (Zarr) and predictions (Parquet) for many images, on Dask."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from ..limits import MAX_ACTIVATION_BYTES, MAX_BATCH_SIZE
from .args import add_preprocessing_arguments, batch_size, positive_int, top_k
from .common import STOPS_THE_COMMAND, CommandError, Progress, check_activation_memory, check_arch

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

__all__ = ["add_parser", "run"]

_EMBED_EXAMPLES = """examples:
  npresnet embed photos/ --arch resnet50 --weights resnet50.npz --out feats.zarr --predictions preds.parquet
  npresnet embed 'shards/**/*.jpg' --arch resnet18 --weights r18.npz --out feats.zarr --workers 2
  npresnet embed /shared/photos --arch resnet50 --weights /shared/r50.npz --out /shared/feats.zarr \\
      --scheduler tcp://10.0.0.5:8786       # a running Dask cluster whose workers see /shared

Re-running the same command after an interruption computes only the missing chunks.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], archs: str) -> None:
    """Add the ``embed`` subcommand to ``commands`` (``archs``: the names ``--arch`` accepts)."""
    p = commands.add_parser(
        "embed",
        help="features (Zarr) and predictions (Parquet) for many images, on Dask",
        description="Run the network over many images as Dask tasks of --batch-size images each, on a local "
        "cluster started for the run (one worker per core) or on the cluster at --scheduler. "
        "Images are preprocessed exactly as `npresnet predict` does. Writes the pooled penultimate "
        "activations (or --layer's output) as a Zarr array, row i = image i, with the paths beside "
        "it, and/or the top-K classes as a Parquet dataset. Chunks are written atomically; running "
        "the same command again resumes, computing only missing chunks. An output made for other "
        "images or weights is refused. Unreadable images become error rows (NaN features) and the "
        "exit status is 1. Needs npresnet[distributed].",
        epilog=_EMBED_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGES",
        help="image files, directories (every image below, sorted) or quoted glob patterns",
    )
    p.add_argument("--arch", required=True, metavar="ARCH", help=f"one of {archs}")
    p.add_argument(
        "--weights",
        required=True,
        metavar="FILE",
        help="a .pth, .npz or .safetensors state dict (see `npresnet fetch`); read and checked "
        "before anything runs, then sent to each worker once",
    )
    p.add_argument("--out", metavar="FEATURES.zarr", help="Zarr store to write the features to")
    p.add_argument(
        "--predictions",
        metavar="PREDS.parquet",
        help="Parquet dataset (a directory) to write path, top-K indices, probabilities, labels and error per image to",
    )
    p.add_argument(
        "--layer",
        default="avgpool",
        metavar="NAME",
        help="module whose output is stored as features, flattened (default avgpool: 512 values "
        "per image for resnet18/34, 2048 for the others)",
    )
    p.add_argument(
        "--top",
        type=top_k,
        default=5,
        metavar="K",
        help="classes per image (default 5; the weights' number of classes where they have fewer)",
    )
    p.add_argument(
        "--batch-size",
        type=batch_size,
        default=32,
        metavar="B",
        help=f"images per task (default 32, at most {MAX_BATCH_SIZE}; fixed for an output; Zarr chunks hold whole "
        f"tasks' rows, about 8 MiB; the activations of one task may take at most {MAX_ACTIVATION_BYTES // 2**30} GiB)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on this Dask scheduler (tcp://host:8786 or host:8786; default: Dask's configured "
        "DASK_SCHEDULER_ADDRESS, else a local cluster); its workers must read the images "
        "and write the outputs at the same paths (a shared file system)",
    )
    p.add_argument(
        "--workers",
        type=_local_workers,
        default=None,
        metavar="N",
        help="workers of the local cluster (default and most: one per usable CPU core)",
    )
    p.add_argument(
        "--threads", action="store_true", help="local cluster of threads in this process instead of worker processes"
    )
    p.add_argument(
        "--backend",
        choices=("numpy", "cupy"),
        default="numpy",
        help="array backend on the workers; for cupy run one worker per GPU (e.g. dask-cuda's "
        "LocalCUDACluster, then --scheduler)",
    )
    add_preprocessing_arguments(p)
    p.set_defaults(run=run)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Turn Ctrl-C (SIGINT) during the run into one KeyboardInterrupt and a quiet teardown.

    Dask reacts to an interrupted run by logging errors and, when a cluster was interrupted while
    starting, by a traceback from its exit handler; after the first SIGINT those are silenced, later
    SIGINTs are ignored so that the cluster's shutdown (which has its own timeouts) completes, and
    whatever the teardown raises is reported as the interruption it is.
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    interrupted = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if interrupted:
            return
        interrupted = True
        logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)
        sys.unraisablehook = lambda unraisable: None  # the exit handler of an interrupted cluster
        raise KeyboardInterrupt

    vars(on_sigint)[STOPS_THE_COMMAND] = True  # SIGTERM stops the run this way too
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except BaseException:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def _local_workers(text: str) -> int:
    """Parse ``--workers``: 1 to :func:`npresnet.distributed.cluster.max_local_workers` (a usage error beyond)."""
    value = positive_int(text)
    try:
        from ..distributed.cluster import max_local_workers
    except ImportError:  # no dask: the command stops at its one-line "pip install" error instead
        return value
    most = max_local_workers()
    if value > most:
        raise argparse.ArgumentTypeError(
            f"at most {most} on this machine (one per usable core; each worker runs one single-threaded task "
            f"at a time), got {value}"
        )
    return value


def _check(args: argparse.Namespace) -> list[str]:
    """Everything the command line can check before any output is touched; returns the image paths.

    The library checks these too, but later (some only inside the tasks, or after an output is created).
    """
    from ..distributed import list_images

    arch: str = args.arch
    out: str | None = args.out
    predictions: str | None = args.predictions
    scheduler: str | None = args.scheduler
    check_arch(arch)
    if not args.weights:
        raise CommandError("--weights: an empty file name")
    if not args.layer:
        raise CommandError("--layer: an empty module name; give one such as avgpool or layer3")
    if out is not None and predictions is not None:
        real_out, real_predictions = os.path.realpath(out), os.path.realpath(predictions)
        inside = os.path.commonpath([real_out, real_predictions]) in (real_out, real_predictions)
        if inside:
            raise CommandError(
                f"--out {out} and --predictions {predictions} are the same path or one holds the other; "
                "give two separate outputs"
            )
    if scheduler is not None:
        scheme, sep, _ = scheduler.partition("://")
        if sep and scheme != "tcp":
            raise CommandError(
                f"--scheduler {scheduler}: only tcp:// addresses are supported here ({scheme}:// needs a "
                "security or transport configuration; connect a distributed.Client yourself and pass it to "
                "npresnet.distributed.embed(client=...))"
            )
    try:
        paths = list_images(args.images)
    except ValueError as err:
        raise CommandError(err) from None
    check_activation_memory(arch, args.crop_size, min(args.batch_size, len(paths)))  # one task's pass
    for path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise CommandError(
                f"{os.fsencode(path)!r}: the file name is not valid UTF-8, which the outputs store paths as; "
                "rename the file"
            ) from None
    return paths


def run(args: argparse.Namespace) -> int:
    """Run ``npresnet embed`` with the parsed ``args``; return the exit status."""
    if args.out is None and args.predictions is None:
        raise CommandError("nothing to write: give --out FEATURES.zarr, --predictions PREDS.parquet, or both")
    if args.scheduler is not None and (args.workers is not None or args.threads):
        raise CommandError("--workers and --threads size the local cluster; they do not apply with --scheduler")
    paths = _check(args)
    from ..distributed import embed

    progress = Progress("chunks")

    try:
        with _interruptible():
            result = embed(
                paths,
                args.arch,
                args.weights,
                features=args.out,
                predictions=args.predictions,
                scheduler=args.scheduler,
                n_workers=args.workers,
                processes=not args.threads,
                batch_size=args.batch_size,
                top=args.top,
                layer=args.layer,
                resize_size=args.resize_size,
                crop_size=args.crop_size,
                backend=args.backend,
                progress=progress,
            )
    except (ValueError, OSError, RuntimeError) as err:
        raise CommandError(err) from None
    finally:
        progress.close()
    shown = 20
    for _path, reason in result.errors[:shown]:  # the reason names the file
        print(f"npresnet embed: skipped {reason}", file=sys.stderr)
    if len(result.errors) > shown:
        print(f"npresnet embed: ... and {len(result.errors) - shown} more (see the error column)", file=sys.stderr)
    outputs = " and ".join(p for p in (result.features, result.predictions) if p)
    recomputed = f" ({result.recomputed} did not verify and were computed again)" if result.recomputed else ""
    print(
        f"{outputs}: {result.num_images} images in {result.chunks} chunks; computed {result.computed}, "
        f"{result.skipped} were already done{recomputed}",
        file=sys.stderr,
    )
    if result.error_rows:  # every error row of the output, resumed chunks included
        retryable = (
            f"; {result.retryable_rows} failed for a transient reason: run again to retry them"
            if result.retryable_rows
            else ""
        )
        print(
            f"npresnet embed: {result.error_rows} of {result.num_images} image(s) could not be read "
            f"(error rows written){retryable}",
            file=sys.stderr,
        )
        return 1
    return 0
