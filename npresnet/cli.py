"""The ``npresnet`` command: ``summary``, ``predict``, ``convert``, ``fetch``.

The only module of npresnet that prints. Exit status: 0 on success, 1 when the work
failed or some inputs were bad (the others were still processed), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "build_parser"]

_EPILOG = """examples:
  npresnet summary resnet18
  npresnet summary resnet50 --input-size 300x200 --depth 2 --format markdown
  npresnet fetch resnet18
  npresnet predict cat.jpg dog.png --arch resnet18 --weights "$(npresnet fetch resnet18)"
  npresnet convert resnet18-f37072fd.pth resnet18.safetensors --arch resnet18
  npresnet train digits --out runs/digits
"""


class _CommandError(Exception):
    """A failure to report on stderr as ``npresnet <cmd>: error: ...`` with exit status 1."""


def _arch_names():
    from .models import ARCHITECTURES

    return list(ARCHITECTURES)


# Upper bounds of flags that size work or memory (the image sizes are preprocess.MAX_SIZE,
# the timeout fetch.MAX_TIMEOUT).
MAX_BATCH_SIZE = 1024
PREDICT_ACTIVATION_LIMIT = 2 * 2**30  # bytes of activations of one forward pass, as `summary` counts them


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _int_up_to(limit):
    """An argparse type: an integer from 1 to ``limit``."""

    def parse(text):
        value = _positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"at most {limit:,} is accepted, got {value:,}")
        return value

    return parse


def _image_size(text):
    from .preprocess import MAX_SIZE

    return _int_up_to(MAX_SIZE)(text)


def _timeout(text):
    from .fetch import MAX_TIMEOUT

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected seconds above 0 and at most {MAX_TIMEOUT:g}, got {text}")
    return value


def _input_size(text):
    from .summary import parse_input_size

    try:
        return parse_input_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npresnet",
        description="ResNet from first principles in NumPy: inspect architectures, classify images, "
        "convert and download torchvision weights — no PyTorch needed.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"npresnet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    archs = ", ".join(_arch_names())
    from .preprocess import MAX_SIZE

    p = commands.add_parser(
        "summary",
        help="per-layer table: shapes, parameters, MACs, receptive fields (no weights needed)",
        description="Walk the real model with a shape-only pass and print, per layer: torchvision module name, "
        "type with kernel/stride/padding, output C@H×W, parameters, multiply-accumulates, and the "
        "receptive field (size / jump, in input pixels). Totals: parameters, MACs (FLOPs = 2 × MACs), "
        "peak activation memory of an inference pass, and the layer count as the paper gives it. "
        f"Architectures: {archs}.",
    )
    p.add_argument("arch", metavar="ARCH", help="architecture name, e.g. resnet18")
    p.add_argument(
        "--input-size",
        type=_input_size,
        default=(224, 224),
        metavar="H[xW]",
        help="input height and width (default 224; e.g. 512, 300x200)",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=1,
        metavar="N",
        help="batch size N; MACs and memory are for the whole batch (default 1)",
    )
    p.add_argument(
        "--depth",
        type=_positive_int,
        choices=(1, 2, 3, 4),
        default=None,
        metavar="D",
        help="fold rows: 1 = stem layers + stages, 2 = blocks, 3 = layers in blocks "
        "(shortcut folded), 4 = every layer (the default)",
    )
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument(
        "--maxpool-padding",
        type=int,
        choices=(0, 1),
        default=1,
        help="stem max pool padding: 1 as torchvision (default), 0 as many re-implementations",
    )
    p.set_defaults(run=_summary)

    p = commands.add_parser(
        "predict",
        help="classify images with ImageNet weights (top-K classes and probabilities)",
        description="Classify images: each is read with Pillow (converted to RGB), preprocessed exactly as "
        "torchvision's ImageNet preset (shorter side 256 bilinear, center crop 224, normalise), "
        "and run through the network. Unreadable files are reported on stderr and the exit status "
        "is 1; the other images are still classified. Needs npresnet[tools].",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--arch", required=True, metavar="ARCH", help=f"one of {archs}")
    p.add_argument(
        "--weights",
        required=True,
        metavar="FILE",
        help="a .pth, .npz or .safetensors state dict (see `npresnet fetch`)",
    )
    p.add_argument(
        "--top",
        type=_positive_int,
        default=5,
        metavar="K",
        help="classes per image (default 5; at most the number of classes of the weights)",
    )
    p.add_argument(
        "--batch-size",
        type=_int_up_to(MAX_BATCH_SIZE),
        default=16,
        metavar="B",
        help=f"images per forward pass (default 16, at most {MAX_BATCH_SIZE}; the activations of "
        f"one pass may take at most {PREDICT_ACTIVATION_LIMIT // 2**30} GiB)",
    )
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument(
        "--resize-size",
        type=_image_size,
        default=256,
        metavar="S",
        help=f"shorter side after resizing (default 256; torchvision's V2 weights use 232; at most {MAX_SIZE})",
    )
    p.add_argument(
        "--crop-size",
        type=_image_size,
        default=224,
        metavar="S",
        help=f"side of the square center crop the network sees (default 224; at most {MAX_SIZE})",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(run=_predict)

    p = commands.add_parser(
        "convert",
        help="convert weights between .pth, .npz and .safetensors",
        description="Read SRC (.pth read safely without PyTorch, .npz or .safetensors; the format is detected "
        "from the content) and write DST as .npz or .safetensors (from its suffix), atomically. "
        "SRC is never overwritten; an existing DST is replaced only with --force.",
    )
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help="check every key and shape against this architecture first; report all mismatches",
    )
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.set_defaults(run=_convert)

    p = commands.add_parser(
        "fetch",
        help="download torchvision's ImageNet weights, verify, cache as .npz, print the path",
        description="Download torchvision's published weights for ARCH, verify the SHA-256 prefix in the file "
        "name, convert to .npz in the cache directory ($NPRESNET_HOME, else the platform cache dir) "
        "and print its path. A cached file is reused. Nothing unverified is ever left under the "
        "final name.",
    )
    p.add_argument("arch", metavar="ARCH")
    p.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help="torchvision weights name: IMAGENET1K_V1 (default) or IMAGENET1K_V2 where published",
    )
    p.add_argument(
        "--dest",
        default=None,
        metavar="DIR",
        help="cache directory (default $NPRESNET_HOME or the platform's user cache dir)",
    )
    p.add_argument(
        "--url",
        default=None,
        metavar="BASE",
        help="base address of the .pth files (default $NPRESNET_WEIGHTS_URL or https://download.pytorch.org/models/)",
    )
    p.add_argument(
        "--timeout",
        type=_timeout,
        default=30.0,
        metavar="SECONDS",
        help="network timeout per connection and read (default 30, at most 3600)",
    )
    p.set_defaults(run=_fetch)
    _add_train_parser(commands)
    _add_embed_parser(commands, archs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except _CommandError as err:
        print(f"npresnet {args.command}: error: {err}", file=sys.stderr)
        return 1
    except ImportError as err:  # an optional dependency is missing; the message says what to install
        print(f"npresnet {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


# ---------------------------------------------------------------------------- summary
def _summary(args) -> int:
    from .summary import format_markdown, format_table, summarize

    try:
        result = summarize(
            args.arch, args.input_size, batch=args.batch, depth=args.depth, maxpool_padding=args.maxpool_padding
        )
    except ValueError as err:
        raise _CommandError(err) from None
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=1, ensure_ascii=False))
    elif args.format == "markdown":
        print(format_markdown(result))
    else:
        print(format_table(result))
    return 0


# ---------------------------------------------------------------------------- predict
def _check_arch(arch):
    """``arch`` if it names an architecture, else a _CommandError with close names: checked before any file is read."""
    from .models import check_arch

    try:
        return check_arch(arch)
    except ValueError as err:
        raise _CommandError(err) from None


def _load_model(arch, path):
    """Build ``arch`` with the weights in ``path``, the classifier sized by the file."""
    from .errors import WeightsError
    from .models import fit_state_dict
    from .weights import load_weights

    _check_arch(arch)
    try:
        state_dict = load_weights(path)
    except (WeightsError, OSError) as err:
        raise _CommandError(f"cannot read weights: {err}") from None
    try:
        return fit_state_dict(arch, state_dict, str(path))
    except WeightsError as err:
        raise _CommandError(err) from None


def _check_predict_memory(args):
    """Refuse, before any work, a batch whose activations would exceed PREDICT_ACTIVATION_LIMIT."""
    from .summary import summarize

    batch = min(args.batch_size, len(args.images))
    try:
        need = summarize(args.arch, args.crop_size, batch=batch).peak_activation_bytes
    except ValueError as err:  # a crop too small for the network
        raise _CommandError(f"--crop-size {args.crop_size}: {err}") from None
    if need > PREDICT_ACTIVATION_LIMIT:
        fits = PREDICT_ACTIVATION_LIMIT // (need // batch)
        advice = f"use --batch-size {fits} or less" if fits else "use a smaller --crop-size"
        raise _CommandError(
            f"{args.arch} on {batch} image(s) of {args.crop_size}×{args.crop_size} needs {need / 2**30:.1f} GiB of "
            f"activations, more than the {PREDICT_ACTIVATION_LIMIT / 2**30:g} GiB limit; {advice}"
        )


def _predict(args) -> int:
    import numpy

    from .backend import available_backends, to_backend, to_numpy
    from .imagenet import imagenet_classes
    from .predictions import softmax_topk
    from .preprocess import ImageError, load_and_preprocess

    if args.backend not in available_backends():
        from .backend import cupy_unavailable_reason

        raise _CommandError(f"backend {args.backend!r} is not available: {cupy_unavailable_reason()}")
    _check_arch(args.arch)
    _check_predict_memory(args)
    model = _load_model(args.arch, args.weights)
    if args.backend != "numpy":
        model.to(args.backend)
    num_classes = model.fc.out_features
    if args.top > num_classes:
        raise _CommandError(f"--top {args.top} asks for more classes than the {num_classes} of {args.weights}")
    labels = imagenet_classes() if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]
    k = args.top

    bar = _progress_bar(len(args.images), "images")
    results, failures = [], []
    try:
        for start in range(0, len(args.images), args.batch_size):
            paths = args.images[start : start + args.batch_size]
            good, arrays = [], []
            for path in paths:
                try:
                    arrays.append(load_and_preprocess(path, args.resize_size, args.crop_size))
                    good.append(path)
                except ImageError as err:
                    failures.append(f"npresnet predict: skipped {err}")
            if arrays:
                batch = numpy.stack(arrays)  # (B, 3, crop, crop)
                logits = to_numpy(model(to_backend(batch, args.backend)))  # (B, classes)
                top, probs = softmax_topk(logits, k)  # (B, k) each
                for path, indices, p in zip(good, top, probs):
                    results.append(
                        {
                            "path": path,
                            "top": [
                                {"index": int(i), "label": labels[i], "prob": float(q)} for i, q in zip(indices, p)
                            ],
                        }
                    )
            if bar is not None:
                bar.update(len(paths))
    finally:
        if bar is not None:
            bar.close()

    if args.format == "json":
        print(json.dumps(results, indent=1, ensure_ascii=False))
    else:
        for entry in results:
            print(entry["path"])
            for rank, t in enumerate(entry["top"], 1):
                print(f"  {rank}. {t['prob']:7.2%}  {t['label']} ({t['index']})")
    if failures:  # after the results, so they end with what went wrong (stderr)
        sys.stdout.flush()
        for line in failures:
            print(line, file=sys.stderr)
        print(f"npresnet predict: {len(failures)} of {len(args.images)} image(s) could not be read", file=sys.stderr)
        return 1
    return 0


def _progress_bar(total, unit):
    """A tqdm bar on stderr when it is a terminal and tqdm is installed, else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, unit_scale=unit == "B", file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------- convert
def _convert(args) -> int:
    from .errors import WeightsError
    from .weights import load_weights, save_weights

    src, dst = args.src, args.dst
    if args.arch:
        _check_arch(args.arch)
    if os.path.splitext(dst)[1].lower() not in (".npz", ".safetensors"):
        raise _CommandError(f"DST must end in .npz or .safetensors (npresnet never writes pickles), got {dst!r}")
    if not os.path.isfile(src):
        raise _CommandError(f"{src}: no such file" if not os.path.exists(src) else f"{src}: not a regular file")
    if os.path.lexists(dst):
        if os.path.exists(dst) and os.path.samefile(src, dst):
            raise _CommandError(f"{dst} is the source file {src}; refusing to overwrite it")
        if os.path.isdir(dst):
            raise _CommandError(f"{dst} is a directory; give a file name ending in .npz or .safetensors")
        if not args.force:
            raise _CommandError(f"{dst} exists; pass --force to replace it")
    try:
        state_dict = load_weights(src)
    except (WeightsError, OSError) as err:
        raise _CommandError(f"cannot read {src}: {err}") from None
    if args.arch:
        from .models import fit_state_dict

        try:
            fit_state_dict(args.arch, state_dict, str(src))
        except (WeightsError, ValueError) as err:
            raise _CommandError(f"{err}\nnothing was written") from None
    try:
        save_weights(state_dict, dst)
    except (WeightsError, OSError) as err:
        raise _CommandError(f"cannot write {dst}: {err}") from None
    total = sum(int(v.size) for v in state_dict.values())
    print(f"wrote {dst}: {len(state_dict)} arrays, {total:,} values", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- fetch
def _fetch(args) -> int:
    from .errors import WeightsError
    from .fetch import FetchError, fetch

    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = _progress_bar(total, "B")
            if bar is None:
                bar = False
        if bar:
            bar.update(done - bar.n)

    try:
        path = fetch(
            args.arch, variant=args.variant, dest=args.dest, base_url=args.url, timeout=args.timeout, progress=progress
        )
    except (FetchError, WeightsError, ValueError, OSError) as err:
        raise _CommandError(err) from None
    finally:
        if bar:
            bar.close()
    print(path)
    return 0


# ---------------------------------------------------------------------------- train
def _add_train_parser(commands) -> None:
    from .train import TrainConfig

    d = TrainConfig()
    p = commands.add_parser(
        "train",
        help="train a ResNet from scratch on scikit-learn's digits (forward, backward, SGD in NumPy)",
        description="Train ARCH (num_classes=10) on sklearn.datasets.load_digits (1,797 8x8 images, shipped with "
        "scikit-learn, nothing downloaded), upsampled to SIZE x SIZE, with a seeded held-out split, "
        "SGD with momentum and a cosine learning rate. Writes OUT/digits_ARCH.npz (weights, readable "
        "by load_weights), OUT/curves.png (loss and accuracy) and OUT/history.json. Existing files "
        "are replaced only with --force. Needs npresnet[train].",
    )
    p.add_argument("dataset", choices=("digits",), help="the data set (only 'digits')")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--arch", default=d.arch, metavar="ARCH", help=f"architecture (default {d.arch})")
    p.add_argument(
        "--size",
        type=_positive_int,
        default=d.size,
        metavar="S",
        help=f"input size, a multiple of 8 (default {d.size})",
    )
    p.add_argument("--epochs", type=_positive_int, default=d.epochs, metavar="E", help=f"default {d.epochs}")
    p.add_argument(
        "--batch-size", type=_positive_int, default=d.batch_size, metavar="B", help=f"default {d.batch_size}"
    )
    p.add_argument("--lr", type=float, default=d.lr, help=f"initial learning rate (default {d.lr})")
    p.add_argument(
        "--shift",
        type=int,
        default=d.shift,
        metavar="P",
        help=f"random translation of training images by up to P original pixels (default {d.shift})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"seeds the split, the initialisation and the batches (default {d.seed})",
    )
    p.add_argument(
        "--train-subset",
        type=_positive_int,
        default=None,
        metavar="N",
        help="train on the first N training images only (a quick check; held-out set unchanged)",
    )
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(run=_train)


def _train(args) -> int:
    import time

    from .train import TrainConfig, plot_history, train_digits
    from .weights import save_weights

    try:
        config = TrainConfig.from_args(args)
    except ValueError as err:
        raise _CommandError(str(err)) from None
    os.makedirs(args.out, exist_ok=True)
    paths = {name: os.path.join(args.out, name) for name in (f"digits_{config.arch}.npz", "curves.png", "history.json")}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not args.force:
        raise _CommandError(f"{', '.join(existing)} exist(s); use --force to replace")
    bar = _progress_bar(None, "batch")
    if bar is None:
        print(
            f"training {config.arch} on digits at {config.size}x{config.size} for {config.epochs} epochs...",
            file=sys.stderr,
        )

    def on_batch(epoch, i, n, loss):
        if bar is not None:
            bar.total = n * config.epochs
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(1)

    start = time.perf_counter()
    data = None
    if args.train_subset is not None:
        from .train import load_digits_split

        data = load_digits_split(config.size, config.test_fraction, config.seed)
        data = (data[0][: args.train_subset], data[1][: args.train_subset], *data[2:])
    model, history = train_digits(config, data=data, on_batch=on_batch)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    weights, curves, record = paths.values()
    save_weights(model.state_dict(), weights)
    accuracy = history["test_accuracy"][-1]
    plot_history(
        history,
        curves,
        title=f"{config.arch} on digits, {config.size}x{config.size}, seed {config.seed}: "
        f"{100 * accuracy:.2f}% held out",
    )
    from ._atomic import atomic_write

    with atomic_write(record) as f:
        f.write(json.dumps({"config": vars(config), "seconds": seconds, **history}, indent=1).encode())
    for epoch, (loss, acc) in enumerate(zip(history["train_loss"], history["test_accuracy"]), 1):
        print(f"epoch {epoch:3d}  train loss {loss:.4f}  held-out accuracy {100 * acc:6.2f}%")
    print(f"held-out accuracy {100 * accuracy:.2f}% after {config.epochs} epochs in {seconds:.1f} s")
    print(f"wrote {weights}, {curves}, {record}")
    return 0


# ---------------------------------------------------------------------------- embed
_EMBED_EXAMPLES = """examples:
  npresnet embed photos/ --arch resnet50 --weights resnet50.npz --out feats.zarr --predictions preds.parquet
  npresnet embed 'shards/**/*.jpg' --arch resnet18 --weights r18.npz --out feats.zarr --workers 2
  npresnet embed /shared/photos --arch resnet50 --weights /shared/r50.npz --out /shared/feats.zarr \\
      --scheduler tcp://10.0.0.5:8786       # a running Dask cluster whose workers see /shared

Re-running the same command after an interruption computes only the missing chunks.
"""


def _add_embed_parser(commands, archs):
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
    p.add_argument("--top", type=_positive_int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
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
        type=_positive_int,
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
        type=_positive_int,
        default=256,
        metavar="S",
        help="shorter side after resizing (default 256; torchvision's V2 weights use 232)",
    )
    p.add_argument("--crop-size", type=_positive_int, default=224, metavar="S", help="center crop (default 224)")
    p.set_defaults(run=_embed)


def _embed(args) -> int:
    if args.out is None and args.predictions is None:
        raise _CommandError("nothing to write: give --out FEATURES.zarr, --predictions PREDS.parquet, or both")
    if args.scheduler is not None and (args.workers is not None or args.threads):
        raise _CommandError("--workers and --threads size the local cluster; they do not apply with --scheduler")
    from .distributed import embed

    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = _progress_bar(total, "chunks") or False
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
        raise _CommandError(err) from None
    finally:
        if bar:
            bar.close()
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
