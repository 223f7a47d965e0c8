"""Hostile and malformed weight files: each is refused with WeightsError saying what is wrong.

Malicious pickles each try to create a canary file. Every one is first shown to
be live (plain ``pickle.loads`` does create the canary), then ``load_weights``
must refuse it, naming the global, with the canary still absent.
"""

from __future__ import annotations

import builtins
import functools
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

from _helpers.pickles import (
    BINPERSID,
    BUILD,
    EMPTY_TUPLE,
    NONE,
    PROTO2,
    STOP,
    p_call,
    p_dict,
    p_global,
    p_int,
    p_str,
    p_tensor,
    p_tuple,
    pickle_of,
    write_pth,
)
from npresnet.errors import WeightsError
from npresnet.weights import load_weights


def test_hand_made_checkpoint_is_valid_for_torch_too(tmp_path):
    """The builder above is right: torch.load(weights_only=True) reads its output the same."""
    torch = pytest.importorskip("torch")
    path = write_pth(
        tmp_path / "ok.pth",
        pickle_of(p_dict((p_str("w"), p_tensor()), (p_str("view"), p_tensor(offset=1, size=(2, 2), stride=(1, 3))))),
    )
    ours = load_weights(path)
    theirs = torch.load(path, weights_only=True)
    for name in ("w", "view"):
        np.testing.assert_array_equal(ours[name], theirs[name].numpy())
    np.testing.assert_array_equal(ours["view"], [[1, 4], [2, 5]])


# ----------------------------------------------------------------------------------------------
# Malicious pickles


def _python_command(canary) -> list[str]:
    return [sys.executable, "-c", f"open({str(canary)!r}, 'w').close()"]


class _Reduce:
    """An object that pickles as ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _payloads(canary):
    """name -> (pickle bytes, the global load_weights must name)."""
    shell = subprocess.list2cmdline(_python_command(canary))
    python_code = f"open({str(canary)!r}, 'w').close()"
    system = f"{os.system.__module__}.system"
    return {
        "os.system via __reduce__": (pickle.dumps(_Reduce(os.system, shell), protocol=2), system),
        "builtins.eval": (pickle.dumps(_Reduce(builtins.eval, python_code), protocol=2), "builtins.eval"),
        "builtins.exec inside a state dict": (
            pickle_of(
                p_dict(
                    (p_str("fc.weight"), p_call(p_global("builtins", "exec"), p_str(python_code))),
                    (p_str("conv1.weight"), p_tensor()),
                )
            ),
            "builtins.exec",
        ),
        "subprocess.Popen": (
            pickle.dumps(_Reduce(subprocess.Popen, _python_command(canary)), protocol=2),
            "subprocess.Popen",
        ),
        "nested pickle via pickle.loads": (
            pickle.dumps(_Reduce(pickle.loads, pickle.dumps(_Reduce(os.system, shell))), protocol=4),
            f"{pickle.loads.__module__}.loads",
        ),
        "builtins.getattr(__import__('os'), 'system')": (
            pickle_of(
                p_call(
                    p_call(
                        p_global("builtins", "getattr"),
                        p_call(p_global("builtins", "__import__"), p_str("os")),
                        p_str("system"),
                    ),
                    p_str(shell),
                )
            ),
            "builtins.getattr",
        ),
        "STACK_GLOBAL (protocol 4)": (pickle.dumps(_Reduce(os.system, shell), protocol=4), system),
        "INST opcode (protocol 0)": (b"(V" + shell.encode("raw_unicode_escape") + b"\nios\nsystem\n.", "os.system"),
        "OBJ opcode (protocol 1)": (
            b"(cos\nsystem\nX" + struct.pack("<I", len(shell)) + shell.encode() + b"o.",
            "os.system",
        ),
        "global hidden in a storage's persistent id": (
            pickle_of(
                p_dict(
                    (
                        p_str("w"),
                        p_tuple(
                            p_str("storage"),
                            p_call(p_global("os", "system"), p_str(shell)),
                            p_str("0"),
                            p_str("cpu"),
                            p_int(6),
                        )
                        + BINPERSID,
                    )
                )
            ),
            "os.system",
        ),
    }


PAYLOAD_NAMES = list(_payloads("canary"))


class _UnrestrictedUnpickler(pickle.Unpickler):
    """What torch.load(weights_only=False) amounts to: any global, any persistent id."""

    def persistent_load(self, pid):
        return pid


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, name):
    canary = tmp_path / "canary"
    payload, refused_global = _payloads(canary)[name]
    path = write_pth(tmp_path / "evil.pth", payload)
    with pytest.raises(WeightsError, match=f"refused global {refused_global}"):
        load_weights(path)
    assert not canary.exists()
    # Control: the payload is live; an unrestricted unpickler does create the canary.
    try:
        result = _UnrestrictedUnpickler(io.BytesIO(payload)).load()
    except Exception:  # the side effect happened before the rest of the pickle failed
        result = None
    if isinstance(result, subprocess.Popen):
        result.wait(timeout=60)
    assert canary.exists()


def test_build_cannot_tamper_with_the_allowed_functions(tmp_path):
    """BUILD with slot state would setattr on the object below it; only torch's _metadata is accepted."""
    tamper = pickle_of(
        p_global("torch._utils", "_rebuild_tensor_v2")
        + p_tuple(NONE, p_dict((p_str("__defaults__"), p_tuple(p_int(1)))))
        + BUILD
    )
    with pytest.raises(WeightsError, match="BUILD on a method is not allowed"):
        load_weights(write_pth(tmp_path / "tamper.pth", tamper))
    state = pickle_of(p_call(p_global("collections", "OrderedDict")) + p_dict((p_str("__class__"), NONE)) + BUILD)
    with pytest.raises(WeightsError, match="BUILD on a _PickledDict is not allowed"):
        load_weights(write_pth(tmp_path / "state.pth", state))
    good = write_pth(tmp_path / "good.pth", pickle_of(p_dict((p_str("w"), p_tensor()))))
    np.testing.assert_array_equal(load_weights(good)["w"], np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize(
    "module, name",
    [
        ("torch", "load"),
        ("torch._utils", "_rebuild_tensor"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("copyreg", "_reconstructor"),
        ("torch", "QInt8Storage"),
        ("torch", "NoSuchStorage"),
    ],
)
def test_globals_outside_the_allowlist_are_named(tmp_path, module, name):
    path = write_pth(tmp_path / "g.pth", pickle_of(p_dict((p_str("w"), p_call(p_global(module, name))))))
    with pytest.raises(WeightsError, match=f"refused global {module}.{name}"):
        load_weights(path)


@pytest.mark.parametrize(
    "opcodes, opname",
    [
        (b"\x82\x01", "EXT1"),
        (b"\x81", "NEWOBJ"),
        (b"P0\n", "PERSID"),
        (b"\x97", "NEXT_BUFFER"),
    ],
)
def test_opcodes_torch_never_writes_are_refused(tmp_path, opcodes, opname):
    path = write_pth(tmp_path / "op.pth", PROTO2 + b"\x80\x05"[0:0] + EMPTY_TUPLE + EMPTY_TUPLE + opcodes + STOP)
    with pytest.raises(WeightsError, match=f"opcode {opname} is not allowed"):
        load_weights(path)


def test_allowed_objects_cannot_be_called_as_something_else(tmp_path):
    path = write_pth(tmp_path / "c.pth", pickle_of(p_dict((p_str("w"), p_call(p_global("torch", "FloatStorage"))))))
    with pytest.raises(
        WeightsError, match="pickle calls torch.FloatStorage, which is not one of the allowed functions"
    ):
        load_weights(path)


# ----------------------------------------------------------------------------------------------
# Malformed .pth files


def _peak_bytes(function) -> int:
    tracemalloc.start()
    try:
        try:
            function()
        except WeightsError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _pth(tmp_path, body: bytes, **kwargs):
    return write_pth(tmp_path / "bad.pth", pickle_of(body), **kwargs)


@pytest.mark.parametrize(
    "body, storages, message",
    [
        (
            p_dict((p_str("w"), p_tensor(numel=7))),
            None,
            r"storage '0' claims 7 elements of float32 \(28 bytes\) but its zip member holds 24 bytes",
        ),
        (p_dict((p_str("w"), p_tensor(key="9"))), None, r"storage '9' is missing: no zip member 'archive/data/9'"),
        (
            p_dict((p_str("w"), p_tensor(size=(2, 4), stride=(4, 1)))),
            None,
            r"reaches element 7 but its storage holds only 6",
        ),
        (
            p_dict((p_str("w"), p_tensor(offset=5, size=(2,), stride=(1,)))),
            None,
            r"reaches element 6 but its storage holds only 6",
        ),
        (p_dict((p_str("w"), p_tensor(size=(-2, 3)))), None, r"entry -2 is not an integer >= 0"),
        (p_dict((p_str("w"), p_tensor(offset=-1))), None, r"storage offset must be an integer >= 0"),
        (
            p_dict((p_str("w"), p_tensor(size=(2**62, 2**62), stride=(1, 1)))),
            None,
            r"reaches element 9223372036854775806 but its storage holds only 6",
        ),
        (p_dict((p_str("w"), p_tensor(size=(2, 3), stride=(3,)))), None, r"size and stride have different lengths"),
        (p_dict((p_str("w"), p_tensor()), (p_str("w"), p_tensor())), None, r"duplicate key 'w'"),
        (p_dict((p_int(3), p_tensor())), None, r"key 3 is a int, not a string"),
        (p_dict((p_str("w"), p_int(3))), None, r"value of 'w' is a int, not a tensor"),
        (p_tuple(p_tensor()), None, r"checkpoint holds a tuple, not a state dict"),
        (
            p_dict((p_str("w"), p_tensor(numel=3, size=(3,), stride=(1,), storage="BoolStorage"))),
            {"0": b"\x01\x00\x02"},
            r"bool data holds bytes other than 0 and 1",
        ),
        (
            p_dict((p_str("a"), p_tensor()), (p_str("b"), p_tensor(numel=3, storage="DoubleStorage"))),
            None,
            r"storage '0' is referenced as torch.FloatStorage and as torch.DoubleStorage",
        ),
    ],
)
def test_malformed_pth_is_refused_with_a_reason(tmp_path, body, storages, message):
    with pytest.raises(WeightsError, match=message):
        load_weights(_pth(tmp_path, body, storages=storages))


def test_huge_claims_allocate_nothing_big(tmp_path):
    """A 1-kB file claiming a 4-TB storage or a 2**40-element tensor is refused before allocating."""
    claims = [
        _pth(tmp_path, p_dict((p_str("w"), p_tensor(numel=2**40, size=(2**20, 2**20), stride=(2**20, 1))))),
        write_pth(tmp_path / "expand.pth", pickle_of(p_dict((p_str("w"), p_tensor(size=(2**40,), stride=(0,)))))),
    ]
    for path in claims:
        with pytest.raises(WeightsError):
            load_weights(path)
        assert _peak_bytes(functools.partial(load_weights, path)) < 4 * 2**20


def test_many_views_of_one_storage_cannot_multiply_memory(tmp_path):
    """Memo references let a small pickle rebuild one storage thousands of times; a budget stops it."""
    storage = np.zeros(2**20, dtype="<f4").tobytes()  # 4 MiB
    tensor = p_tensor(numel=2**20, size=(2**20,), stride=(1,))
    pairs = [(p_str(f"w{i}"), p_tensor(numel=2**20, offset=i % 2, size=(2**20 - 1,), stride=(1,))) for i in range(40)]
    path = write_pth(tmp_path / "amp.pth", pickle_of(p_dict((p_str("base"), tensor), *pairs)), storages={"0": storage})
    with pytest.raises(WeightsError, match="tensors would need more than"):
        load_weights(path)


def _patch_central_size(path, member: str, new_size: int):
    """Make the zip's central directory claim ``new_size`` uncompressed bytes for ``member``."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = data.index(b"PK\x01\x02" + b"", data.index(b"PK\x01\x02"))
    while data[at + 46 : at + 46 + len(name)] != name:
        at = data.index(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, at + 24, new_size)
    path.write_bytes(bytes(data))


def test_zip_member_claiming_more_than_its_bytes(tmp_path):
    path = _pth(tmp_path, p_dict((p_str("w"), p_tensor(numel=2**28, size=(2**28,), stride=(1,)))))
    _patch_central_size(path, "archive/data/0", 2**30)
    with pytest.raises(WeightsError, match=r"'archive/data/0' claims 1073741824 bytes but its 24 stored bytes"):
        load_weights(path)
    assert _peak_bytes(lambda: load_weights(path)) < 4 * 2**20


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), r"not a readable zip archive \(truncated or corrupt\)"),
        (lambda p: p.write_bytes(b"\x00\x01garbage"), r"is not a \.pth file as its name says"),
        (lambda p: p.write_bytes(b""), r"is not a \.pth file as its name says"),
        (
            lambda p: write_pth(p, pickle_of(p_dict()), extra=[("other/data.pkl", b"")]),
            r"has 2 '<archive>/data.pkl' members",
        ),
        (lambda p: zipfile.ZipFile(p, "w").writestr("archive/version", "3"), r"neither a PyTorch checkpoint"),
        (lambda p: write_pth(p, pickle_of(p_dict()), byteorder=b"middle"), r"byteorder member says 'middle'"),
        (lambda p: write_pth(p, pickle_of(p_dict()), extra=[("archive/data.pkl", b"")]), r"duplicate members"),
        (lambda p: write_pth(p, PROTO2 + p_dict()), r"not a valid checkpoint pickle"),  # no STOP
        (
            lambda p: write_pth(p, PROTO2 + b"\x8e" + struct.pack("<Q", 2**60) + STOP),
            r"not a valid checkpoint pickle",
        ),  # BINBYTES8 of 1 EB
        (lambda p: write_pth(p, b"\x80\x09" + STOP), r"not a valid checkpoint pickle"),  # protocol 9
    ],
)
def test_damaged_pth_archives(tmp_path, make, message):
    path = tmp_path / "bad.pth"
    with pytest.warns(UserWarning) if "duplicate" in message else _nothing():
        make(path)
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_truncated_and_bit_flipped_pth(tmp_path):
    path = write_pth(tmp_path / "ok.pth", pickle_of(p_dict((p_str("w"), p_tensor()))))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_weights(path)
    flipped = bytearray(data)
    flipped[data.index(b"X\x01\x00\x00\x00w")] ^= 0x01  # inside data.pkl: the CRC catches it
    path.write_bytes(bytes(flipped))
    with pytest.raises(WeightsError, match=r"'archive/data.pkl' cannot be read \(corrupt\)"):
        load_weights(path)


def test_unsupported_compression_is_refused(tmp_path):
    path = tmp_path / "bz.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("archive/data.pkl", pickle_of(p_dict()))
    with pytest.raises(WeightsError, match="compression method 12"):
        load_weights(path)


# ----------------------------------------------------------------------------------------------
# Malformed .npz files


def _npy(array=None, header: dict | None = None, data: bytes | None = None) -> bytes:
    """A .npy member; ``header``/``data`` override what the array would give."""
    if header is None:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array, allow_pickle=True)
        return buffer.getvalue()
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + (data or b"")


def _npy_text(text: bytes, data: bytes = b"") -> bytes:
    """A .npy member whose header is ``text`` verbatim (padded and terminated as the format requires)."""
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _npz(tmp_path, members):
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "members, message",
    [
        ([("w.npy", _npy(np.array([None, 1], dtype=object)))], r"object array \(it would need pickle\)"),
        (
            [("w.npy", _npy(header={"descr": "<f4", "fortran_order": False, "shape": (4, 4)}, data=b"\x00" * 16))],
            r"declares shape \(4, 4\) of float32 \(64 bytes\) but holds 16 bytes",
        ),
        (
            [("w.npy", _npy(header={"descr": "<f4", "fortran_order": False, "shape": (-1, 4)}, data=b""))],
            r"not an integer >= 0|not a valid \.npy array",
        ),
        (
            [("w.npy", _npy(header={"descr": "<x9", "fortran_order": False, "shape": (1,)}, data=b"\x00" * 9))],
            r"member 'w.npy' is not a valid \.npy array",
        ),
        ([("w.npy", _npy(np.array(["abc"])))], r"dtype <U3 is not a numeric weight dtype"),
        (
            [("w.npy", _npy(np.array([0, 2], dtype=np.uint8).view(np.bool_)))],
            r"bool data holds bytes other than 0 and 1",
        ),
        ([("w.npy", b"\x93NUMPX\x01\x00junk")], r"member 'w.npy' is not a valid \.npy array"),
        # NumPy tokenizes the header: unbalanced brackets raised tokenize.TokenError through every command
        ([("w.npy", _npy_text(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,"))], r"not a valid \.npy"),
        ([("w.npy", _npy_text(b"{'descr': '<f4', 'shape': " + b"(" * 3000 + b")" * 3000 + b"}"))], r"not a valid"),
        (
            [("w.npy", _npy(np.ones(2))), ("notes.txt", b"hi")],
            r"neither a PyTorch checkpoint \(no '<archive>/data.pkl'\) nor an \.npz",
        ),
        ([("w.npy", _npy(np.ones(2))), ("w.npy", _npy(np.zeros(2)))], r"duplicate members \['w.npy'\]"),
        ([], r"holds no arrays"),
    ],
)
def test_malformed_npz_is_refused_with_a_reason(tmp_path, members, message):
    with pytest.warns(UserWarning) if "duplicate" in message else _nothing():
        path = _npz(tmp_path, members)
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


def test_npz_huge_declared_shape_allocates_nothing_big(tmp_path):
    path = _npz(
        tmp_path,
        [("w.npy", _npy(header={"descr": "<f8", "fortran_order": False, "shape": (2**20, 2**20)}, data=b"\x00" * 64))],
    )
    with pytest.raises(WeightsError, match=r"declares shape \(1048576, 1048576\)"):
        load_weights(path)
    assert _peak_bytes(lambda: load_weights(path)) < 4 * 2**20


def test_npz_truncated(tmp_path):
    path = _npz(tmp_path, [("w.npy", _npy(np.ones(100)))])
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_weights(path)


# ----------------------------------------------------------------------------------------------
# Malformed .safetensors files


def _safetensors(tmp_path, header, data: bytes = b"", header_size: int | None = None) -> os.PathLike:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(text) if header_size is None else header_size
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", size) + text + data)
    return path


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize(
    "header, data, header_size, message",
    [
        ({"w": _entry()}, b"\x00" * 8, 10**6, r"header claims 1000000 bytes but the file has"),
        (b'{"w": {"dtype": "F32", ', b"", None, r"header is not valid JSON"),
        (
            b'{"w": ' + json.dumps(_entry()).encode() + b', "w": ' + json.dumps(_entry()).encode() + b"}",
            b"\x00" * 8,
            None,
            r"header names 'w' twice",
        ),
        ({"w": _entry(dtype="F99")}, b"\x00" * 8, None, r"unknown or unsupported dtype tag 'F99'"),
        (
            {"w": _entry(offsets=(0, 16))},
            b"\x00" * 8,
            None,
            r"data_offsets \[0, 16\] lie outside the 8-byte data block",
        ),
        ({"w": _entry(shape=(3,))}, b"\x00" * 8, None, r"shape \[3\] of F32 needs 12 bytes, data_offsets give 8"),
        ({"w": _entry(shape=(-2,))}, b"\x00" * 8, None, r"entry -2 is not an integer >= 0"),
        ({"w": _entry(shape=(2**31, 2**31))}, b"\x00" * 8, None, r"needs 18446744073709551616 bytes"),
        # empty, but no array can have that shape: NumPy's reshape raised through every command
        ({"w": _entry(shape=(0, 2**62), offsets=(0, 0))}, b"", None, r"spans 4\.61e\+18 elements along its nonzero"),
        ({"w": _entry(dtype="BOOL", shape=(2,), offsets=(0, 2))}, b"\x01\x07", None, r"bool data holds bytes other"),
        ({"w": {"dtype": "F32", "shape": [2]}}, b"\x00" * 8, None, r"must have exactly dtype, shape, data_offsets"),
        ([1, 2], b"", None, r"is not a \.safetensors file as its name says"),
    ],
)
def test_malformed_safetensors_is_refused_with_a_reason(tmp_path, header, data, header_size, message):
    path = _safetensors(tmp_path, header, data, header_size)
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


def test_safetensors_huge_declared_shape_allocates_nothing_big(tmp_path):
    path = _safetensors(tmp_path, {"w": _entry(dtype="F64", shape=(2**20, 2**20), offsets=(0, 8))}, b"\x00" * 8)
    assert _peak_bytes(lambda: load_weights(path)) < 4 * 2**20
    with pytest.raises(WeightsError, match="needs 8796093022208 bytes"):
        load_weights(path)


def test_safetensors_too_short(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(WeightsError, match="header claims 5 bytes but the file has 1"):
        load_weights(tmp_path / "w.safetensors")
