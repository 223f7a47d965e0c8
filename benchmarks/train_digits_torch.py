"""The digits run of ``npresnet train digits``, twice: in npresnet and in PyTorch, from the same start.

Both runs start from the same weights (npresnet's seeded initialisation, handed to torchvision
through its state dict), see the same preprocessed data and the same mini-batches in the same
order (:func:`npresnet.train.epoch_batches`), and use the same SGD and cosine schedule
(``torch.optim.SGD``, ``torch.optim.lr_scheduler.CosineAnnealingLR``). The only differences
are the two libraries' arithmetic. Prints both held-out accuracies per epoch and the largest
relative difference of the per-batch losses.

    python benchmarks/train_digits_torch.py                 # the README's run (8 epochs)
    python benchmarks/train_digits_torch.py --epochs 1 --train-subset 256   # a quick look

Needs npresnet[train] and torch/torchvision.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from npresnet.train import TrainConfig, build_model, epoch_batches, load_digits_split, train_digits  # noqa: E402


def train_torch(config: TrainConfig, state_dict, data):
    """PyTorch twin of :func:`npresnet.train.train_digits`; returns ``(model, history)`` with the same keys."""
    import torch
    import torch.nn.functional as TF
    import torchvision

    model = getattr(torchvision.models, config.arch)(num_classes=10)
    model = model.to(torch.float64 if data[0].dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    x_train, y_train = data[:2]
    x_test, y_test = torch.from_numpy(data[2]), torch.from_numpy(data[3])
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    history = {"batch_loss": [], "train_loss": [], "test_loss": [], "test_accuracy": [], "lr": []}
    for epoch in range(config.epochs):
        model.train()
        history["lr"].append(opt.param_groups[0]["lr"])
        losses = []
        for x, y in epoch_batches(x_train, y_train, config, epoch):
            loss = TF.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        schedule.step()
        history["batch_loss"] += losses
        history["train_loss"].append(float(np.mean(losses)))
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(x_test[i : i + 256]) for i in range(0, len(x_test), 256)])
        history["test_loss"].append(TF.cross_entropy(logits, y_test).item())
        history["test_accuracy"].append((logits.argmax(1) == y_test).double().mean().item())
    return model, history


def run_both(config: TrainConfig, train_subset=None, dtype="float32"):
    """Train the same start in both libraries; returns ``(npresnet history, torch history, seconds each)``."""
    data = load_digits_split(config.size, config.test_fraction, config.seed, dtype=dtype)
    if train_subset is not None:
        data = (data[0][:train_subset], data[1][:train_subset], data[2], data[3])
    model = build_model(config).to(dtype=dtype)
    start = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    _, ours = train_digits(config, model=model, data=data)
    t1 = time.perf_counter()
    _, theirs = train_torch(config, start, data)
    t2 = time.perf_counter()
    return ours, theirs, (t1 - t0, t2 - t1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = TrainConfig()
    parser.add_argument("--arch", default=defaults.arch)
    parser.add_argument("--size", type=int, default=defaults.size)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--shift", type=int, default=defaults.shift)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--train-subset", type=int, default=None, help="train on the first N training images")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = TrainConfig.from_args(args)
    ours, theirs, (t_ours, t_torch) = run_both(config, args.train_subset, dtype=args.dtype)
    print(f"{'epoch':>5} {'npresnet acc':>13} {'torch acc':>10} {'npresnet loss':>14} {'torch loss':>11}")
    for e in range(config.epochs):
        print(
            f"{e + 1:5d} {100 * ours['test_accuracy'][e]:12.2f}% {100 * theirs['test_accuracy'][e]:9.2f}% "
            f"{ours['train_loss'][e]:14.4f} {theirs['train_loss'][e]:11.4f}"
        )
    a, b = np.asarray(ours["batch_loss"]), np.asarray(theirs["batch_loss"])
    print(f"largest relative difference of the per-batch losses: {np.max(np.abs(a - b) / np.abs(b)):.2e}")
    print(
        f"final held-out accuracy: npresnet {100 * ours['test_accuracy'][-1]:.2f}%, "
        f"torch {100 * theirs['test_accuracy'][-1]:.2f}%"
    )
    print(f"training time: npresnet {t_ours:.1f} s, torch {t_torch:.1f} s (this machine, now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
