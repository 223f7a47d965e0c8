"""``npresnet train digits``: train a ResNet from scratch on scikit-learn's digits."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .args import non_negative_int, positive_int, train_batch_size, train_epochs, train_size
from .common import CommandError, check_arch, progress_bar

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], archs: str) -> None:
    """Add the ``train`` subcommand to ``commands`` (``archs``: the names ``--arch`` accepts)."""
    from ..train import TrainConfig

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
        type=train_size,
        default=d.size,
        metavar="S",
        help=f"input size, a multiple of 8 (default {d.size})",
    )
    p.add_argument("--epochs", type=train_epochs, default=d.epochs, metavar="E", help=f"default {d.epochs}")
    p.add_argument(
        "--batch-size", type=train_batch_size, default=d.batch_size, metavar="B", help=f"default {d.batch_size}"
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
        type=non_negative_int,
        default=d.seed,
        help=f"seeds the split, the initialisation and the batches (default {d.seed})",
    )
    p.add_argument(
        "--train-subset",
        type=positive_int,
        default=None,
        metavar="N",
        help="train on the first N training images only, N >= 2 (a quick check; held-out set unchanged)",
    )
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``npresnet train`` with the parsed ``args``; return the exit status."""
    import time

    from ..train import TrainConfig, plot_history, train_digits
    from ..weights import save_weights

    out: str = args.out
    train_subset: int | None = args.train_subset
    check_arch(args.arch)
    try:
        config = TrainConfig.from_args(args)
        config.check_memory(batch_name="--batch-size", size_name="--size")
    except ValueError as err:
        raise CommandError(str(err)) from None
    if train_subset is not None and train_subset < 2:
        raise CommandError(f"--train-subset {train_subset}: at least 2 images (batch norm needs two per batch)")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise CommandError(f"--out {out}: exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise CommandError(f"--out {out}: cannot create the directory ({err.strerror})") from None
    paths = {name: os.path.join(out, name) for name in (f"digits_{config.arch}.npz", "curves.png", "history.json")}
    existing = [p for p in paths.values() if os.path.lexists(p)]
    for path in existing:  # --force replaces files, never a directory, FIFO or device of that name
        if os.path.isdir(path) or not (os.path.islink(path) or os.path.isfile(path)):
            raise CommandError(f"{path} exists and is not a regular file; move it away (nothing was trained)")
    if existing and not args.force:
        raise CommandError(f"{', '.join(existing)} exist(s); use --force to replace")
    bar = progress_bar(None, "batch")
    if bar is None:
        print(
            f"training {config.arch} on digits at {config.size}x{config.size} for {config.epochs} epochs...",
            file=sys.stderr,
        )

    def on_batch(epoch: int, i: int, n: int, loss: float) -> None:
        if bar is not None:
            bar.total = n * config.epochs
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(1)

    start = time.perf_counter()
    data = None
    if train_subset is not None:
        from ..train import load_digits_split

        x_train, y_train, x_test, y_test = load_digits_split(config.size, config.test_fraction, config.seed)
        data = (x_train[:train_subset], y_train[:train_subset], x_test, y_test)
    try:
        model, history = train_digits(config, data=data, on_batch=on_batch)
    except FloatingPointError as err:
        raise CommandError(f"{err} (--lr {config.lr:g}); nothing was written") from None
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    weights, curves, record = paths.values()
    accuracy = history["test_accuracy"][-1]
    from .._atomic import atomic_write

    try:
        save_weights(model.state_dict(), weights)
        plot_history(
            history,
            curves,
            title=f"{config.arch} on digits, {config.size}x{config.size}, seed {config.seed}: "
            f"{100 * accuracy:.2f}% held out",
        )
        with atomic_write(record) as f:
            f.write(json.dumps({"config": vars(config), "seconds": seconds, **history}, indent=1).encode())
    except OSError as err:  # each file is whole or absent: a failure leaves those written before it
        raise CommandError(f"cannot write the outputs in {out}: {err}") from None
    for epoch, (loss, acc) in enumerate(zip(history["train_loss"], history["test_accuracy"]), 1):
        print(f"epoch {epoch:3d}  train loss {loss:.4f}  held-out accuracy {100 * acc:6.2f}%")
    print(f"held-out accuracy {100 * accuracy:.2f}% after {config.epochs} epochs in {seconds:.1f} s")
    print(f"wrote {weights}, {curves}, {record}")
    return 0
