"""The limits the Safety page of the documentation promises are the ones the code enforces.

The table in docs/guide/safety.md is compared with :mod:`npresnet.weights.limits`, and each
limit is shown to hold exactly at its boundary: a file at the limit loads, one past it
is refused naming the limit.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from _helpers.pickles import (
    EMPTY_DICT,
    MARK,
    PROTO2,
    STOP,
    write_pth,
)
from npresnet.errors import WeightsError
from npresnet.weights import limits, load_weights

PAGE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "safety.md"


def _safety_section() -> str:
    text = PAGE.read_text(encoding="utf-8")
    assert text.startswith("# Safety: weight files you did not make\n"), "the Safety page moved"
    return text


@pytest.mark.parametrize(
    "row, value",
    [
        ("`data.pkl` inside a `.pth`", f"{limits.MAX_PICKLE_BYTES:,} bytes"),
        ("tuples, lists and dicts one pickle builds", f"{limits.MAX_CONTAINERS:,}"),
        ("pickle memo indices", f"below {limits.MAX_MEMO_ENTRIES:,}"),
        ("nesting (pickle containers and MARKs; safetensors JSON)", f"{limits.MAX_NESTING}"),
        ("integers in a pickle", f"{8 * limits.MAX_INT_BYTES} bits"),
        ("dimensions of one tensor", f"{limits.MAX_DIMENSIONS}"),
        ("zip members (`.pth`, `.npz`)", f"{limits.MAX_ZIP_MEMBERS:,}"),
        ("zip central directory (`.pth`, `.npz`)", f"{limits.MAX_ZIP_DIRECTORY_BYTES:,} bytes"),
        ("safetensors JSON header", f"{limits.MAX_SAFETENSORS_HEADER_BYTES:,} bytes"),
        (
            "tensor data of one file (zip members' declared sizes; a safetensors file)",
            f"{limits.MAX_TENSOR_BYTES:,} bytes",
        ),
    ],
)
def test_readme_quotes_each_limit(row, value):
    match = re.search(rf"^\s*\| {re.escape(row)} \| ([^|]+) \|", _safety_section(), re.MULTILINE)
    assert match, f"the Safety page's table has no row {row!r}"
    assert value in match.group(1), (row, match.group(1), value)


def test_nesting_limit_is_exact(tmp_path):
    at_limit = PROTO2 + MARK * limits.MAX_NESTING + b"1" * limits.MAX_NESTING + EMPTY_DICT + STOP
    assert load_weights(write_pth(tmp_path / "ok.pth", at_limit)) == {}
    past = PROTO2 + MARK * (limits.MAX_NESTING + 1) + STOP
    with pytest.raises(WeightsError, match=f"more than {limits.MAX_NESTING} MARKs"):
        load_weights(write_pth(tmp_path / "deep.pth", past))
    tuples = b"N" + b"\x85" * (limits.MAX_NESTING - 1) + b"0" + EMPTY_DICT + STOP  # 31 TUPLE1: depth 31
    assert load_weights(write_pth(tmp_path / "t.pth", PROTO2 + tuples)) == {}
    deeper = b"N" + b"\x85" * (limits.MAX_NESTING + 1) + STOP
    with pytest.raises(WeightsError, match=f"nests containers more than {limits.MAX_NESTING} deep"):
        load_weights(write_pth(tmp_path / "t2.pth", PROTO2 + deeper))


def test_pickle_size_limit_is_exact(tmp_path):
    padding = limits.MAX_PICKLE_BYTES - len(PROTO2 + EMPTY_DICT + STOP)
    at_limit = PROTO2 + b"N0" * (padding // 2) + b"N" * (padding % 2) + EMPTY_DICT + STOP
    assert len(at_limit) == limits.MAX_PICKLE_BYTES
    assert load_weights(write_pth(tmp_path / "ok.pth", at_limit)) == {}
    with pytest.raises(WeightsError, match=f"more than the {limits.MAX_PICKLE_BYTES}"):
        load_weights(write_pth(tmp_path / "big.pth", PROTO2 + b"N" + at_limit[2:]))


def test_safetensors_header_limit_is_exact(tmp_path):
    for size, ok in ((limits.MAX_SAFETENSORS_HEADER_BYTES, True), (limits.MAX_SAFETENSORS_HEADER_BYTES + 1, False)):
        header = b"{" + b" " * (size - 2) + b"}"
        path = tmp_path / "h.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header)
        if ok:
            assert load_weights(path) == {}
        else:
            with pytest.raises(WeightsError, match=f"more than the {limits.MAX_SAFETENSORS_HEADER_BYTES}"):
                load_weights(path)


def test_tensor_data_limit_is_checked_before_reading(tmp_path, monkeypatch):
    """A safetensors file one byte past a header and the limit is refused from its size; zip members from their
    declared sizes; at the limit both read as usual. (The limit is lowered for the test, so that a regression
    reads kilobytes, not 4 GiB.)"""
    import numpy as np

    from npresnet.weights import _checks, api, save_weights

    save_weights({"w": np.zeros(100, np.float32)}, tmp_path / "w.safetensors")
    size = (tmp_path / "w.safetensors").stat().st_size
    monkeypatch.setattr(api, "MAX_TENSOR_BYTES", size - 8 - limits.MAX_SAFETENSORS_HEADER_BYTES)
    assert load_weights(tmp_path / "w.safetensors")["w"].shape == (100,)
    monkeypatch.setattr(api, "MAX_TENSOR_BYTES", size - 9 - limits.MAX_SAFETENSORS_HEADER_BYTES)
    with pytest.raises(WeightsError, match="bytes of tensor data npresnet reads from one file"):
        load_weights(tmp_path / "w.safetensors")
    save_weights({"w": np.zeros(100, np.float32)}, tmp_path / "w.npz")
    with open(tmp_path / "w.npz", "rb") as file:
        size = sum(info.file_size for info in _checks.open_zip(file, (tmp_path / "w.npz").stat().st_size).infolist())
    monkeypatch.setattr(_checks, "MAX_TENSOR_BYTES", size)
    assert load_weights(tmp_path / "w.npz")["w"].shape == (100,)
    monkeypatch.setattr(_checks, "MAX_TENSOR_BYTES", size - 1)
    with pytest.raises(WeightsError, match=f"zip members hold {size:,} bytes uncompressed, more than the {size - 1:,}"):
        load_weights(tmp_path / "w.npz")
