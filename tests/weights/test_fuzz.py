"""Fuzz the weight readers: mutated files load correctly or raise WeightsError, nothing else.

Each format gets a tiny valid file (three small tensors: float32, int64 scalar,
float16), and hypothesis applies byte flips, truncations, splices (bytes copied
from elsewhere in the file) and insertions. 400 examples per format (1,200 in
all) run in CI in about 10 s. Any other exception type, or a result that is not
a state dict, fails the test; for the zip formats, whose members carry CRC-32
checksums, every array a file still yields must be one of the originals, bit for bit.

Byte mutations of a ``.pth`` mostly end at the zip's CRC-32, before the unpickler
sees anything. So the pickle is also mutated *as a pickle*: its opcodes (found with
``pickletools.genops``) are spliced elsewhere, repeated, deleted, swapped, or have
their integer argument replaced, or a run of them is replaced by a memo ``BINGET`` (an
earlier object where another belongs), and the result is zipped again with a valid CRC.
Every outcome must be ``WeightsError`` or fresh arrays whose values all come from
the storage of the same dtype.
"""

from __future__ import annotations

import io
import itertools
import pickletools
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npresnet.errors import WeightsError
from npresnet.weights import load_weights, save_weights

EXAMPLES_PER_FORMAT = 400
STRUCTURE_EXAMPLES = 300

STATE = {
    "conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    "bn.num_batches_tracked": np.array(5, dtype=np.int64),
    "bn.bias": np.array([1.5, -2.0, 0.25], dtype=np.float16),
}


def _valid_file(directory, fmt: str) -> bytes:
    path = directory / f"valid.{fmt}"
    if fmt == "pth":
        torch = pytest.importorskip("torch")
        torch.save({k: torch.from_numpy(v.copy()) for k, v in STATE.items()}, path)
    else:
        save_weights(STATE, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def mutations(size: int):
    position = st.integers(0, size - 1)
    return st.lists(
        st.one_of(
            st.tuples(st.just("flip"), position, st.integers(1, 255)),
            st.tuples(st.just("truncate"), position),
            st.tuples(st.just("splice"), position, position, st.integers(1, 32)),
            st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=8)),
        ),
        min_size=1,
        max_size=3,
    )


def apply(data: bytes, steps) -> bytes:
    buffer = bytearray(data)
    for step in steps:
        kind, at = step[0], step[1] % max(len(buffer), 1)
        if kind == "flip" and buffer:
            buffer[at] ^= step[2]
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "splice":
            source = step[2] % max(len(buffer), 1)
            buffer[at : at + step[3]] = buffer[source : source + step[3]]
        elif kind == "insert":
            buffer[at:at] = step[2]
    return bytes(buffer)


def _check_outcome(path, original_size: int, must_equal_original: bool):
    try:
        result = load_weights(path)
    except WeightsError:
        return
    assert isinstance(result, dict)
    for name, array in result.items():
        assert isinstance(name, str)
        assert isinstance(array, np.ndarray) and array.dtype.kind in "biufc"
        assert array.nbytes <= 8 * original_size  # no inflation from a tiny file
    if must_equal_original:  # a corrupt directory may still name a subset of the members
        for name, array in result.items():
            assert name in STATE
            assert array.dtype == STATE[name].dtype and array.tobytes() == STATE[name].tobytes()


@pytest.mark.parametrize("fmt", ["pth", "npz", "safetensors"])
def test_mutated_files_load_or_raise_weights_error(workdir, fmt):
    valid = _valid_file(workdir, fmt)
    assert load_weights(workdir / f"valid.{fmt}").keys() == STATE.keys()
    path = workdir / f"mutant.{fmt}"

    @settings(
        max_examples=EXAMPLES_PER_FORMAT, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(steps=mutations(len(valid)))
    def check(steps):
        path.write_bytes(apply(valid, steps))
        _check_outcome(path, len(valid), must_equal_original=fmt != "safetensors")

    check()


# ----------------------------------------------------------------------------------------------
# Mutations of the pickle's structure: whole opcodes, not bytes


def _opcodes(data_pkl: bytes) -> list[bytes]:
    """The pickle cut into its opcodes, each with its argument bytes."""
    starts = [position for _, _, position in pickletools.genops(data_pkl)] + [len(data_pkl)]
    return [data_pkl[a:b] for a, b in itertools.pairwise(starts)]


INTEGERS = st.sampled_from([0, 1, 2, 3, 5, 6, 7, 63, 64, 255, 2**31 - 1, -1, -(2**31)])


def structure_mutations(count: int):
    index = st.integers(0, count - 1)
    span = st.integers(1, 8)
    return st.lists(
        st.one_of(
            st.tuples(st.just("splice"), index, span, index),  # copy ops[i:i+n] before ops[j]
            st.tuples(st.just("repeat"), index, span, st.integers(2, 40)),
            st.tuples(st.just("delete"), index, span),
            st.tuples(st.just("swap"), index, index),
            st.tuples(st.just("integer"), index, INTEGERS),  # next integer opcode from i gets a new value
            st.tuples(st.just("get"), index, span, st.integers(0, 40)),  # ops[i:i+n] become one memo GET
        ),
        min_size=1,
        max_size=4,
    )


def apply_to_opcodes(ops: list[bytes], steps) -> bytes:
    ops = list(ops)
    for step in steps:
        kind, i = step[0], step[1] % max(len(ops), 1)
        if kind == "splice":
            ops[step[3] % max(len(ops), 1) : 0] = ops[i : i + step[2]]
        elif kind == "repeat":
            ops[i : i + step[2]] = ops[i : i + step[2]] * step[3]
        elif kind == "delete":
            del ops[i : i + step[2]]
        elif kind == "swap" and ops:
            j = step[2] % len(ops)
            ops[i], ops[j] = ops[j], ops[i]
        elif kind == "integer":
            for k in range(i, len(ops)):
                if ops[k][:1] in (b"K", b"M", b"J", b"\x8a"):  # BININT1, BININT2, BININT, LONG1
                    ops[k] = b"J" + struct.pack("<i", step[2])
                    break
        elif kind == "get":  # e.g. a storage's persistent id replaced by an earlier tensor
            ops[i : i + step[2]] = [b"h" + bytes([step[3]])]
    return b"".join(ops)


def _rezip(valid: bytes, data_pkl: bytes) -> bytes:
    """The checkpoint ``valid`` with its data.pkl replaced, stored with a correct CRC, as torch writes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(valid)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else source.read(info)
            target.writestr(info.filename, data)
    return out.getvalue()


def test_pickle_structure_mutations_load_or_raise_weights_error(workdir):
    valid = _valid_file(workdir, "pth")
    with zipfile.ZipFile(io.BytesIO(valid)) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        ops = _opcodes(archive.read(name))
    assert load_weights(workdir / "valid.pth").keys() == STATE.keys()
    assert load_weights_bytes(workdir, _rezip(valid, b"".join(ops))).keys() == STATE.keys()
    values_by_dtype = {array.dtype: set(array.ravel().tolist()) for array in STATE.values()}

    @settings(
        max_examples=STRUCTURE_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(steps=structure_mutations(len(ops)))
    def check(steps):
        try:
            result = load_weights_bytes(workdir, _rezip(valid, apply_to_opcodes(ops, steps)))
        except WeightsError:
            return
        assert isinstance(result, dict)
        for name, array in result.items():
            assert isinstance(name, str) and type(array) is np.ndarray
            assert array.flags.owndata and array.flags.writeable and array.flags.c_contiguous
            assert array.dtype.isnative and array.dtype in values_by_dtype
            assert array.nbytes <= 8 * len(valid)
            # every value was read from the one storage of this dtype, never from elsewhere
            assert set(array.ravel().tolist()) <= values_by_dtype[array.dtype], name

    check()


def load_weights_bytes(directory, data: bytes):
    path = directory / "structure_mutant.pth"
    path.write_bytes(data)
    return load_weights(path)
