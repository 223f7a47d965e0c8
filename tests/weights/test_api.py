"""Weight files against PyTorch itself: torch.save writes, npresnet reads, torch loads back.

Oracles: ``torch.save`` / ``torch.load`` and torchvision's ResNet-18 (seeded, with
randomised batch-norm statistics so nothing is an identity). Every array is
compared bit for bit with the tensor torch holds.
"""

from __future__ import annotations

import os
import stat
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from _torchvision import torchvision_resnet  # noqa: E402
from npresnet._atomic import atomic_write  # noqa: E402
from npresnet.errors import WeightsError  # noqa: E402
from npresnet.weights import detect_format, load_weights, save_weights  # noqa: E402


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory):
    model = torchvision_resnet("resnet18", seed=0, num_classes=10)  # batch norms randomised
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _same_bits(array: np.ndarray, tensor) -> bool:
    expected = tensor.detach().contiguous().numpy()
    return array.dtype == expected.dtype and array.shape == expected.shape and array.tobytes() == expected.tobytes()


def test_pth_matches_torch_bit_for_bit(resnet18_pth):
    model, path = resnet18_pth
    expected = model.state_dict()
    loaded = load_weights(path)
    assert list(loaded) == list(expected)  # same keys, same order
    for name, tensor in expected.items():
        assert _same_bits(loaded[name], tensor), name
        assert loaded[name].flags.c_contiguous and loaded[name].flags.writeable
    assert loaded["bn1.num_batches_tracked"].dtype == np.int64
    assert loaded["bn1.num_batches_tracked"].shape == ()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_round_trip_torchvision_reproduces_outputs(resnet18_pth, tmp_path, suffix):
    """torchvision -> .pth -> npresnet -> .npz/.safetensors -> npresnet -> torchvision: same logits."""
    model, path = resnet18_pth
    converted = tmp_path / f"resnet18{suffix}"
    save_weights(load_weights(path), converted)
    reloaded = load_weights(converted)
    fresh = torchvision.models.resnet18(num_classes=10).eval()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in reloaded.items()}, strict=True)
    for name, tensor in model.state_dict().items():
        assert _same_bits(reloaded[name], tensor), name
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def _tensor_zoo():
    """Tensors of every dtype we read, plus views: slices, transposes, offsets, shared storage."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(6, 7, generator=g, dtype=torch.float64)
    big = torch.randn(4, 5, 6, generator=g)
    return {
        "f64": base,
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(5, generator=g).half(),
        "i64": torch.arange(-5, 5),
        "i32": torch.arange(7, dtype=torch.int32) * -3,
        "i16": torch.arange(4, dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "c64": torch.randn(3, generator=g, dtype=torch.complex64),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "slice": base[2:5, 1:6:2],  # offset 15, strides (7, 2), shares base's storage
        "transposed": base.t(),  # strides (1, 7)
        "shared_row": base[4],  # offset 28
        "permuted": big.permute(2, 0, 1),  # a 3-d non-contiguous view
        "channels_last": torch.randn(2, 3, 4, 5, generator=g).to(memory_format=torch.channels_last),
    }


def test_views_dtypes_and_shared_storages_rebuild_exactly(tmp_path):
    zoo = _tensor_zoo()
    path = tmp_path / "zoo.pth"
    torch.save(zoo, path)
    loaded = load_weights(path)
    assert list(loaded) == list(zoo)
    for name, tensor in zoo.items():
        assert _same_bits(loaded[name], tensor), name
    # Shared storage in the file, independent arrays in memory.
    loaded["slice"][...] = 0
    assert not np.all(loaded["f64"][2:5, 1:6:2] == 0)


def test_bfloat16_is_widened_exactly_to_float32(tmp_path):
    values = torch.randn(64, generator=torch.Generator().manual_seed(4)).bfloat16()
    torch.save({"w": values, "w_view": values[3::5]}, tmp_path / "bf16.pth")
    loaded = load_weights(tmp_path / "bf16.pth")
    assert loaded["w"].dtype == np.float32
    assert _same_bits(loaded["w"], values.float())
    assert _same_bits(loaded["w_view"], values[3::5].float())
    # The same through safetensors, written by the safetensors package from torch tensors.
    from safetensors.torch import save_file

    save_file({"w": values}, tmp_path / "bf16.safetensors")
    assert _same_bits(load_weights(tmp_path / "bf16.safetensors")["w"], values.float())


def test_big_endian_checkpoint(tmp_path):
    """A checkpoint written on a big-endian machine: byteorder 'big' and byte-swapped storages."""
    zoo = {"a": torch.randn(3, 4), "b": torch.arange(5), "h": torch.randn(2).half()}
    torch.save(zoo, tmp_path / "little.pth")
    with zipfile.ZipFile(tmp_path / "little.pth") as src, zipfile.ZipFile(tmp_path / "big.pth", "w") as dst:
        storages = {f"little/data/{i}": t for i, t in enumerate(zoo.values())}
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "little/byteorder":
                data = b"big"
            elif info.filename in storages:
                data = storages[info.filename].numpy().byteswap().tobytes()
            dst.writestr(info.filename, data)
    loaded = load_weights(tmp_path / "big.pth")
    for name, tensor in zoo.items():
        assert _same_bits(loaded[name], tensor), name
        assert loaded[name].dtype.isnative


def test_tied_tensor_under_two_names(tmp_path):
    shared = torch.randn(4, 4)
    torch.save({"encoder.weight": shared, "decoder.weight": shared}, tmp_path / "tied.pth")
    loaded = load_weights(tmp_path / "tied.pth")
    assert _same_bits(loaded["encoder.weight"], shared)
    assert _same_bits(loaded["decoder.weight"], shared)


def test_plain_dict_and_protocol_4_checkpoints(tmp_path):
    state = {"w": torch.randn(3), "n": torch.tensor(4)}
    torch.save(state, tmp_path / "p4.pth", pickle_protocol=4)
    loaded = load_weights(tmp_path / "p4.pth")
    assert all(_same_bits(loaded[k], v) for k, v in state.items())


def test_broadcast_views_are_refused_with_a_reason(tmp_path):
    torch.save({"expanded": torch.ones(1).expand(1000)}, tmp_path / "expanded.pth")
    with pytest.raises(WeightsError, match="broadcast views are not read"):
        load_weights(tmp_path / "expanded.pth")


def test_legacy_format_is_refused_with_how_to_resave(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match=r"legacy .*re-save it"):
        load_weights(tmp_path / "old.pth")


def test_full_model_pickle_is_refused_naming_its_class(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=2), tmp_path / "model.pth")
    with pytest.raises(WeightsError, match=r"refused global torchvision\.models\.resnet\.ResNet"):
        load_weights(tmp_path / "model.pth")


def test_training_checkpoint_gets_a_hint(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "ckpt.pth")
    with pytest.raises(WeightsError, match=r"value of 'model' is a .*training checkpoint.*checkpoint\['model'\]"):
        load_weights(tmp_path / "ckpt.pth")


def test_format_comes_from_content_not_suffix(tmp_path):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    save_weights(state, tmp_path / "w.npz")
    save_weights(state, tmp_path / "w.safetensors")
    os.replace(tmp_path / "w.npz", tmp_path / "really_npz.pth")
    os.replace(tmp_path / "w.safetensors", tmp_path / "really_safetensors.npz")
    assert detect_format(tmp_path / "really_npz.pth") == "npz"
    assert detect_format(tmp_path / "really_safetensors.npz") == "safetensors"
    for name in ("really_npz.pth", "really_safetensors.npz"):
        np.testing.assert_array_equal(load_weights(tmp_path / name)["w"], state["w"])
    (tmp_path / "notes.safetensors").write_text("hello, I am text")
    with pytest.raises(WeightsError, match=r"is not a \.safetensors file as its name says"):
        load_weights(tmp_path / "notes.safetensors")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "absent.pth")


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_keeps_dtypes_shapes_and_order(tmp_path, suffix):
    rng = np.random.default_rng(5)
    state = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "bn.num_batches_tracked": np.array(3, dtype=np.int64),
        "half": rng.standard_normal(5).astype(np.float16),
        "double": rng.standard_normal((2, 2)),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
        "big_endian": np.arange(4, dtype=">i4"),
        "mask": np.array([True, False]),
        "file": np.zeros(1, np.float32),  # names that numpy.savez would treat as arguments
        "allow_pickle": np.ones(1, np.float32),
    }
    save_weights(state, tmp_path / f"w{suffix}")
    loaded = load_weights(tmp_path / f"w{suffix}")
    assert set(loaded) == set(state)
    if suffix == ".npz":
        assert list(loaded) == list(state)
    for name, array in state.items():
        assert loaded[name].shape == array.shape and loaded[name].dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(loaded[name], array)


def test_save_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(WeightsError, match="writes .npz or .safetensors"):
        save_weights({"w": np.ones(2)}, tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="keys must be non-empty strings"):
        save_weights({3: np.ones(2)}, tmp_path / "w.npz")
    with pytest.raises(WeightsError, match="object array"):
        save_weights({"w": np.array([None, 1], dtype=object)}, tmp_path / "w.npz")
    with pytest.raises(WeightsError, match="state_dict is empty"):
        save_weights({}, tmp_path / "w.npz")
    with pytest.raises(WeightsError, match="cannot be stored in safetensors"):
        save_weights({"w": np.ones(2, np.complex64)}, tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "w.npz"
    save_weights({"old": np.ones(3, np.float32)}, target)
    before = target.read_bytes()

    def exploding_write(state_dict, file):
        file.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("npresnet.weights.api.write_npz", exploding_write)
    with pytest.raises(OSError, match="No space left"):
        save_weights({"new": np.zeros(3, np.float32)}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temporary left behind


def test_atomic_write_permissions_follow_umask(tmp_path):
    with atomic_write(tmp_path / "a.bin") as file:
        file.write(b"data")
    with open(tmp_path / "b.bin", "wb") as file:
        file.write(b"data")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "b.bin").st_mode)
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_atomic_write_refuses_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError):
        with atomic_write(tmp_path) as file:
            file.write(b"x")


def test_atomic_write_leaves_a_fifo_or_device_in_place(tmp_path):
    """Renaming over a FIFO or a device would delete it (as root, /dev/null itself): refused, nothing written."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError, match="a FIFO, not a regular file"):
        with atomic_write(fifo) as file:
            file.write(b"x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary left
    try:  # a device node of our own (never the real /dev/null, which a regression would delete): root only
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pass
    else:
        with pytest.raises(FileExistsError, match="a character device"):
            with atomic_write(tmp_path / "null") as file:
                file.write(b"x")
        assert stat.S_ISCHR(os.lstat(tmp_path / "null").st_mode)
    link = tmp_path / "link"
    link.symlink_to(fifo)  # a link to one is refused too (as /dev/stdout is)
    with pytest.raises(FileExistsError, match="a FIFO"):
        with atomic_write(link) as file:
            file.write(b"x")
    assert link.is_symlink()
    (tmp_path / "target").write_bytes(b"old")
    link.unlink()
    link.symlink_to(tmp_path / "target")  # a link to a file is replaced by the file; its target stays
    with atomic_write(link) as file:
        file.write(b"data")
    assert link.read_bytes() == b"data" and not link.is_symlink() and (tmp_path / "target").read_bytes() == b"old"


def test_save_refuses_keys_the_file_could_not_hold_as_they_are(tmp_path):
    """An .npz stores each key as a zip member path: NUL cut the name, ``../../x`` was a path out of the folder of
    whoever unzips it, and a 70,000-character key raised struct.error. Each is refused, nothing is written."""
    one = np.ones(2, np.float32)
    for key, suffixes, words in [
        ("a\x00b", (".npz", ".safetensors"), "control character"),
        ("fc\nweight", (".npz", ".safetensors"), "control character"),
        ("../../x", (".npz",), "path separator"),
        ("a\\b", (".npz",), "path separator"),
        ("a\udcff", (".npz", ".safetensors"), "lone surrogate"),
        ("k" * 70_000, (".npz",), "at most 65,535 bytes"),
    ]:
        for suffix in suffixes:
            with pytest.raises(WeightsError, match=words):
                save_weights({key: one}, tmp_path / f"w{suffix}")
    assert list(tmp_path.iterdir()) == []
    save_weights({"../../x": one}, tmp_path / "w.safetensors")  # a name, not a path, in a JSON header
    assert list(load_weights(tmp_path / "w.safetensors")) == ["../../x"]


def test_safetensors_missing_package_says_how_to_install(tmp_path, monkeypatch):
    save_weights({"w": np.ones(2, np.float32)}, tmp_path / "w.safetensors")
    monkeypatch.setitem(__import__("sys").modules, "safetensors", None)
    with pytest.raises(ImportError, match=r'pip install "npresnet\[tools\]"'):
        load_weights(tmp_path / "w.safetensors")
