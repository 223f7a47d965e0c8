"""Hostile weight files built the way an attacker would, loaded in a sandbox.

Each file is loaded by ``load_weights`` in a child process with an address-space
limit (``RLIMIT_AS``, :data:`ADDRESS_SPACE`) and a timeout (:data:`TIMEOUT_S`), so a
regression (a segfault, a hang, memory blowing up) fails the test instead of killing
the run. The only acceptable outcomes are ``WeightsError`` naming what is wrong, or the
right arrays as fresh, writable, owning, native-order copies.

Pickles are assembled opcode by opcode (the builders in ``_helpers/pickles.py``).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import npresnet
from _helpers.pickles import (
    APPEND,
    BINPERSID,
    DUP,
    EMPTY_DICT,
    EMPTY_LIST,
    MARK,
    NEWFALSE,
    POP,
    PROTO2,
    SETITEM,
    SETITEMS,
    STOP,
    TUPLE,
    TUPLE1,
    TUPLE2,
    binget,
    binput,
    p_call,
    p_dict,
    p_global,
    p_int,
    p_long4,
    p_str,
    p_tensor,
    p_tuple,
    pickle_of,
    rebuild,
    storage_ref,
    write_pth,
)
from npresnet.weights import limits

ADDRESS_SPACE = 2**30  # 1 GiB of address space for the child, numpy and Python included (~250 MB)
TIMEOUT_S = 30  # generous for a loaded 2-core CI runner; a correct load takes well under 2 s


_CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from npresnet.errors import WeightsError
from npresnet.weights import load_weights
try:
    loaded = load_weights(sys.argv[1])
except WeightsError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"arrays": {name: {
        "dtype": array.dtype.str, "shape": list(array.shape), "native": array.dtype.isnative,
        "owndata": bool(array.flags.owndata), "writeable": bool(array.flags.writeable),
        "contiguous": bool(array.flags.c_contiguous), "values": array.ravel().tolist()[:4096],
    } for name, array in loaded.items()}}))
"""


def load_sandboxed(path) -> dict:
    """Load ``path`` in a child limited to ADDRESS_SPACE and TIMEOUT_S; returns its outcome.

    ``{"error": message}`` for WeightsError, ``{"arrays": {...}}`` otherwise; anything
    else (another exception, a crash, a timeout, running out of memory) fails the test.
    """
    root = str(Path(npresnet.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), str(ADDRESS_SPACE)],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path} took more than {TIMEOUT_S} s")
    assert done.returncode == 0, f"child exited with {done.returncode}:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def assert_refused(path, *fragments: str) -> str:
    outcome = load_sandboxed(path)
    assert "error" in outcome, f"loaded instead of refusing: {str(outcome)[:500]}"
    for fragment in fragments:
        assert fragment in outcome["error"], outcome["error"]
    return outcome["error"]


def assert_fresh_arrays(outcome: dict) -> dict:
    assert "arrays" in outcome, outcome.get("error")
    for name, array in outcome["arrays"].items():
        assert array["owndata"] and array["writeable"] and array["contiguous"] and array["native"], (name, array)
    return outcome["arrays"]


# ----------------------------------------------------------------------------------------------
# Critical 1: out-of-bounds reads through something that is not a storage


def test_tensor_rebuilt_from_an_earlier_tensor_is_refused(tmp_path):
    """The 956-byte reproduction: B's 'storage' is tensor A (2 x 32) taken back from the memo."""
    a = rebuild(storage_ref(numel=64), 0, (2, 32), (32, 1)) + binput(0)
    b = rebuild(binget(0), 1, (63,), (1,))
    path = write_pth(
        tmp_path / "oob.pth",
        pickle_of(p_dict((p_str("a"), a), (p_str("b"), b))),
        storages={"0": np.ones(64, dtype="<f4").tobytes()},
    )
    assert_refused(path, "a tensor is rebuilt from a ndarray", "only a storage")


def test_big_endian_tensor_as_storage_is_refused(tmp_path):
    """The segfaulting variant: a big-endian storage, a 2-d view of it used as the storage of a long tensor."""
    n = 2**16
    a = rebuild(storage_ref(numel=2 * n), 0, (2, n), (n, 1)) + binput(0)
    b = rebuild(binget(0), 0, (2 * n - 1,), (1,))
    path = write_pth(
        tmp_path / "oob_be.pth",
        pickle_of(p_dict((p_str("a"), a), (p_str("b"), b))),
        storages={"0": np.ones(2 * n, dtype=">f4").tobytes()},
        byteorder=b"big",
    )
    assert_refused(path, "a tensor is rebuilt from a ndarray")


@pytest.mark.parametrize(
    "storage, described",
    [
        (p_tuple(p_int(1), p_int(2)), "a tuple of 2 items"),
        (p_int(7), "7;"),
        (p_str("0"), "'0';"),
        (EMPTY_DICT, "a _PickledDict"),
    ],
)
def test_only_a_storage_can_hold_a_tensor(tmp_path, storage, described):
    path = write_pth(tmp_path / "s.pth", pickle_of(p_dict((p_str("w"), rebuild(storage, 0, (1,), (1,))))))
    assert_refused(path, f"a tensor is rebuilt from {described}")


@pytest.mark.parametrize(
    "offset, size, stride, message",
    [
        (0, (2, 3), (3, -1), "stride entry -1 is not an integer >= 0"),
        (-1, (2,), (1,), "storage offset must be an integer >= 0"),
        (5, (2,), (1,), "reaches element 6 but its storage holds only 6"),
        (0, (3, 2), (2, 2), "reaches element 6 but its storage holds only 6"),  # flat count fits, the extent does not
        (0, (2**62,), (0,), "has 4611686018427387904 elements"),  # broadcast of one element
    ],
)
def test_view_extent_is_checked(tmp_path, offset, size, stride, message):
    path = write_pth(tmp_path / "v.pth", pickle_of(p_dict((p_str("w"), rebuild(storage_ref(), offset, size, stride)))))
    assert_refused(path, message)


def test_stride_and_size_must_be_plain_int_tuples(tmp_path):
    bad = p_call(
        p_global("torch._utils", "_rebuild_tensor_v2"),
        storage_ref(),
        p_int(0),
        p_tuple(p_int(2), p_str("3")),
        p_tuple(p_int(3), p_int(1)),
        NEWFALSE,
        p_call(p_global("collections", "OrderedDict")),
    )
    path = write_pth(tmp_path / "t.pth", pickle_of(p_dict((p_str("w"), bad))))
    assert_refused(path, "size entry '3' is not an integer")


def test_valid_views_load_as_fresh_owning_copies(tmp_path):
    """Overlapping views, a transposed view and a big-endian storage: right values, fresh arrays."""
    body = p_dict(
        (p_str("w"), rebuild(storage_ref(), 0, (2, 3), (3, 1))),
        (p_str("t"), rebuild(storage_ref(), 0, (3, 2), (1, 3))),
        (p_str("s"), rebuild(storage_ref(), 2, (2, 2), (1, 1))),
        (p_str("one"), rebuild(storage_ref(), 5, (1, 1), (99, 12345))),
    )
    for order, byteorder in (("<f4", b"little"), (">f4", b"big")):
        path = write_pth(
            tmp_path / f"ok{byteorder.decode()}.pth",
            pickle_of(body),
            storages={"0": np.arange(6, dtype=order).tobytes()},
            byteorder=byteorder,
        )
        arrays = assert_fresh_arrays(load_sandboxed(path))
        assert arrays["w"]["values"] == [0, 1, 2, 3, 4, 5]
        assert arrays["t"]["values"] == [0, 3, 1, 4, 2, 5]
        assert arrays["s"]["values"] == [2, 3, 3, 4]
        assert arrays["one"]["values"] == [5] and arrays["one"]["shape"] == [1, 1]


def test_a_bare_storage_as_a_value_is_refused(tmp_path):
    """Decision: a storage is not a tensor; refused rather than handed out as a read-only view."""
    path = write_pth(tmp_path / "bare.pth", pickle_of(p_dict((p_str("w"), storage_ref()))))
    assert_refused(path, "value of 'w' is a bare torch storage, not a tensor")


# ----------------------------------------------------------------------------------------------
# Critical 2: nesting


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_deeply_nested_key_is_refused_without_recursion(tmp_path, depth):
    """A key nested a million tuples deep (TUPLE1 repeated): refused at the nesting limit, never hashed."""
    key = p_str("k") + TUPLE1 * depth
    path = write_pth(tmp_path / "deep.pth", PROTO2 + EMPTY_DICT + key + p_tensor() + SETITEM + STOP)
    assert_refused(path, "nests containers more than 32 deep")


@pytest.mark.parametrize(
    "opcodes, message",
    [
        (MARK * 500_000 + p_int(1) + TUPLE * 500_000, "opens more than 32 MARKs"),
        (
            EMPTY_LIST + binput(0) + TUPLE1 + binget(0) + EMPTY_LIST + APPEND,
            "pickle adds items to a container that already sits inside",
        ),
        (EMPTY_DICT + (p_str("k") + EMPTY_DICT) * 40 + SETITEM * 40, "nests containers more than 32 deep"),
    ],
)
def test_nesting_through_marks_and_lists_is_bounded(tmp_path, opcodes, message):
    path = write_pth(tmp_path / "n.pth", PROTO2 + opcodes + STOP)
    assert_refused(path, message)


# ----------------------------------------------------------------------------------------------
# Denial of service from small files


def _laughs(levels: int) -> bytes:
    """A tuple whose expansion has 2**levels leaves: each level is (previous, previous) via the memo."""
    out = p_str("lol") + TUPLE1 + binput(0)
    for _ in range(levels):
        out += POP + binget(0) + DUP + TUPLE2 + binput(0)
    return out  # leaves just the last tuple on the stack


@pytest.mark.parametrize(
    "use, message",
    [
        ("key", "key a tuple of 2 items is a tuple, not a string"),
        ("size", "size entry a tuple of 2 items is not an integer"),
        ("value", "value of 'w' is a tuple, not a tensor"),
        ("storage key", "malformed storage reference: key a tuple of 2 items"),
        ("persistent id", "unexpected persistent id a tuple of 2 items"),
    ],
)
def test_billion_laughs_is_never_expanded(tmp_path, use, message):
    """2**30 leaves through the memo, used where a hash, a repr or a walk would expand it."""
    laughs = _laughs(28)  # nested 29 deep, under the nesting limit: only its use can be refused
    bodies = {
        "key": EMPTY_DICT + laughs + p_tensor() + SETITEM,
        "size": p_dict(
            (
                p_str("w"),
                p_call(
                    p_global("torch._utils", "_rebuild_tensor_v2"),
                    storage_ref(),
                    p_int(0),
                    MARK + laughs + TUPLE,
                    p_tuple(p_int(1)),
                    NEWFALSE,
                    p_call(p_global("collections", "OrderedDict")),
                ),
            )
        ),
        "value": EMPTY_DICT + p_str("w") + laughs + SETITEM,
        "storage key": p_dict(
            (
                p_str("w"),
                p_tuple(p_str("storage"), p_global("torch", "FloatStorage"), laughs, p_str("cpu"), p_int(6))
                + BINPERSID,
            )
        ),
        "persistent id": p_dict((p_str("w"), laughs + BINPERSID)),
    }
    path = write_pth(tmp_path / "laughs.pth", pickle_of(bodies[use]))
    assert_refused(path, message)


def test_wide_fan_out_is_never_expanded(tmp_path):
    """Three levels of 2,000 references each (8e9 leaves), as a dict key: refused by type, at once."""
    out = p_str("x") + binput(0)
    for _ in range(3):
        out += POP + MARK + binget(0) * 2000 + TUPLE + binput(0)
    path = write_pth(tmp_path / "wide.pth", PROTO2 + EMPTY_DICT + out + p_tensor() + SETITEM + STOP)
    assert_refused(path, "key a tuple of 2000 items is a tuple")


def test_memo_indices_are_bounded_and_cheap(tmp_path):
    """Indices a dict would hash into one bucket chain; the memo is a bounded list instead."""
    colliding = b"".join(p_int(i) + binput(i << 20) + POP for i in range(1, 4000))
    assert_refused(
        write_pth(tmp_path / "m.pth", PROTO2 + colliding + EMPTY_DICT + STOP),
        "memo index 1048576 is outside [0, 262144)",
    )
    unset = PROTO2 + binget(7) + STOP
    assert_refused(write_pth(tmp_path / "u.pth", unset), "memo index 7 is read before anything was stored")
    sparse = PROTO2 + EMPTY_DICT + binput(2**18 - 1) + POP + binget(2**18 - 1) + STOP
    assert load_sandboxed(write_pth(tmp_path / "ok.pth", sparse)) == {"arrays": {}}


def test_integer_keys_are_refused_before_hashing(tmp_path):
    """50,000 int keys that all hash to 0 (multiples of 2**61 - 1), which a dict would insert in quadratic time.

    Set in one SETITEMS, the integers beyond 64 bits are refused as they are read; set one by
    one, the first key is refused as a key, before it is hashed.
    """
    keys = [p_int(i * (2**61 - 1)) for i in range(1, 50_000)]
    batch = PROTO2 + EMPTY_DICT + MARK + b"".join(k + b"N" for k in keys) + SETITEMS + STOP
    assert_refused(write_pth(tmp_path / "batch.pth", batch), "pickle integer takes 9 bytes")
    single = PROTO2 + EMPTY_DICT + b"".join(k + b"N" + SETITEM for k in keys) + STOP
    assert_refused(write_pth(tmp_path / "single.pth", single), "key 2305843009213693951 is a int, not a string")


@pytest.mark.parametrize(
    "integer, message",
    [
        (p_long4(10**5000), "pickle integer takes 2077 bytes; more than 8 (64 bits) are refused"),
        (b"L" + b"9" * 5000 + b"L\n", "LONG opcode: not an integer of at most 20 digits"),
        (b"I" + b"9" * 5000 + b"\n", "INT opcode: not an integer of at most 20 digits"),
        (p_int(2**63), "pickle integer takes 9 bytes"),
    ],
)
def test_huge_integers_are_refused_before_conversion(tmp_path, integer, message):
    path = write_pth(tmp_path / "big.pth", PROTO2 + EMPTY_DICT + integer + p_tensor() + SETITEM + STOP)
    assert_refused(path, message)


def test_a_dimension_of_2_to_the_63_is_a_weights_error(tmp_path):
    path = write_pth(tmp_path / "dim.pth", pickle_of(p_dict((p_str("w"), p_tensor(size=(2**63,), stride=(1,))))))
    assert_refused(path, "pickle integer takes 9 bytes")


def test_compressed_members_are_refused(tmp_path):
    """A deflated data.pkl of 64 MB of opcodes (about 60 kB on disk): torch never compresses."""
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", PROTO2 + (b"N0" * (32 * 2**20)) + EMPTY_DICT + STOP)
    assert path.stat().st_size < 200_000
    assert_refused(path, "is compressed (method 8)", "stored")


def test_data_pkl_size_is_capped(tmp_path):
    data_pkl = PROTO2 + b"N0" * (3 * 2**19) + EMPTY_DICT + STOP
    path = write_pth(tmp_path / "long.pth", data_pkl)
    assert_refused(path, f"'archive/data.pkl' holds {len(data_pkl)} bytes, more than the 2097152")


def test_many_containers_are_refused(tmp_path):
    """One-byte EMPTY_DICT opcodes would cost 64 bytes each; their count is capped."""
    path = write_pth(tmp_path / "dicts.pth", PROTO2 + EMPTY_DICT * 1_500_000 + STOP)
    assert_refused(path, "builds more than 100000 tuples, lists and dicts")


def _zip_with_members(path, names):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_of(p_dict()))
        for name in names:
            archive.writestr(zipfile.ZipInfo(name), b"")
    return path


def test_duplicate_member_check_is_linear(tmp_path):
    """60,000 copies of one name (5.6 MB): a names.count() loop took 135 s; a Counter takes 1 s."""
    with pytest.warns(UserWarning):
        path = _zip_with_members(tmp_path / "dups.pth", ["archive/x"] * 60_000)
    assert_refused(path, "duplicate members ['archive/x']")


def test_member_count_is_capped(tmp_path):
    path = _zip_with_members(tmp_path / "many.pth", [f"archive/m{i}" for i in range(70_000)])
    assert_refused(path, "has 70001 members, more than the 65535")


def _bare_directory_zip(path, entries: int):
    """One empty member "a", then a central directory of ``entries`` 47-byte entries for it.

    zipfile parses the whole directory, a ZipInfo per entry, before any member count can be
    checked."""
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
    entry = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, entries * len(entry), len(local), 0)
    with open(path, "wb") as f:
        f.write(local)
        for _ in range(entries // 100_000):
            f.write(entry * 100_000)
        f.write(entry * (entries % 100_000) + end)
    return path


def test_central_directory_size_is_capped_before_parsing(tmp_path):
    """Without the cap, zipfile parsed all 2 million entries before the member count refused
    the file: 23 s (the child's timeout is 30 s) and about 0.5 GB."""
    path = _bare_directory_zip(tmp_path / "directory.pth", 2_000_000)
    error = assert_refused(path, f"directory is larger than the {limits.MAX_ZIP_DIRECTORY_BYTES:,} bytes")
    assert "truncated or corrupt" not in error  # the file is well-formed, just too big
    assert_refused(
        _bare_directory_zip(tmp_path / "directory.npz", 2_000_000),
        f"directory is larger than the {limits.MAX_ZIP_DIRECTORY_BYTES:,} bytes",
    )


def test_view_budget_counts_only_storages_read(tmp_path):
    """An unreferenced 16 MiB member does not raise the budget for copies of a 4 MiB storage."""
    n = 2**20
    views = [(p_str(f"v{i}"), rebuild(storage_ref(numel=n), i % 2, (n - 1,), (1,))) for i in range(19)]
    path = write_pth(
        tmp_path / "budget.pth",
        pickle_of(p_dict(*views)),
        storages={"0": np.zeros(n, dtype="<f4").tobytes(), "unused": bytes(16 * 2**20)},
    )
    assert_refused(path, "tensors would need more than 71303168 bytes", "4194304 bytes of storages read")


# ----------------------------------------------------------------------------------------------
# safetensors


def _safetensors(path, header: bytes, data: bytes = b"", claimed: int | None = None):
    path.write_bytes(struct.pack("<Q", len(header) if claimed is None else claimed) + header + data)
    return path


@pytest.mark.parametrize(
    "header, message",
    [
        (b'{"w": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}", "nests arrays/objects more than 32 deep"),
        (b'{"w": ' + b'{"a": ' * 200_000 + b"1" + b"}" * 200_001, "nests arrays/objects more than 32 deep"),
        (b'{"w": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}', "dtype tag a list of 1 items"),
        (b'{"w": {"dtype": "F32", "shape": [9223372036854775808], "data_offsets": [0, 8]}}', "does not fit in 63 bits"),
        (b'{"w": {"dtype": "F32", "shape": "22", "data_offsets": [0, 8]}}', "shape must be a list of integers"),
        (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}', "data_offsets must be a list of two integers"),
        (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, "8"]}}', "data_offsets must be a list of two"),
        (b'{"w": [1, 2]}', "header entry must have exactly dtype, shape, data_offsets"),
        (b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 8]}}', "not valid JSON"),
        (b'{"__metadata__": {"a": [1]}}', "__metadata__ must be an object of strings"),
        (b'{"w": {"dtype": "F32", "shape": [0, 9223372036854775808], "data_offsets": [0, 0]}}', "fit in 63 bits"),
    ],
)
def test_safetensors_header_is_type_checked_and_bounded(tmp_path, header, message):
    assert_refused(_safetensors(tmp_path / "h.safetensors", header, b"\x00" * 8), message)


def test_safetensors_header_length_is_capped_before_reading(tmp_path):
    path = _safetensors(tmp_path / "big.safetensors", b"{" + b" " * (5 * 2**20) + b"}")
    assert_refused(path, "header claims 5242882 bytes, more than the 4194304")
    path = _safetensors(tmp_path / "claim.safetensors", b"{}", claimed=100_000_000)
    assert_refused(path, "more than the 4194304")


# ----------------------------------------------------------------------------------------------
# Only regular files, exactly their size


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path):
    fifo = tmp_path / "w.pth"
    os.mkfifo(fifo)
    assert_refused(fifo, "is not a regular file")


def test_an_endless_fifo_is_refused(tmp_path):
    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import os
with open({str(fifo)!r}, "wb") as out:
    out.write(b"\\x10" + bytes(7) + b"{{")
    while True:
        out.write(b" " * 65536)
""",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        assert_refused(fifo, "is not a regular file")
    finally:
        writer.kill()
        writer.wait(timeout=30)


def test_a_device_is_refused():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this system")
    assert_refused("/dev/zero", "is not a regular file")


# ----------------------------------------------------------------------------------------------
# The finite check runs on the values the model will hold


def test_check_finite_sees_the_cast_values():
    from npresnet.errors import WeightsError
    from npresnet.nn import Linear

    layer = Linear(2, 1)
    assert layer.weight.dtype == np.float32
    state = {"weight": np.array([[1e39, 0.0]]), "bias": np.zeros(1)}  # float64: finite until cast
    with pytest.raises(WeightsError, match=r"weight: contains NaN or infinite values \(as float32\)"):
        layer.load_state_dict(state, check_finite=True)
    layer.load_state_dict({"weight": np.array([[3e38, -1.0]]), "bias": np.zeros(1)}, check_finite=True)
    np.testing.assert_array_equal(layer.weight, np.array([[3e38, -1.0]], dtype=np.float32))


def test_sandbox_reports_a_real_crash(tmp_path):
    """The harness itself: a child that dies from the address-space limit is a failure, not a pass."""
    root = str(Path(npresnet.__file__).resolve().parent.parent)
    code = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30)); b = bytearray(2**31)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=root),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode != 0 and "MemoryError" in done.stderr
