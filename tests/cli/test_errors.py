"""Every bad command line ends in one line naming the flag or file and a non-zero exit status.

The command runs in a subprocess, as a user runs it; no output may hold a traceback.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

from npresnet import limits

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, env=None, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "npresnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def assert_one_line_error(proc, status, *fragments):
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "no message"
    message = lines[-1] if status == 2 else "\n".join(lines)
    if status == 1:
        assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in message, (fragment, proc.stderr)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """ResNet-18 weights of zeros (shapes are all the checks need), as .npz."""
    from _torchvision import meta_resnet

    pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("w") / "r18.npz"
    state = {
        k: numpy.zeros(tuple(v.shape), numpy.int64 if k.endswith("num_batches_tracked") else numpy.float32)
        for k, v in meta_resnet("resnet18").state_dict().items()
    }
    numpy.savez(path, **state)
    return str(path)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    PIL = pytest.importorskip("PIL.Image")
    path = tmp_path_factory.mktemp("img") / "a.png"
    PIL.fromarray(numpy.zeros((40, 40, 3), numpy.uint8)).save(path)
    return str(path)


# ---------------------------------------------------------------------------- one home for the limits
def test_readme_limits_table_lists_every_limit_with_its_value():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    values = {}
    for row in re.findall(r"^\| (.+?) \| (.+?) \| .+ \|$", section, flags=re.M):
        name, value = row
        if set(name) <= set("-") or name == "limit":  # the separator and the header
            continue
        values[name] = value
    expected = {
        "pixels of an image, as read or after resizing": f"{limits.MAX_PIXELS:,}",
        "`--resize-size`, `--crop-size`": f"{limits.MAX_IMAGE_SIZE:,}",
        "`--batch-size`": f"{limits.MAX_BATCH_SIZE:,}",
        "working memory of one forward pass": f"{limits.MAX_ACTIVATION_BYTES // 2**30} GiB "
        f"({limits.MAX_ACTIVATION_BYTES:,} bytes)",
        "`--top`": f"{limits.MAX_TOP:,}",
        "`embed --workers` per usable core": f"{limits.MAX_WORKERS_PER_CORE:,}",
        "image file size": f"{limits.MAX_IMAGE_FILE_BYTES // 2**30} GiB ({limits.MAX_IMAGE_FILE_BYTES:,} bytes)",
        "scans in a JPEG": f"{limits.MAX_JPEG_SCANS:,}",
        "a `fetch` download": f"{limits.MAX_DOWNLOAD_BYTES // 2**30} GiB ({limits.MAX_DOWNLOAD_BYTES:,} bytes)",
        "parameters and running statistics of one layer or model": f"{limits.MAX_PARAMETER_BYTES // 2**30} GiB "
        f"({limits.MAX_PARAMETER_BYTES:,} bytes)",
        "drawn grid extent, padding included (the input; for `conv_transpose2d` the output, and its input too)": (
            f"{limits.MAX_DRAW_SIZE:,}"
        ),
        "drawn channels": f"{limits.MAX_DRAW_CHANNELS:,}",
        "elements of one array a layer allocates (outputs, padded inputs, im2col columns, gradients)": (
            f"{limits.MAX_ELEMENTS:,}"
        ),
        "workspace chunks of one convolution call": f"{limits.MAX_CHUNKS:,}",
        "`fetch --timeout`, in seconds": f"{limits.MAX_FETCH_TIMEOUT:,.0f}",
        "slowest `fetch` download, in bytes per second on average after its first `--timeout` seconds": (
            f"{limits.MIN_DOWNLOAD_RATE:,}"
        ),
        "images in one `embed` output": f"{limits.MAX_IMAGES:,}",
        "characters in an image path": f"{limits.MAX_PATH_CHARS:,}",
        "feature values per image": f"{limits.MAX_FEATURE_VALUES:,}",
        "`train --epochs`": f"{limits.MAX_TRAIN_EPOCHS:,}",
        "`train --size`": f"{limits.MAX_TRAIN_SIZE:,}",
        "`train --batch-size`": f"{limits.MAX_TRAIN_BATCH:,}",
    }
    assert values == expected
    assert set(limits.__all__) == {
        "MAX_PIXELS",
        "MAX_IMAGE_SIZE",
        "MAX_BATCH_SIZE",
        "MAX_ACTIVATION_BYTES",
        "MAX_TOP",
        "MAX_WORKERS_PER_CORE",
        "MAX_IMAGE_FILE_BYTES",
        "MAX_JPEG_SCANS",
        "MAX_DOWNLOAD_BYTES",
        "MAX_PARAMETER_BYTES",
        "MAX_DRAW_SIZE",
        "MAX_DRAW_CHANNELS",
        "MAX_ELEMENTS",
        "MAX_CHUNKS",
        "MAX_FETCH_TIMEOUT",
        "MIN_DOWNLOAD_RATE",
        "MAX_IMAGES",
        "MAX_PATH_CHARS",
        "MAX_FEATURE_VALUES",
        "MAX_TRAIN_EPOCHS",
        "MAX_TRAIN_SIZE",
        "MAX_TRAIN_BATCH",
    }  # a new limit needs its row


def test_preprocess_uses_the_shared_limits():
    from npresnet import preprocess

    assert preprocess.MAX_SIZE == limits.MAX_IMAGE_SIZE and preprocess.MAX_PIXELS == limits.MAX_PIXELS


@pytest.mark.parametrize(
    "command, flag, value",
    [
        (["train", "digits", "--out", "never"], "--epochs", limits.MAX_TRAIN_EPOCHS + 1),
        (["train", "digits", "--out", "never"], "--size", limits.MAX_TRAIN_SIZE + 1),
        (["train", "digits", "--out", "never"], "--batch-size", limits.MAX_TRAIN_BATCH + 1),
        (["fetch", "resnet18"], "--timeout", int(limits.MAX_FETCH_TIMEOUT) + 1),
    ],
)
def test_train_and_fetch_flags_beyond_their_limits_are_usage_errors(tmp_path, command, flag, value):
    # were a limit lost: fetch would try a closed local port, train would stop at the timeout
    env = {"NPRESNET_HOME": str(tmp_path / "cache"), "NPRESNET_WEIGHTS_URL": "http://127.0.0.1:9/"}
    proc = run_cli(*command, flag, str(value), cwd=tmp_path, env=env, timeout=60)
    assert_one_line_error(proc, 2, flag, "at most")
    proc = run_cli(*command, flag, str(value - 1), "--help", cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0  # the bound itself parses
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["predict", "embed"])
@pytest.mark.parametrize(
    "flag, value",
    [
        ("--crop-size", limits.MAX_IMAGE_SIZE + 1),
        ("--resize-size", limits.MAX_IMAGE_SIZE + 1),
        ("--batch-size", limits.MAX_BATCH_SIZE + 1),
        ("--top", limits.MAX_TOP + 1),
    ],
)
def test_predict_and_embed_share_each_bound(command, flag, value):
    common = ["a.png", "--arch", "resnet18", "--weights", "missing.npz"]
    extra = ["--out", "never.zarr"] if command == "embed" else []
    proc = run_cli(command, *common, *extra, flag, str(value))
    assert_one_line_error(proc, 2, flag, f"at most {value - 1:,}")
    proc = run_cli(command, *common, *extra, flag, str(value - 1), "--help")
    assert proc.returncode == 0  # the bound itself parses


# ---------------------------------------------------------------------------- predict
def test_predict_refuses_a_file_name_stdout_cannot_write(tmp_path, weights, image):
    name = tmp_path / os.fsdecode(b"\xff.png")
    name.write_bytes(Path(image).read_bytes())
    proc = run_cli("predict", str(name), "--arch", "resnet18", "--weights", weights, env={"PYTHONIOENCODING": "ascii"})
    assert_one_line_error(proc, 1, "\\xff.png", "cannot be written to stdout")
    assert proc.stdout == ""
    proc = run_cli("predict", str(name), "--arch", "resnet18", "--weights", weights, "--format", "json")
    assert_one_line_error(proc, 1, "\\xff.png", "cannot be written to stdout")


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_an_empty_weights_name_is_named(command, image):
    extra = ["--out", "never.zarr"] if command == "embed" else []
    proc = run_cli(command, image, "--arch", "resnet18", "--weights", "", *extra)
    assert_one_line_error(proc, 1, "--weights: an empty file name")


def test_convert_names_neither_an_empty_path_nor_its_temporary_file(tmp_path, weights):
    proc = run_cli("convert", "", str(tmp_path / "x.npz"))
    assert_one_line_error(proc, 1, "SRC is an empty file name")
    proc = run_cli("convert", weights, str(tmp_path / "no" / "such" / "x.npz"))
    missing = tmp_path / "no" / "such"
    assert_one_line_error(proc, 1, f"DST {missing / 'x.npz'}: no such directory {missing}")  # before reading SRC
    assert ".tmp" not in proc.stderr


def test_a_decompression_bomb_message_quotes_the_limit_applied(tmp_path):
    from _helpers.images import huge_png_header
    from npresnet.preprocess import ImageError, load_image

    bomb = huge_png_header(tmp_path / "bomb.png", 30000, 30000)  # above Pillow's own 2 × 89,478,485
    with pytest.raises(ImageError) as info:
        load_image(bomb)
    assert f"more pixels than the limit of {limits.MAX_PIXELS:,}" in str(info.value)
    assert "178956970" not in str(info.value) and "178,956,970" not in str(info.value)


# ---------------------------------------------------------------------------- train
@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--seed", "-3"], ["--seed", "expected an integer >= 0"]),
        (["--arch", "resnet81"], ["unknown architecture 'resnet81'; did you mean resnet18"]),
        (["--train-subset", "1"], ["--train-subset 1: at least 2"]),
        (["--lr", "nan"], ["lr must be a finite number"]),
        (["--epochs", "0"], ["--epochs"]),
    ],
)
def test_train_flags(tmp_path, flags, fragments):
    pytest.importorskip("sklearn")
    proc = run_cli("train", "digits", "--out", str(tmp_path / "run"), "--size", "8", "--epochs", "1", *flags)
    assert_one_line_error(proc, 2 if "--epochs" in flags or "--seed" in flags else 1, *fragments)
    assert not (tmp_path / "run" / "digits_resnet18.npz").exists()


def test_train_refuses_an_out_that_is_a_file(tmp_path):
    pytest.importorskip("sklearn")
    mine = tmp_path / "mine.txt"
    mine.write_text("precious")
    proc = run_cli("train", "digits", "--out", str(mine), "--size", "8", "--epochs", "1")
    assert_one_line_error(proc, 1, f"--out {mine}: exists and is not a directory")
    assert mine.read_text() == "precious"


# ---------------------------------------------------------------------------- embed
@pytest.fixture
def dask():
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")


def test_embed_refuses_a_non_utf8_file_name_before_writing(tmp_path, dask, weights, image):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / os.fsdecode(b"\xff.png")).write_bytes(Path(image).read_bytes())
    for images in (str(folder), str(folder / os.fsdecode(b"\xff.png"))):
        proc = run_cli("embed", images, "--arch", "resnet18", "--weights", weights, "--out", str(tmp_path / "f.zarr"))
        assert_one_line_error(proc, 1, "\\xff.png", "not valid UTF-8")
        assert not (tmp_path / "f.zarr").exists()


@pytest.mark.parametrize(
    "flags, status, fragments",
    [
        (["--layer", ""], 1, ["--layer: an empty module name"]),
        (["--scheduler", "tls://127.0.0.1:9"], 1, ["--scheduler tls://127.0.0.1:9: only tcp://"]),
        # a flag beyond its limit is a usage error (README, Limits)
        (["--workers", str(len(os.sched_getaffinity(0)) + 1)], 2, ["--workers", "one per usable core"]),
        (["--crop-size", "4096", "--batch-size", "1"], 1, ["needs 3.0 GiB of activations", "smaller --crop-size"]),
        # a task holds min(--batch-size, images) = 3 images: 2.2 GiB at 2048 (predict's test: 16 need 12 GiB)
        (["--batch-size", "1000", "--crop-size", "2048"], 1, ["on 3 image(s)", "use --batch-size 2 or less"]),
    ],
)
def test_embed_refuses_before_creating_anything(tmp_path, dask, weights, image, flags, status, fragments):
    out = tmp_path / "f.zarr"
    images = [image] * 3
    proc = run_cli("embed", *images, "--arch", "resnet18", "--weights", weights, "--out", str(out), *flags)
    assert_one_line_error(proc, status, *fragments)
    assert os.listdir(tmp_path) == []


def test_embed_refuses_one_path_for_both_outputs(tmp_path, dask, weights, image):
    for out, predictions in (("x", "x"), ("x", "x/p.parquet"), ("x/../x", "x")):
        proc = run_cli(
            "embed",
            image,
            "--arch",
            "resnet18",
            "--weights",
            weights,
            "--out",
            out,
            "--predictions",
            predictions,
            cwd=tmp_path,
        )
        assert_one_line_error(proc, 1, "--out", "--predictions", "one holds the other")
        assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "signum, status, line",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_embed_stopped_by_a_signal_is_one_line_and_its_status(tmp_path, dask, weights, image, signum, status, line):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(200):
        (folder / f"{i:03d}.png").write_bytes(Path(image).read_bytes())
    command = [sys.executable, "-m", "npresnet", "embed", str(folder), "--arch", "resnet18", "--weights", weights]
    command += ["--out", str(tmp_path / "f.zarr"), "--workers", "1", "--batch-size", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "f.zarr").exists() and time.monotonic() < deadline:  # the run has started
        time.sleep(0.1)
    time.sleep(1)
    try:
        proc.send_signal(signum)  # Ctrl-C, or a job scheduler's stop
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()  # a no-op once it has exited
    assert proc.returncode == status, stderr
    assert stderr.strip() == line, stderr


_HOST = """
import os, signal, sys, time
import npresnet.cli as cli, npresnet.cli.summary as summary

def run(args):  # a command with a slow cleanup, terminated twice
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        print("not stopped", flush=True)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's second SIGTERM, during the cleanup
        time.sleep(0.2)
        print("cleanup done", flush=True)
    return 0

summary.run = run
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, lambda *a: print("host's SIGINT handler", flush=True))  # one that does not raise
status = cli.main(["summary", "resnet18"])
print("status", status, "sigterm restored", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
"""


def test_sigterm_stops_the_command_whatever_sigint_does_and_its_cleanup_runs_whole():
    """A program that calls main() with its own SIGINT handler: SIGTERM still stops the command (the handler
    is not called), and a second SIGTERM waits for the cleanup the first one started."""
    proc = subprocess.run([sys.executable, "-c", _HOST], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["cleanup done", "status 143 sigterm restored True"]
    assert proc.stderr.strip() == "terminated"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full is Linux's")
def test_a_full_disk_under_stdout_is_a_one_line_error():
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "npresnet", "summary", "resnet18"], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert_one_line_error(proc, 1, "npresnet summary: error:", "No space left on device")


def test_a_closed_stdout_is_not_an_error():
    """Started with fd 1 closed, Python's sys.stdout is None; the command prints nowhere and succeeds."""
    command = f"{shlex.quote(sys.executable)} -m npresnet summary resnet18 >&-"
    proc = subprocess.run(["sh", "-c", command], stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_train_refuses_an_output_name_held_by_a_directory_before_training(tmp_path):
    """``--force`` replaces files; a directory named history.json used to fail with a traceback after training,
    with the weights and curves already written beside it."""
    pytest.importorskip("sklearn")
    (tmp_path / "history.json").mkdir()
    flags = ["--size", "8", "--epochs", "1", "--train-subset", "4", "--batch-size", "2", "--force"]
    proc = run_cli("train", "digits", "--out", str(tmp_path), *flags)
    assert_one_line_error(proc, 1, "history.json exists and is not a regular file", "nothing was trained")
    assert os.listdir(tmp_path) == ["history.json"]
