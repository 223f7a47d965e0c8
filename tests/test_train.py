"""The digits training run, shortened for CI: its pieces, its reproducibility, its CLI, and its PyTorch twin.

The full run (README "Training") takes minutes; here the same code runs on a subset for one or two
epochs. The PyTorch twin (benchmarks/train_digits_torch.py) starts from the same weights and sees
the same batches, so the two per-batch loss curves must agree to float32 rounding, amplified by a
few SGD steps.
"""

import importlib.util
import json
import os

import numpy as np
import pytest

pytest.importorskip("sklearn")

import npresnet  # noqa: E402
from npresnet.cli import main  # noqa: E402
from npresnet.train import TrainConfig, epoch_batches, load_digits_split, train_digits  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _twin():
    spec = importlib.util.spec_from_file_location(
        "train_digits_torch", os.path.join(ROOT, "benchmarks", "train_digits_torch.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


QUICK = TrainConfig(size=8, epochs=2, batch_size=32, lr=0.02)


def test_split_is_seeded_disjoint_and_standardised():
    x_tr, y_tr, x_te, y_te = load_digits_split(16, 0.2, seed=0)
    assert x_tr.shape == (1438, 3, 16, 16) and x_te.shape == (359, 3, 16, 16) and x_tr.dtype == np.float32
    assert set(np.unique(y_tr)) == set(range(10)) == set(np.unique(y_te))
    # standardised in float64 (exact to ~n 2**-53 relative), then rounded to float32 once: each value
    # is z (1 + d) with |d| <= u, so the mean is off 0 by at most u mean|x| and the variance off 1 by
    # (2u + u²) mean(x²) (the standard deviation by half that); checked in float64, which adds, as the
    # float64 standardisation does, at most ~n 2**-53 max|x|² (3e-9 here, n = 1.1e6 values); a
    # standard deviation with ddof=1 (off by 4.5e-7) exceeds these
    u, x64 = 2.0**-24, x_tr.astype(np.float64)
    float64_part = 4 * x64.size * 2.0**-53 * (np.abs(x64).max() + np.abs(x64).max() ** 2)
    assert abs(x64.mean()) <= u * np.abs(x64).mean() + float64_part
    assert abs(x64.std() - 1) <= (u + u**2) * (x64**2).mean() + float64_part
    again = load_digits_split(16, 0.2, seed=0)
    np.testing.assert_array_equal(again[0], x_tr)
    other = load_digits_split(16, 0.2, seed=1)
    assert not np.array_equal(other[3], y_te)
    # no held-out image is a training image (the digits have no exact duplicates across the split)
    train_rows = {row.tobytes() for row in x_tr[:, 0, ::2, ::2].reshape(len(x_tr), -1)}
    assert sum(row.tobytes() in train_rows for row in x_te[:, 0, ::2, ::2].reshape(len(x_te), -1)) <= 2


def test_epoch_batches_cover_every_image_once_and_shift_by_whole_pixels():
    x, y, _, _ = load_digits_split(16, 0.2, seed=0)
    plain = epoch_batches(x, y, TrainConfig(shift=0, batch_size=100), epoch=3)
    labels = np.concatenate([b[1] for b in plain])
    assert sorted(labels.tolist()) == sorted(y.tolist()) and len(plain) == 15
    shifted = epoch_batches(x, y, TrainConfig(shift=1, batch_size=100), epoch=3)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in shifted]), labels)  # same order, same labels
    a, b = plain[0][0], shifted[0][0]
    background = x.min()
    for original, moved in zip(a, b):  # moved is original translated by -2, 0 or 2 rows/columns (1 digit pixel)
        matches = []
        for dy in (-2, 0, 2):
            for dx in (-2, 0, 2):
                padded = np.pad(original, ((0, 0), (2, 2), (2, 2)), constant_values=background)
                matches.append(np.array_equal(padded[:, 2 + dy : 18 + dy, 2 + dx : 18 + dx], moved))
        assert any(matches)


def test_run_is_reproducible_from_its_seed():
    data = load_digits_split(8, 0.2, seed=0)
    data = (data[0][:96], data[1][:96], data[2][:64], data[3][:64])
    config = TrainConfig(size=8, epochs=1, batch_size=32)
    _, first = train_digits(config, data=data)
    model, second = train_digits(config, data=data)
    assert first == second
    assert len(first["batch_loss"]) == 3 and 0 <= first["test_accuracy"][0] <= 1


def test_matches_pytorch_twin_loss_curve():
    """Same start, same batches: npresnet's and torch's per-batch losses agree over 2 epochs (16 steps).

    float64: in float32 a max-pool window whose two largest values differ by an ulp can pick a
    different winner in the two libraries, routing that gradient elsewhere; a few SGD steps later
    the curves differ in the third digit (seen at step 4 here), which says nothing about correctness.
    """
    ours, theirs, _ = _twin().run_both(QUICK, train_subset=256, dtype="float64")
    a, b = np.asarray(ours["batch_loss"]), np.asarray(theirs["batch_loss"])
    assert len(a) == len(b) == 16
    assert np.max(np.abs(a - b) / np.abs(b)) <= 1e-8, (a, b)
    assert ours["lr"] == pytest.approx(theirs["lr"], rel=1e-12)
    # the losses really move: this is training, not a constant
    assert a[-4:].mean() < a[:4].mean()


def test_cli_trains_writes_weights_curves_history_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "digits", "--out", str(out), "--size", "8", "--epochs", "1", "--train-subset", "64"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed
    weights = out / "digits_resnet18.npz"
    state = npresnet.load_weights(weights)
    model = npresnet.resnet18(num_classes=10, init=False)
    model.load_state_dict(state)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["epochs"] == 1 and len(history["test_accuracy"]) == 1
    # predictions from the saved weights reproduce the recorded held-out accuracy
    _, _, x_te, y_te = load_digits_split(8, 0.2, seed=0)
    accuracy = float((model(x_te).argmax(1) == y_te).mean())
    assert accuracy == pytest.approx(history["test_accuracy"][0])
    before = weights.read_bytes()
    assert main(args) == 1
    assert "use --force" in capsys.readouterr().err
    assert weights.read_bytes() == before


def test_cli_rejects_bad_flags_before_working(tmp_path, capsys):
    assert main(["train", "digits", "--out", str(tmp_path), "--size", "12"]) == 1
    assert "multiple of 8" in capsys.readouterr().err
    assert main(["train", "digits", "--out", str(tmp_path), "--shift", "9"]) == 1
    assert "shift" in capsys.readouterr().err


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_writes_nothing(tmp_path, capsys):
    """lr=1e308 overflows the first update: the next batch's loss is not a number, and the run says so."""
    data = load_digits_split(8, 0.2, seed=0)
    data = (data[0][:96], data[1][:96], data[2][:64], data[3][:64])
    with pytest.raises(FloatingPointError, match=r"batch 2 of epoch 1 is nan .*lr=1e\+308"):
        train_digits(TrainConfig(size=8, epochs=2, batch_size=32, lr=1e308), data=data)
    out = tmp_path / "run"
    args = ["train", "digits", "--out", str(out), "--size", "8", "--epochs", "1", "--train-subset", "64"]
    assert main([*args, "--lr", "1e308"]) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "--lr 1e+308" in err and "nothing was written" in err
    assert list(out.iterdir()) == []


def test_a_training_step_over_the_working_memory_limit_is_refused_before_any_work():
    """Every layer's output is held for backward: 4096 images of 256x256 need 181 GiB. The advice is exact:
    the batch it names passes, one more does not (the count is linear in the batch)."""
    import re

    with pytest.raises(ValueError, match=r"resnet18 training 4096 image\(s\) of 256×256 needs 181\.0 GiB") as info:
        train_digits(TrainConfig(size=256, batch_size=4096))
    fits = int(re.search(r"use batch_size (\d+) or less", str(info.value)).group(1))
    TrainConfig(size=256, batch_size=fits).check_memory()
    with pytest.raises(ValueError, match=f"use --batch-size {fits} or less"):
        TrainConfig(size=256, batch_size=fits + 1).check_memory(batch_name="--batch-size")


@pytest.mark.parametrize("size", [16, 256])
def test_the_held_out_pass_runs_the_largest_batch_within_the_working_memory_limit(monkeypatch, size):
    """Evaluation ran 256 images at once whatever the size: at 256x256, 3 GiB past the 2 GiB limit that the
    training step is held to. It now runs the largest batch (up to 256) whose inference pass fits."""
    import npresnet.train as train_module
    from npresnet.limits import MAX_ACTIVATION_BYTES
    from npresnet.summary import summarize
    from npresnet.summary.working_memory import working_memory_bytes

    def need(batch):  # an eval-mode pass of `batch` images: no layer keeps its input for backward
        return working_memory_bytes(summarize("resnet18", size, batch=batch))

    batches = []

    def evaluate(model, x, y, batch_size=256):
        batches.append(batch_size)
        return 1.0, 0.5

    monkeypatch.setattr(train_module, "evaluate", evaluate)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    y = np.array([0, 1])
    train_digits(TrainConfig(size=size, epochs=1, batch_size=2), data=(x, y, x, y))
    assert need(256) > MAX_ACTIVATION_BYTES if size == 256 else need(256) <= MAX_ACTIVATION_BYTES
    (batch,) = batches
    assert batch == 256 or need(batch) <= MAX_ACTIVATION_BYTES < need(batch + 1)
    assert need(batch) <= MAX_ACTIVATION_BYTES and (batch < 256) == (size == 256)
