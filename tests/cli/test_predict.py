"""``npresnet predict`` end to end: same top-K as torchvision on the same files; bad files reported."""

import copy
import json
import subprocess
import sys

import numpy
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torchvision.datasets.folder import pil_loader  # noqa: E402

from _helpers.images import huge_png_header, make_image  # noqa: E402
from _rounding import float32_error_bounds  # noqa: E402
from _torchvision import meta_resnet, torchvision_resnet  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A seeded torchvision ResNet-18 with non-trivial batch-norm statistics, saved as .pth."""
    model = torchvision_resnet("resnet18", seed=0)
    with torch.no_grad():
        model.fc.weight.mul_(20)  # spread the logits so the top-K is well separated
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "npresnet", *args], capture_output=True, text=True, timeout=300)


def torchvision_logits(model, x):
    """torchvision's float64 logits for one preprocessed image ``x`` (1, 3, H, W): a (1000,) tensor."""
    with torch.no_grad():
        return copy.deepcopy(model).double()(torch.as_tensor(x).double())[0]


def torchvision_input(path):
    """torchvision's preprocessing of one image: (1, 3, 224, 224) float32, the input npresnet must see too."""
    return torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()(pil_loader(path))[None].numpy()


def test_predict_matches_torchvision_and_reports_bad_files(tmp_path, checkpoint):
    model, weights = checkpoint
    rng = numpy.random.default_rng(0)
    good = [
        make_image(tmp_path / "rgb.jpg", "RGB", (320, 240), rng),
        make_image(tmp_path / "gray.png", "L", (200, 260), rng),
        make_image(tmp_path / "rgba.png", "RGBA", (256, 256), rng),
        make_image(tmp_path / "cmyk.jpg", "CMYK", (300, 300), rng),
        make_image(tmp_path / "deep.png", "I;16", (240, 250), rng),
        make_image(tmp_path / "palette.png", "P", (260, 230), rng),
        make_image(tmp_path / "big.jpg", "RGB", (3000, 2000), rng),
    ]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0].read_bytes()[:600])
    text = tmp_path / "readme.png"
    text.write_text("hello")
    bomb = huge_png_header(tmp_path / "bomb.png", 30000, 30000)
    bad = [tmp_path / "missing.jpg", truncated, text, bomb]
    paths = [str(p) for p in [good[0], bad[0], *good[1:4], bad[1], bad[2], *good[4:], bad[3]]]

    proc = run_cli(
        "predict",
        *paths,
        "--arch",
        "resnet18",
        "--weights",
        str(weights),
        "--top",
        "5",
        "--batch-size",
        "3",
        "--format",
        "json",
    )
    assert proc.returncode == 1
    for p in bad:
        assert str(p) in proc.stderr
    assert "4 of 11 image(s) could not be read" in proc.stderr and "Traceback" not in proc.stderr
    results = json.loads(proc.stdout)
    assert [r["path"] for r in results] == [p for p in paths if p in map(str, good)]
    labels = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    for entry in results:
        got = [t["index"] for t in entry["top"]]
        x = torchvision_input(entry["path"])
        exact = torch.softmax(torchvision_logits(model, x), dim=0).numpy()  # (1000,) float64
        # The reported classes and the exact top 6, with the exact probability of each and the bound
        # on a float32 evaluation's error, derived from the arithmetic (tests/_rounding/):
        # independent of the batch, the BLAS kernel and the thread count.
        cand = sorted(set(got) | set(numpy.argsort(-exact)[:6].tolist()))
        probs, bounds = float32_error_bounds(model, x, lambda logits, cand=cand: torch.softmax(logits, dim=1)[0, cand])
        p, bound = dict(zip(cand, probs)), dict(zip(cand, bounds))
        for t in entry["top"]:
            assert abs(t["prob"] - p[t["index"]]) <= bound[t["index"]], (entry["path"], t, p[t["index"]])
            assert t["label"] == labels[t["index"]]
        # The order: each reported class is at least as probable as every class not reported before
        # it, up to the two bounds (only a near-tie may swap).
        for rank, index in enumerate(got):
            for c in set(cand) - set(got[: rank + 1]):
                assert p[index] + bound[index] >= p[c] - bound[c], (entry["path"], rank, index, c)


def test_predict_table_and_backend_errors(tmp_path, checkpoint):
    _, weights = checkpoint
    image = make_image(tmp_path / "a.png", "RGB", (230, 230), numpy.random.default_rng(1))
    proc = run_cli("predict", str(image), "--arch", "resnet18", "--weights", str(weights), "--top", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(image) and lines[1].startswith("  1.") and "%" in lines[1] and len(lines) == 3
    proc = run_cli("predict", str(image), "--arch", "resnet18", "--weights", str(weights), "--backend", "cupy")
    if "cupy" not in __import__("npresnet").available_backends():
        assert proc.returncode == 1 and "cupy" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("predict", str(image), "--arch", "resnet50", "--weights", str(weights))
    assert proc.returncode == 1 and "does not fit resnet50" in proc.stderr and "Traceback" not in proc.stderr


def test_skipped_images_are_reported_after_the_results(tmp_path, checkpoint):
    _, weights = checkpoint
    image = make_image(tmp_path / "a.png", "RGB", (230, 230), numpy.random.default_rng(1))
    missing = tmp_path / "missing.jpg"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "npresnet",
            "predict",
            str(missing),
            str(image),
            "--arch",
            "resnet18",
            "--weights",
            str(weights),
            "--top",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()  # stdout and stderr as a terminal shows them, in order
    assert lines[0] == str(image) and all(line.startswith(f"  {i}.") for i, line in enumerate(lines[1:4], 1))
    assert lines[4:] == [
        f"npresnet predict: skipped {missing}: no such file",
        "npresnet predict: 1 of 2 image(s) could not be read",
    ]


def test_a_file_name_cannot_forge_lines_of_the_table(tmp_path, checkpoint):
    """Control characters in a path are printed as escapes, on stdout and in the skipped lines of stderr."""
    _, weights = checkpoint
    forged = "evil\n  1. 99.99%  tabby cat (281)\nok"
    image = make_image(tmp_path / f"{forged}.png", "RGB", (230, 230), numpy.random.default_rng(1))
    missing = tmp_path / "gone\rnpresnet predict: all fine.jpg"
    proc = run_cli("predict", str(image), str(missing), "--arch", "resnet18", "--weights", str(weights), "--top", "2")
    assert proc.returncode == 1
    out = proc.stdout.splitlines()
    assert len(out) == 3 and out[0] == str(image).replace("\n", "\\n")
    assert [line.split(".")[0] for line in out[1:]] == ["  1", "  2"] and "tabby" not in out[1] + out[2]
    err = proc.stderr.splitlines()
    assert err[0] == f"npresnet predict: skipped {str(missing).replace(chr(13), chr(92) + 'r')}: no such file"
    assert len(err) == 2
    shot = make_image(tmp_path / "Screenshot 10.00.00\u202fAM.png", "RGB", (230, 230), numpy.random.default_rng(2))
    proc = run_cli("predict", str(shot), "--arch", "resnet18", "--weights", str(weights), "--top", "1")
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == str(shot)  # a printable name is left as it is


def zeros_checkpoint(path, arch):
    """An .npz with ``arch``'s keys and shapes (torchvision's), all zeros: a few kB compressed."""
    state = {
        k: numpy.zeros(tuple(v.shape), numpy.int64 if k.endswith("num_batches_tracked") else numpy.float16)
        for k, v in meta_resnet(arch).state_dict().items()
    }
    numpy.savez_compressed(path, **state)
    return {k: v.shape for k, v in state.items()}


def test_arch_is_checked_before_the_weights(tmp_path, checkpoint):
    _, weights = checkpoint
    for path in (weights, tmp_path / "missing.pth"):
        proc = run_cli("predict", "a.png", "--arch", "resnet19", "--weights", str(path))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "unknown architecture 'resnet19'; did you mean resnet18" in proc.stderr
        assert "weights" not in proc.stderr and "fit" not in proc.stderr


@pytest.mark.parametrize("other", ["resnet34", "resnet50"])
def test_weights_of_another_architecture_are_summarised_and_named(tmp_path, other):
    shapes = zeros_checkpoint(tmp_path / f"{other}.npz", other)
    own = {k: tuple(v.shape) for k, v in meta_resnet("resnet18").state_dict().items()}
    missing, unexpected = set(own) - set(shapes), set(shapes) - set(own)
    misshaped = {k for k in set(own) & set(shapes) if own[k] != shapes[k]}
    proc = run_cli("predict", "a.png", "--arch", "resnet18", "--weights", str(tmp_path / f"{other}.npz"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    count = len(missing) + len(unexpected) + len(misshaped)
    assert (
        f"does not fit resnet18 ({count} problem(s): {len(misshaped)} mis-shaped or unloadable, "
        f"{len(missing)} missing, {len(unexpected)} unexpected key(s))"
    ) in proc.stderr
    assert f"the file looks like {other} weights: every key and shape fits {other}" in proc.stderr
    assert len(proc.stderr.splitlines()) <= 2 + 3 * 5  # a header, at most 4 keys and a count per kind, the verdict


def test_sizes_are_bounded_before_any_work(tmp_path):
    for flag, value in (("--resize-size", "100000"), ("--crop-size", "4097"), ("--batch-size", "5000")):
        proc = run_cli("predict", "a.png", "--arch", "resnet18", "--weights", "missing.pth", flag, value)
        assert proc.returncode == 2 and flag in proc.stderr and "at most" in proc.stderr, (flag, proc.stderr)
    # ResNet-18's peak is conv1's and bn1's outputs together, 2 × 64 × 1024 × 1024 float32 per 2048×2048
    # image (512 MiB), plus one temporary as large as the largest activation (256 MiB): 768 MiB per image.
    # 16 images need 12 GiB, over the 2 GiB limit, which holds 2. Refused before reading the weights
    # (the file does not exist) or any image.
    images = [f"img{i}.png" for i in range(16)]
    proc = run_cli("predict", *images, "--arch", "resnet18", "--weights", "missing.pth", "--crop-size", "2048")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        "resnet18 on 16 image(s) of 2048×2048 needs 12.0 GiB of activations, more than the 2 GiB limit; "
        "use --batch-size 2 or less"
    ) in proc.stderr
    # One 4096×4096 image: 2 GiB of conv1 and bn1 outputs, 3 GiB with the temporary (it used to pass the
    # check and end in a MemoryError).
    proc = run_cli("predict", "a.png", "--arch", "resnet18", "--weights", "missing.pth", "--crop-size", "4096")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "needs 3.0 GiB of activations, more than the 2 GiB limit; use a smaller --crop-size" in proc.stderr


def test_top_is_at_most_the_number_of_classes(tmp_path, checkpoint):
    _, weights = checkpoint
    image = make_image(tmp_path / "a.png", "RGB", (64, 64), numpy.random.default_rng(2))
    proc = run_cli("predict", str(image), "--arch", "resnet18", "--weights", str(weights), "--top", "5000")
    assert proc.returncode == 1 and "--top 5000 asks for more classes than the 1000 of" in proc.stderr
    assert proc.stdout == ""
    proc = run_cli(
        "predict", str(image), "--arch", "resnet18", "--weights", str(weights), "--top", "1000", "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)[0]["top"]
    assert sorted(t["index"] for t in top) == list(range(1000))


def test_imagenet_classes_equal_torchvision():
    from npresnet.imagenet import imagenet_classes

    assert list(imagenet_classes()) == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
