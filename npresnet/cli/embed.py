"""``npresnet embed IMAGES...``: features (Zarr) and predictions (Parquet) for many images, on Dask."""

from __future__ import annotations

import argparse
import sys

from .args import positive_int
from .common import CommandError, progress_bar

__all__ = ["add_parser", "run"]

_EMBED_EXAMPLES = """examples:
  npresnet embed photos/ --arch resnet50 --weights resnet50.npz --out feats.zarr --predictions preds.parquet
  npresnet embed 'shards/**/*.jpg' --arch resnet18 --weights r18.npz --out feats.zarr --workers 2
  npresnet embed /shared/photos --arch resnet50 --weights /shared/r50.npz --out /shared/feats.zarr \\
      --scheduler tcp://10.0.0.5:8786       # a running Dask cluster whose workers see /shared

Re-running the same command after an interruption computes only the missing chunks.
"""


def add_parser(commands, archs):
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
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        metavar="B",
        help="images per task and rows per output chunk (default 32; fixed for an output)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on this Dask scheduler (tcp://host:8786); its workers must read the images and "
        "write the outputs at the same paths (a shared file system)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="workers of the local cluster (default: one per CPU core)",
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
    p.add_argument(
        "--resize-size",
        type=positive_int,
        default=256,
        metavar="S",
        help="shorter side after resizing (default 256; torchvision's V2 weights use 232)",
    )
    p.add_argument("--crop-size", type=positive_int, default=224, metavar="S", help="center crop (default 224)")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.out is None and args.predictions is None:
        raise CommandError("nothing to write: give --out FEATURES.zarr, --predictions PREDS.parquet, or both")
    if args.scheduler is not None and (args.workers is not None or args.threads):
        raise CommandError("--workers and --threads size the local cluster; they do not apply with --scheduler")
    from ..distributed import embed

    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = progress_bar(total, "chunks") or False
            if bar:
                bar.update(done)
        elif bar:
            bar.update(done - bar.n)

    try:
        result = embed(
            args.images,
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
        if bar:
            bar.close()
    shown = 20
    for _path, reason in result.errors[:shown]:  # the reason names the file
        print(f"npresnet embed: skipped {reason}", file=sys.stderr)
    if len(result.errors) > shown:
        print(f"npresnet embed: ... and {len(result.errors) - shown} more (see the error column)", file=sys.stderr)
    outputs = " and ".join(p for p in (result.features, result.predictions) if p)
    print(
        f"{outputs}: {result.num_images} images in {result.chunks} chunks; computed {result.computed}, "
        f"{result.skipped} were already done",
        file=sys.stderr,
    )
    if result.errors:
        print(
            f"npresnet embed: {len(result.errors)} of {result.num_images} image(s) could not be read "
            "(error rows written)",
            file=sys.stderr,
        )
        return 1
    return 0
