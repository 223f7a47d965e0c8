"""``npresnet predict IMAGE... --arch ARCH --weights FILE``: top-K classes of images, in one process."""

from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from typing import TYPE_CHECKING, Any

from ..limits import MAX_ACTIVATION_BYTES, MAX_BATCH_SIZE
from .args import add_preprocessing_arguments, batch_size, top_k
from .common import CommandError, check_activation_memory, check_arch, load_model, progress_bar

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], archs: str) -> None:
    """Add the ``predict`` subcommand to ``commands`` (``archs``: the names ``--arch`` accepts)."""
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
        type=top_k,
        default=5,
        metavar="K",
        help="classes per image (default 5; at most the number of classes of the weights)",
    )
    p.add_argument(
        "--batch-size",
        type=batch_size,
        default=16,
        metavar="B",
        help=f"images per forward pass (default 16, at most {MAX_BATCH_SIZE}; the activations of "
        f"one pass may take at most {MAX_ACTIVATION_BYTES // 2**30} GiB)",
    )
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    add_preprocessing_arguments(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


def _check_printable(paths: Sequence[str], format: str) -> None:
    """Refuse, before any work, an image path that stdout cannot write (a non-UTF-8 name, a strict ASCII locale).

    A name that is not valid UTF-8 reaches Python with its bytes escaped as lone surrogates
    (PEP 383); stdout writes those back as the original bytes only with ``surrogateescape``, and
    JSON cannot hold them at all.
    """
    encoding, errors = sys.stdout.encoding or "utf-8", sys.stdout.errors or "strict"
    if format == "json":
        encoding, errors = "utf-8", "strict"
    for path in paths:
        try:
            path.encode(encoding, errors)
        except UnicodeEncodeError:
            raise CommandError(
                f"{os.fsencode(path)!r}: the file name cannot be written to stdout ({encoding}, errors={errors}); "
                "rename the file, or set PYTHONIOENCODING=utf-8:surrogateescape for the table format"
            ) from None


_LINE_BREAKING = {"Cc", "Zl", "Zp"}  # control characters and the line and paragraph separators


def _visible(text: str) -> str:
    r"""``text`` with each control character (newline, tab, ...) and line separator written as its escape.

    A file may be named ``"a\n  1. 99.99%  tabby cat (281)\nb.png"``: printed as it is, its name
    would forge a line of the table. Other characters stay as they are: a narrow no-break space in
    a screenshot's name, and the surrogates of a non-UTF-8 name, for stdout's ``surrogateescape`` to
    write back (:func:`_check_printable`).
    """
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in _LINE_BREAKING else c for c in text)


def run(args: argparse.Namespace) -> int:
    """Run ``npresnet predict`` with the parsed ``args``; return the exit status."""
    import numpy

    from ..backend import available_backends, to_backend, to_numpy
    from ..imagenet import imagenet_classes
    from ..predictions import softmax_topk
    from ..preprocess import ImageError, load_and_preprocess

    arch: str = args.arch
    backend: str = args.backend
    images: list[str] = args.images
    batch_size: int = args.batch_size
    k: int = args.top
    if backend not in available_backends():
        from ..backend import cupy_unavailable_reason

        raise CommandError(f"backend {backend!r} is not available: {cupy_unavailable_reason()}")
    check_arch(arch)
    _check_printable(images, args.format)
    check_activation_memory(arch, args.crop_size, min(batch_size, len(images)))
    model = load_model(arch, args.weights)
    if backend != "numpy":
        model.to(backend)
    num_classes = model.fc.out_features
    if k > num_classes:
        raise CommandError(f"--top {k} asks for more classes than the {num_classes} of {args.weights}")
    labels = imagenet_classes() if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]

    bar = progress_bar(len(images), "images")
    results: list[dict[str, Any]] = []  # the JSON objects of --format json
    failures: list[str] = []
    try:
        for start in range(0, len(images), batch_size):
            paths = images[start : start + batch_size]
            good: list[str] = []
            arrays = []
            for path in paths:
                try:
                    arrays.append(load_and_preprocess(path, args.resize_size, args.crop_size))
                    good.append(path)
                except ImageError as err:
                    failures.append(f"npresnet predict: skipped {err}")
            if arrays:
                batch = numpy.stack(arrays)  # (B, 3, crop, crop)
                logits = to_numpy(model(to_backend(batch, backend)))  # (B, classes)
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
            print(_visible(entry["path"]))
            for rank, t in enumerate(entry["top"], 1):
                print(f"  {rank}. {t['prob']:7.2%}  {t['label']} ({t['index']})")
    if failures:  # after the results, so they end with what went wrong (stderr)
        sys.stdout.flush()
        for line in failures:
            print(_visible(line), file=sys.stderr)
        print(f"npresnet predict: {len(failures)} of {len(images)} image(s) could not be read", file=sys.stderr)
        return 1
    return 0
