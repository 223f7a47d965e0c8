"""Fuzz the weight readers: mutated files load correctly or raise WeightsError, nothing else.

Each format gets a tiny valid file (three small tensors: float32, int64 scalar,
float16), and hypothesis applies byte flips, truncations, splices (bytes copied
from elsewhere in the file) and insertions. 400 examples per format (1,200 in
all) run in CI in about 10 s. Any other exception type, or a result that is not
a state dict, fails the test; for the zip formats, whose members carry CRC-32
checksums, every array a file still yields must be one of the originals, bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npresnet.errors import WeightsError
from npresnet.weights import load_weights, save_weights

EXAMPLES_PER_FORMAT = 400

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
    return st.lists(st.one_of(
        st.tuples(st.just("flip"), position, st.integers(1, 255)),
        st.tuples(st.just("truncate"), position),
        st.tuples(st.just("splice"), position, position, st.integers(1, 32)),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=8)),
    ), min_size=1, max_size=3)


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
            buffer[at: at + step[3]] = buffer[source: source + step[3]]
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

    @settings(max_examples=EXAMPLES_PER_FORMAT, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(steps=mutations(len(valid)))
    def check(steps):
        path.write_bytes(apply(valid, steps))
        _check_outcome(path, len(valid), must_equal_original=fmt != "safetensors")

    check()
