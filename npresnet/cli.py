"""The ``npresnet`` command: ``summary``, ``predict``, ``convert``, ``fetch``.

The only module of npresnet that prints. Exit status: 0 on success, 1 when the work
failed or some inputs were bad (the others were still processed), 2 for usage errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main", "build_parser"]

_EPILOG = """examples:
  npresnet summary resnet18
  npresnet summary resnet50 --input-size 300x200 --depth 2 --format markdown
  npresnet fetch resnet18
  npresnet predict cat.jpg dog.png --arch resnet18 --weights "$(npresnet fetch resnet18)"
  npresnet convert resnet18-f37072fd.pth resnet18.safetensors --arch resnet18
"""


class _CommandError(Exception):
    """A failure to report on stderr as ``npresnet <cmd>: error: ...`` with exit status 1."""


def _arch_names():
    from .models import ARCHITECTURES

    return list(ARCHITECTURES)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
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
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"npresnet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    archs = ", ".join(_arch_names())

    p = commands.add_parser(
        "summary", help="per-layer table: shapes, parameters, MACs, receptive fields (no weights needed)",
        description="Walk the real model with a shape-only pass and print, per layer: torchvision module name, "
                    "type with kernel/stride/padding, output C@H×W, parameters, multiply-accumulates, and the "
                    "receptive field (size / jump, in input pixels). Totals: parameters, MACs (FLOPs = 2 × MACs), "
                    "peak activation memory of an inference pass, and the layer count as the paper gives it. "
                    f"Architectures: {archs}.")
    p.add_argument("arch", metavar="ARCH", help="architecture name, e.g. resnet18")
    p.add_argument("--input-size", type=_input_size, default=(224, 224), metavar="H[xW]",
                   help="input height and width (default 224; e.g. 512, 300x200)")
    p.add_argument("--batch", type=_positive_int, default=1, metavar="N",
                   help="batch size N; MACs and memory are for the whole batch (default 1)")
    p.add_argument("--depth", type=_positive_int, default=None, metavar="D",
                   help="fold rows: 1 = stem layers + stages, 2 = blocks, 3 = layers in blocks "
                        "(shortcut folded); default: every layer")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--maxpool-padding", type=int, choices=(0, 1), default=1,
                   help="stem max pool padding: 1 as torchvision (default), 0 as many re-implementations")
    p.set_defaults(run=_summary)

    p = commands.add_parser(
        "predict", help="classify images with ImageNet weights (top-K classes and probabilities)",
        description="Classify images: each is read with Pillow (converted to RGB), preprocessed exactly as "
                    "torchvision's ImageNet preset (shorter side 256 bilinear, center crop 224, normalise), "
                    "and run through the network. Unreadable files are reported on stderr and the exit status "
                    "is 1; the other images are still classified. Needs npresnet[tools].")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--arch", required=True, metavar="ARCH", help=f"one of {archs}")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="a .pth, .npz or .safetensors state dict (see `npresnet fetch`)")
    p.add_argument("--top", type=_positive_int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--batch-size", type=_positive_int, default=16, metavar="B",
                   help="images per forward pass (default 16)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--resize-size", type=_positive_int, default=256, metavar="S",
                   help="shorter side after resizing (default 256; torchvision's V2 weights use 232)")
    p.add_argument("--crop-size", type=_positive_int, default=224, metavar="S", help="center crop (default 224)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(run=_predict)

    p = commands.add_parser(
        "convert", help="convert weights between .pth, .npz and .safetensors",
        description="Read SRC (.pth read safely without PyTorch, .npz or .safetensors; the format is detected "
                    "from the content) and write DST as .npz or .safetensors (from its suffix), atomically. "
                    "SRC is never overwritten; an existing DST is replaced only with --force.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--arch", metavar="ARCH",
                   help="check every key and shape against this architecture first; report all mismatches")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.set_defaults(run=_convert)

    p = commands.add_parser(
        "fetch", help="download torchvision's ImageNet weights, verify, cache as .npz, print the path",
        description="Download torchvision's published weights for ARCH, verify the SHA-256 prefix in the file "
                    "name, convert to .npz in the cache directory ($NPRESNET_HOME, else the platform cache dir) "
                    "and print its path. A cached file is reused. Nothing unverified is ever left under the "
                    "final name.")
    p.add_argument("arch", metavar="ARCH")
    p.add_argument("--variant", default=None, metavar="NAME",
                   help="torchvision weights name: IMAGENET1K_V1 (default) or IMAGENET1K_V2 where published")
    p.add_argument("--dest", default=None, metavar="DIR", help="cache directory (default $NPRESNET_HOME or the "
                                                               "platform's user cache dir)")
    p.add_argument("--url", default=None, metavar="BASE",
                   help="base address of the .pth files (default $NPRESNET_WEIGHTS_URL or "
                        "https://download.pytorch.org/models/)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="network timeout per connection and read (default 30)")
    p.set_defaults(run=_fetch)
    _add_embed_parser(commands, archs)
    return parser


def main(argv=None) -> int:
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
        result = summarize(args.arch, args.input_size, batch=args.batch, depth=args.depth,
                           maxpool_padding=args.maxpool_padding)
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
def _load_model(arch, path):
    """Build ``arch`` with the weights in ``path``, the classifier sized by the file."""
    from .errors import WeightsError
    from .summary import build_model
    from .weights import load_weights

    try:
        state_dict = load_weights(path)
    except (WeightsError, OSError) as err:
        raise _CommandError(f"cannot read weights: {err}") from None
    fc = state_dict.get("fc.weight")
    num_classes = fc.shape[0] if getattr(fc, "ndim", 0) == 2 else 1000
    try:
        model = build_model(arch, num_classes=num_classes)
        model.load_state_dict(state_dict)
    except (ValueError, WeightsError) as err:
        raise _CommandError(f"{path} does not fit {arch}: {err}") from None
    return model


def _predict(args) -> int:
    import numpy

    from .backend import available_backends, to_backend, to_numpy
    from .imagenet import imagenet_classes
    from .preprocess import ImageError, load_and_preprocess

    if args.backend not in available_backends():
        from .backend import cupy_unavailable_reason

        raise _CommandError(f"backend {args.backend!r} is not available: {cupy_unavailable_reason()}")
    model = _load_model(args.arch, args.weights)
    if args.backend != "numpy":
        model.to(args.backend)
    num_classes = model.fc.out_features
    labels = imagenet_classes() if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]
    k = min(args.top, num_classes)

    bar = _progress_bar(len(args.images), "images")
    results, failures = [], 0
    try:
        for start in range(0, len(args.images), args.batch_size):
            paths = args.images[start:start + args.batch_size]
            good, arrays = [], []
            for path in paths:
                try:
                    arrays.append(load_and_preprocess(path, args.resize_size, args.crop_size))
                    good.append(path)
                except ImageError as err:
                    failures += 1
                    _warn(bar, f"npresnet predict: skipped {err}")
            if arrays:
                batch = numpy.stack(arrays)                        # (B, 3, 224, 224)
                logits = to_numpy(model(to_backend(batch, args.backend))).astype(numpy.float64)  # (B, classes)
                logits -= logits.max(axis=1, keepdims=True)
                probs = numpy.exp(logits)
                probs /= probs.sum(axis=1, keepdims=True)
                for path, p in zip(good, probs):
                    top = numpy.argsort(-p, kind="stable")[:k]
                    results.append({"path": path, "top": [
                        {"index": int(i), "label": labels[i], "prob": float(p[i])} for i in top]})
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
    if failures:
        print(f"npresnet predict: {failures} of {len(args.images)} image(s) could not be read", file=sys.stderr)
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


def _warn(bar, message):
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


# ---------------------------------------------------------------------------- convert
def _convert(args) -> int:
    from .errors import WeightsError
    from .weights import load_weights, save_weights

    src, dst = args.src, args.dst
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
        from .nn import check_state_dict, state_dict_report
        from .summary import build_model

        try:
            fc = state_dict.get("fc.weight")
            num_classes = fc.shape[0] if getattr(fc, "ndim", 0) == 2 else 1000
            model = build_model(args.arch, num_classes=num_classes)
        except ValueError as err:
            raise _CommandError(err) from None
        lines = state_dict_report(*check_state_dict(model.state_dict(), state_dict))
        if lines:
            raise _CommandError(f"{src} does not fit {args.arch} ({len(lines)} problem(s)); nothing written:\n  "
                                + "\n  ".join(lines))
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
        path = fetch(args.arch, variant=args.variant, dest=args.dest, base_url=args.url, timeout=args.timeout,
                     progress=progress)
    except (FetchError, WeightsError, ValueError, OSError) as err:
        raise _CommandError(err) from None
    finally:
        if bar:
            bar.close()
    print(path)
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
        "embed", help="features (Zarr) and predictions (Parquet) for many images, on Dask",
        description="Run the network over many images as Dask tasks of --batch-size images each, on a local "
                    "cluster started for the run (one worker per core) or on the cluster at --scheduler. "
                    "Images are preprocessed exactly as `npresnet predict` does. Writes the pooled penultimate "
                    "activations (or --layer's output) as a Zarr array, row i = image i, with the paths beside "
                    "it, and/or the top-K classes as a Parquet dataset. Chunks are written atomically; running "
                    "the same command again resumes, computing only missing chunks. An output made for other "
                    "images or weights is refused. Unreadable images become error rows (NaN features) and the "
                    "exit status is 1. Needs npresnet[distributed].",
        epilog=_EMBED_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="image files, directories (every image below, sorted) or quoted glob patterns")
    p.add_argument("--arch", required=True, metavar="ARCH", help=f"one of {archs}")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="a .pth, .npz or .safetensors state dict (see `npresnet fetch`); read and checked "
                        "before anything runs, then sent to each worker once")
    p.add_argument("--out", metavar="FEATURES.zarr", help="Zarr store to write the features to")
    p.add_argument("--predictions", metavar="PREDS.parquet",
                   help="Parquet dataset (a directory) to write path, top-K indices, probabilities, labels "
                        "and error per image to")
    p.add_argument("--layer", default="avgpool", metavar="NAME",
                   help="module whose output is stored as features, flattened (default avgpool: 512 values "
                        "per image for resnet18/34, 2048 for the others)")
    p.add_argument("--top", type=_positive_int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="B",
                   help="images per task and rows per output chunk (default 32; fixed for an output)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this Dask scheduler (tcp://host:8786); its workers must read the images and "
                        "write the outputs at the same paths (a shared file system)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="workers of the local cluster (default: one per CPU core)")
    p.add_argument("--threads", action="store_true",
                   help="local cluster of threads in this process instead of worker processes")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="array backend on the workers; for cupy run one worker per GPU (e.g. dask-cuda's "
                        "LocalCUDACluster, then --scheduler)")
    p.add_argument("--resize-size", type=_positive_int, default=256, metavar="S",
                   help="shorter side after resizing (default 256; torchvision's V2 weights use 232)")
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
        result = embed(args.images, args.arch, args.weights, features=args.out, predictions=args.predictions,
                       scheduler=args.scheduler, n_workers=args.workers, processes=not args.threads,
                       batch_size=args.batch_size, top=args.top, layer=args.layer, resize_size=args.resize_size,
                       crop_size=args.crop_size, backend=args.backend, progress=progress)
    except (ValueError, OSError, RuntimeError) as err:
        raise _CommandError(err) from None
    finally:
        if bar:
            bar.close()
    shown = 20
    for path, reason in result.errors[:shown]:
        print(f"npresnet embed: skipped {reason}", file=sys.stderr)
    if len(result.errors) > shown:
        print(f"npresnet embed: ... and {len(result.errors) - shown} more (see the error column)", file=sys.stderr)
    outputs = " and ".join(p for p in (result.features, result.predictions) if p)
    print(f"{outputs}: {result.num_images} images in {result.chunks} chunks; computed {result.computed}, "
          f"{result.skipped} were already done", file=sys.stderr)
    if result.errors:
        print(f"npresnet embed: {len(result.errors)} of {result.num_images} image(s) could not be read "
              "(error rows written)", file=sys.stderr)
        return 1
    return 0
