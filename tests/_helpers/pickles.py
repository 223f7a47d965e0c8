"""Weight files built by hand: pickles opcode by opcode (names as in ``pickletools``), and ``.pth`` zips.

Shared by the weights tests (hostile files, attacks, views, limits). The builders are checked
against PyTorch itself in ``tests/weights/test_hostile.py::test_hand_made_checkpoint_is_valid_for_torch_too``.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np

# Protocol-2 opcodes.
PROTO2 = b"\x80\x02"
MARK, TUPLE, REDUCE, STOP, EMPTY_DICT, SETITEMS, NEWFALSE = b"(", b"t", b"R", b".", b"}", b"u", b"\x89"
BINPERSID, BUILD, EMPTY_TUPLE, NONE = b"Q", b"b", b")", b"N"
TUPLE1, TUPLE2, DUP, POP, EMPTY_LIST, APPEND, SETITEM = b"\x85", b"\x86", b"2", b"0", b"]", b"a", b"s"


def p_str(text: str) -> bytes:  # BINUNICODE
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def p_int(n: int) -> bytes:  # LONG1 handles any size and sign
    data = n.to_bytes((n.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def p_tuple(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def p_global(module: str, name: str) -> bytes:  # GLOBAL
    return b"c" + f"{module}\n{name}\n".encode()


def p_call(function: bytes, *args: bytes) -> bytes:
    return function + p_tuple(*args) + REDUCE


def p_tensor(key="0", numel=6, offset=0, size=(2, 3), stride=(3, 1), storage="FloatStorage") -> bytes:
    """``_rebuild_tensor_v2(("storage", torch.<storage>, key, "cpu", numel), offset, size, stride, False,
    OrderedDict())``."""
    pid = p_tuple(p_str("storage"), p_global("torch", storage), p_str(key), p_str("cpu"), p_int(numel)) + BINPERSID
    return p_call(
        p_global("torch._utils", "_rebuild_tensor_v2"),
        pid,
        p_int(offset),
        p_tuple(*map(p_int, size)),
        p_tuple(*map(p_int, stride)),
        NEWFALSE,
        p_call(p_global("collections", "OrderedDict")),
    )


def p_dict(*pairs: tuple[bytes, bytes]) -> bytes:
    return EMPTY_DICT + MARK + b"".join(k + v for k, v in pairs) + SETITEMS


def pickle_of(body: bytes) -> bytes:
    return PROTO2 + body + STOP


def write_pth(path, data_pkl: bytes, storages=None, byteorder=b"little", extra=()):
    """A zip laid out as torch.save lays it out, with our own data.pkl and storages."""
    storages = {"0": np.arange(6, dtype="<f4").tobytes()} if storages is None else storages
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        if byteorder is not None:
            archive.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", b"3\n")
        for name, data in extra:
            archive.writestr(name, data)
    return path


def binput(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)  # LONG_BINPUT


def binget(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)  # LONG_BINGET


def p_long4(n: int) -> bytes:
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<i", len(data)) + data


def rebuild(storage: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
    """_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()) with any ``storage`` opcodes."""
    return p_call(
        p_global("torch._utils", "_rebuild_tensor_v2"),
        storage,
        p_int(offset),
        p_tuple(*map(p_int, size)),
        p_tuple(*map(p_int, stride)),
        NEWFALSE,
        p_call(p_global("collections", "OrderedDict")),
    )


def storage_ref(key="0", numel=6, storage="FloatStorage") -> bytes:
    return p_tuple(p_str("storage"), p_global("torch", storage), p_str(key), p_str("cpu"), p_int(numel)) + BINPERSID
