"""Training loop: a ResNet learns scikit-learn's handwritten digits, end to end in NumPy.

One epoch is, per mini-batch::

    logits = model(x)                                   # training-mode forward: layers save activations
    loss = F.cross_entropy(logits, y)
    model.backward(F.cross_entropy_backward(1.0, logits, y))   # gradients into each module's grads
    optimizer.step(); optimizer.zero_grad()

The data set is ``sklearn.datasets.load_digits`` (1,797 8×8 images, 10 classes, shipped with
scikit-learn: nothing is downloaded). Images are scaled to [0, 1], upsampled by pixel repetition
to ``size × size``, copied to 3 channels (a torchvision ResNet's stem takes RGB) and standardised
with the training split's mean and standard deviation. Everything random — the held-out split,
the initialisation, the batch order — comes from one seed, so a run is reproducible, and
:func:`epoch_batches` gives a PyTorch twin of the run exactly the same batches.

Needs ``npresnet[train]`` (scikit-learn; matplotlib for :func:`plot_history`).
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import TYPE_CHECKING

import numpy

from . import functional as F
from .limits import MAX_TRAIN_BATCH, MAX_TRAIN_EPOCHS, MAX_TRAIN_SIZE
from .models import ARCHITECTURES
from .optim import SGD, CosineAnnealingLR

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._typing import Array, PathLike
    from .models import ResNet
    from .nn import Module

__all__ = ["TrainConfig", "load_digits_split", "epoch_batches", "evaluate", "train_digits", "plot_history"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One reproducible digits run.

    Attributes
    ----------
    arch : str
        A builder of :data:`npresnet.ARCHITECTURES`, with ``num_classes=10``.
    size : int
        Input height and width; a multiple of 8 (the digits are upsampled by pixel repetition).
    epochs, batch_size : int
    lr, momentum, weight_decay : float
        SGD; the learning rate follows a cosine from ``lr`` to 0 over ``epochs``.
    shift : int
        Random translation of the training images by up to this many original pixels (0: none).
    test_fraction : float
        Held out, never trained on.
    seed : int
    """

    arch: str = "resnet18"
    size: int = 16
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    shift: int = 1
    test_fraction: float = 0.2
    seed: int = 0

    @classmethod
    def from_args(cls, args: object) -> TrainConfig:
        """Return the config of parsed command-line arguments.

        Every field ``args`` has (``--batch-size`` gives ``batch_size``); the others keep their
        defaults. Used by ``npresnet train`` and the
        PyTorch twin in ``benchmarks/train_digits_torch.py``, which take the same flags.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})

    def __post_init__(self) -> None:
        """Check every field, with a one-line error naming it."""
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {self.arch!r}")
        if not (isinstance(self.size, int) and 8 <= self.size <= MAX_TRAIN_SIZE and self.size % 8 == 0):
            raise ValueError(f"size must be a multiple of 8 in [8, {MAX_TRAIN_SIZE}], got {self.size!r}")
        if not (isinstance(self.epochs, int) and 1 <= self.epochs <= MAX_TRAIN_EPOCHS):
            raise ValueError(f"epochs must be in [1, {MAX_TRAIN_EPOCHS}], got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and 2 <= self.batch_size <= MAX_TRAIN_BATCH):
            raise ValueError(
                f"batch_size must be in [2, {MAX_TRAIN_BATCH}] (batch norm needs 2), got {self.batch_size!r}"
            )
        if not (isinstance(self.shift, int) and 0 <= self.shift <= 3):
            raise ValueError(f"shift must be an int in [0, 3], got {self.shift!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def check_memory(self, batch_name: str = "batch_size", size_name: str = "size") -> None:
        """Refuse (ValueError) a training step over :data:`npresnet.limits.MAX_ACTIVATION_BYTES` of working memory.

        Every layer's output is held for the backward pass
        (:func:`npresnet.summary.working_memory.working_memory_bytes`); :func:`train_digits` calls this
        before any work, the CLI with its flags' names. Not part of ``__post_init__``: it runs a
        shape-only pass of the network, too slow for a config built at every command line's start.
        """
        from .summary.working_memory import check_working_memory

        check_working_memory(
            self.arch, self.size, self.batch_size, batch_name=batch_name, crop_name=size_name, training=True
        )


def load_digits_split(
    size: int = 16, test_fraction: float = 0.2, seed: int = 0, dtype: Any = "float32"
) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Return the digits, preprocessed and split.

    Returns
    -------
    (x_train, y_train, x_test, y_test)
        ``x`` of shape (n, 3, size, size) and ``dtype``, standardised with the training split's
        statistics; ``y`` int64 labels 0–9. The split is a seeded permutation.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("training on the digits needs scikit-learn: pip install 'npresnet[train]'") from None
    digits = load_digits()
    images = digits.images.astype(numpy.float64) / 16.0  # (1797, 8, 8), values 0..16 -> [0, 1]
    labels = digits.target.astype(numpy.int64)
    factor = size // 8
    images = images.repeat(factor, axis=1).repeat(factor, axis=2)  # (1797, size, size), nearest upsampling
    x = numpy.repeat(images[:, None], 3, axis=1)  # (1797, 3, size, size): grey as RGB
    order = numpy.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = ((x - mean) / std).astype(dtype)
    return x[train], labels[train], x[test], labels[test]


def epoch_batches(
    x: numpy.ndarray, y: numpy.ndarray, config: TrainConfig, epoch: int
) -> list[tuple[numpy.ndarray, numpy.ndarray]]:
    """Return the mini-batches of one epoch: ``[(x_batch, y_batch), ...]``, seeded by ``(config.seed, epoch)``.

    The training images are shuffled, and with ``config.shift > 0`` each image is translated by a
    random whole number of original (8×8) pixels in ``[-shift, shift]`` along each axis, the
    uncovered border filled with the background (data augmentation: the digits are small and few).
    A final batch of a single sample is merged into the previous one (batch norm needs two values).
    """
    rng = numpy.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(x))
    index = [order[i : i + config.batch_size] for i in range(0, len(x), config.batch_size)]
    if len(index) > 1 and len(index[-1]) == 1:
        index[-2:] = [numpy.concatenate(index[-2:])]
    batches = []
    for idx in index:
        xb = x[idx]
        if config.shift:
            step = config.size // 8  # one original pixel
            pad = config.shift * step
            background = x.min()  # a blank pixel, after standardisation
            padded = numpy.pad(xb, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=background)
            offsets = rng.integers(-config.shift, config.shift + 1, size=(len(idx), 2)) * step + pad
            xb = numpy.stack(
                [padded[n, :, oy : oy + config.size, ox : ox + config.size] for n, (oy, ox) in enumerate(offsets)]
            )
        batches.append((xb, y[idx]))
    return batches


def evaluate(model: Module, x: Array, y: Array, batch_size: int = 256) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` in eval mode on ``x, y``."""
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size])
        total_loss += float(F.cross_entropy(logits, y[i : i + batch_size], reduction="sum"))
        correct += int((logits.argmax(axis=1) == y[i : i + batch_size]).sum())
    return total_loss / len(x), correct / len(x)


def build_model(config: TrainConfig) -> ResNet:
    """Return the untrained model of a run: ``ARCHITECTURES[arch](num_classes=10)`` seeded by ``config.seed``."""
    return ARCHITECTURES[config.arch](num_classes=10, rng=config.seed)


def train_digits(
    config: TrainConfig = TrainConfig(),
    model: ResNet | None = None,
    data: tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray] | None = None,
    on_batch: Callable[[int, int, int, float], object] | None = None,
) -> tuple[ResNet, dict[str, list[float]]]:
    """Train on the digits as ``config`` says; evaluate on the held-out split after every epoch.

    Parameters
    ----------
    config : TrainConfig
    model : ResNet, optional
        The model to train (default :func:`build_model`); trained in place.
    data : tuple, optional
        ``load_digits_split(...)``'s four arrays (default: loaded from ``config``).
    on_batch : callable ``(epoch, batch_index, n_batches, loss)``, optional
        Called after every optimiser step (the CLI's progress bar).

    Returns
    -------
    (model, history)
        ``history``: lists ``batch_loss`` (every step), and per epoch ``train_loss`` (mean of
        the epoch's batch losses), ``test_loss``, ``test_accuracy``, ``lr``.

    Raises
    ------
    FloatingPointError
        A batch loss or a held-out loss is NaN or infinite (the run diverged, e.g. ``lr`` too
        large); raised at once, naming the epoch and batch.
    """
    config.check_memory()
    # the held-out pass runs in eval mode, at up to 256 images, within the same working-memory limit
    # (at 256x256, 256 images took 3-4 GiB; the step's own check bounds only the training batch)
    from .summary.working_memory import largest_batch

    eval_batch = largest_batch(config.arch, config.size, 256)
    model = build_model(config) if model is None else model
    x_train, y_train, x_test, y_test = (
        data if data is not None else load_digits_split(config.size, config.test_fraction, config.seed)
    )
    optimizer = SGD(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    schedule = CosineAnnealingLR(optimizer, T_max=config.epochs)
    history: dict[str, list[float]] = {
        "batch_loss": [],
        "train_loss": [],
        "test_loss": [],
        "test_accuracy": [],
        "lr": [],
    }
    for epoch in range(config.epochs):
        model.train()
        batches = epoch_batches(x_train, y_train, config, epoch)
        losses = []
        history["lr"].append(optimizer.lr)
        for i, (x, y) in enumerate(batches):
            logits = model(x)  # (B, 10); layers save what backward needs
            loss = float(F.cross_entropy(logits, y))
            if not math.isfinite(loss):
                _diverged(config, f"the loss of batch {i + 1} of epoch {epoch + 1} is {loss}")
            model.backward(F.cross_entropy_backward(1.0, logits, y))  # grads into each module
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss)
            if on_batch is not None:
                on_batch(epoch, i, len(batches), loss)
        schedule.step()
        history["batch_loss"] += losses
        history["train_loss"].append(float(numpy.mean(losses)))
        test_loss, test_accuracy = evaluate(model, x_test, y_test, eval_batch)
        if not math.isfinite(test_loss):
            _diverged(config, f"the held-out loss after epoch {epoch + 1} is {test_loss}")
        history["test_loss"].append(test_loss)
        history["test_accuracy"].append(test_accuracy)
    model.eval()
    return model, history


def _diverged(config: TrainConfig, what: str) -> None:
    """Stop a run whose loss is no longer a number: nothing it would save is a trained model."""
    raise FloatingPointError(
        f"training diverged: {what} (lr={config.lr:g}, momentum={config.momentum:g}, "
        f"weight_decay={config.weight_decay:g}); a smaller lr usually helps"
    )


def plot_history(history: dict[str, list[float]], path: PathLike, title: str = "") -> None:
    """Write the loss and accuracy curves as a PNG, atomically (matplotlib, Agg backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting the curves needs matplotlib: pip install 'npresnet[train]'") from None
    from ._atomic import atomic_write

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = numpy.arange(1, len(history["train_loss"]) + 1)
    steps = numpy.arange(1, len(history["batch_loss"]) + 1) / max(len(history["batch_loss"]) / len(epochs), 1)
    ax_loss.plot(steps, history["batch_loss"], lw=0.6, alpha=0.5, label="train (per batch)")
    ax_loss.plot(epochs, history["train_loss"], "o-", label="train (epoch mean)")
    ax_loss.plot(epochs, history["test_loss"], "s-", label="held out")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, 100 * numpy.asarray(history["test_accuracy"]), "s-", color="C2")
    ax_acc.set(
        xlabel="epoch",
        ylabel="held-out accuracy (%)",
        title="accuracy",
        ylim=(min(90, 100 * min(history["test_accuracy"])), 100),
    )
    ax_acc.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    with atomic_write(path) as file:
        file.write(buffer.getvalue())
