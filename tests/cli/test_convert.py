"""``npresnet convert``: round trips, architecture checks, and never losing a file."""

import os
import subprocess
import sys

import numpy
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from npresnet.weights import load_weights  # noqa: E402


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "npresnet", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(state, path)
    return path, {k: v.numpy() for k, v in state.items()}


def test_round_trip_pth_npz_safetensors_npz(tmp_path, pth):
    src, expected = pth
    npz, st, back = tmp_path / "a.npz", tmp_path / "b.safetensors", tmp_path / "c.npz"
    for a, b in ((src, npz), (npz, st), (st, back)):
        proc = run_cli("convert", str(a), str(b), "--arch", "resnet18")
        assert proc.returncode == 0, proc.stderr
    loaded = load_weights(back)
    assert sorted(loaded) == sorted(expected)  # safetensors stores keys sorted
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype
        numpy.testing.assert_array_equal(loaded[key], value)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary files left


def test_arch_check_reports_every_mismatch_and_writes_nothing(tmp_path, pth):
    _, state = pth
    state = dict(state)
    del state["layer1.0.bn1.running_var"]
    state["layer2.0.conv1.weight"] = state["layer2.0.conv1.weight"][:, :32]
    state["extra.weight"] = numpy.zeros(3, numpy.float32)
    src = tmp_path / "bad.npz"
    numpy.savez(src, **state)
    dst = tmp_path / "out.safetensors"
    proc = run_cli("convert", str(src), str(dst), "--arch", "resnet18")
    assert proc.returncode == 1
    for fragment in (
        "missing key: layer1.0.bn1.running_var",
        "layer2.0.conv1.weight: shape (128, 32, 3, 3)",
        "unexpected key: extra.weight",
        "3 problem(s)",
    ):
        assert fragment in proc.stderr
    assert not dst.exists()


def test_never_overwrites_source_or_existing_destination(tmp_path, pth):
    src, _ = pth
    npz = tmp_path / "w.npz"
    assert run_cli("convert", str(src), str(npz)).returncode == 0
    before = npz.read_bytes()
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.npz"
    link.symlink_to(npz)
    for dst in (str(npz), f"{tmp_path}/sub/../w.npz", str(link)):  # same file, three spellings
        proc = run_cli("convert", str(npz), dst, "--force")
        assert proc.returncode == 1 and "source" in proc.stderr, dst
    proc = run_cli("convert", "w.npz", "./w.npz", cwd=tmp_path)
    assert proc.returncode == 1
    assert npz.read_bytes() == before

    other = tmp_path / "other.safetensors"
    other.write_bytes(b"precious")
    proc = run_cli("convert", str(npz), str(other))
    assert proc.returncode == 1 and "--force" in proc.stderr and other.read_bytes() == b"precious"
    assert run_cli("convert", str(npz), str(other), "--force").returncode == 0
    assert set(load_weights(other)) == set(load_weights(npz))


def test_bad_arguments(tmp_path, pth):
    src, _ = pth
    proc = run_cli("convert", str(src), str(tmp_path / "x.pth"))
    assert proc.returncode == 1 and "never writes pickles" in proc.stderr
    proc = run_cli("convert", str(tmp_path / "nope.pth"), str(tmp_path / "x.npz"))
    assert proc.returncode == 1 and "no such file" in proc.stderr
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"garbage" * 10)
    proc = run_cli("convert", str(junk), str(tmp_path / "x.npz"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.npz").exists()


def test_arch_is_checked_before_the_source_is_read(tmp_path):
    proc = run_cli("convert", str(tmp_path / "nope.pth"), str(tmp_path / "x.npz"), "--arch", "resnet19")
    assert proc.returncode == 1 and "unknown architecture 'resnet19'; did you mean resnet18" in proc.stderr
    assert "no such file" not in proc.stderr


def test_another_architecture_is_summarised_named_and_nothing_written(tmp_path):
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in torchvision.models.resnet34().state_dict().items()}
    src = tmp_path / "resnet34.npz"
    numpy.savez(src, **state)
    unexpected = set(state) - set(torchvision.models.resnet18().state_dict())
    proc = run_cli("convert", str(src), str(tmp_path / "out.npz"), "--arch", "resnet18")
    assert proc.returncode == 1
    assert f"0 mis-shaped or unloadable, 0 missing, {len(unexpected)} unexpected key(s)" in proc.stderr
    assert f"... and {len(unexpected) - 4} more unexpected keys ({len(unexpected)} in all)" in proc.stderr
    assert "looks like resnet34 weights" in proc.stderr and proc.stderr.rstrip().endswith("nothing was written")
    assert len(proc.stderr.splitlines()) == 8  # header, 4 keys, the count, the verdict, nothing written
    assert not (tmp_path / "out.npz").exists()


def test_an_empty_classifier_does_not_size_the_model(tmp_path):
    # fc.weight of shape (10**9, 0) holds no bytes; sizing fc by it would reserve 2 TB.
    src = tmp_path / "empty_fc.npz"
    numpy.savez(src, **{"fc.weight": numpy.zeros((10**9, 0), numpy.float32)})
    proc = run_cli("convert", str(src), str(tmp_path / "out.npz"), "--arch", "resnet18")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert "fc.weight: shape (1000000000, 0) in state_dict, model expects (1000, 512)" in proc.stderr
    assert "it fits none of the ten architectures" in proc.stderr
