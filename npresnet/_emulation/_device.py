"""The emulated ``cupy.cuda``: the one device, its memory pool, the runtime queries and the cuBLAS handle.

``Device().synchronize()`` is a host synchronisation (counted); ``runtime.memGetInfo()`` reports
:data:`DEVICE_TOTAL_BYTES`, all of it free, and the memory pool holds nothing, so
:mod:`npresnet.workspace` sizes its CuPy workspace from the whole device. ``cublas`` is
:mod:`._cublas`, the GEMMs npresnet calls on raw addresses.
"""

from __future__ import annotations

import types
from typing import Literal

from . import _cublas
from ._counters import record

__all__ = ["DEVICE_TOTAL_BYTES", "Device", "MemoryPool", "cuda", "get_default_memory_pool", "is_available"]

DEVICE_TOTAL_BYTES = 80 * 2**30
"""Memory of the emulated device, an 80 GB H100; ``memGetInfo`` reports all of it free."""


class Device:
    """The one emulated device; ``synchronize()`` is a host synchronisation."""

    def __init__(self, device: int | None = None) -> None:
        if device not in (None, 0):
            raise ValueError(f"emulated CuPy has one device (0), got {device!r}")
        self.id = 0

    def synchronize(self) -> None:
        record("sync")

    @property
    def mem_info(self) -> tuple[int, int]:
        return _mem_get_info()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False


class MemoryPool:
    """The memory pool: it holds no cached blocks, so the driver's free memory is all there is."""

    def free_bytes(self) -> int:
        return 0

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


_POOL = MemoryPool()


def get_default_memory_pool() -> MemoryPool:
    return _POOL


def is_available() -> bool:
    return True


def _mem_get_info() -> tuple[int, int]:
    """``(free, total)`` bytes of the emulated device: all of it free."""
    return DEVICE_TOTAL_BYTES, DEVICE_TOTAL_BYTES


def make_module(name: str, doc: str, **members: object) -> types.ModuleType:
    """Return a module object ``name`` holding ``members`` (the emulated namespace and its submodules)."""
    module = types.ModuleType(name, doc)
    module.__dict__.update(members)
    return module


runtime = make_module(
    "cupy.cuda.runtime",
    "Emulated CUDA runtime queries.",
    memGetInfo=_mem_get_info,
    getDeviceCount=lambda: 1,
    getDevice=lambda: 0,
    CUDA_R_32F=_cublas.CUDA_R_32F,
    CUDA_R_64F=_cublas.CUDA_R_64F,
    CUDA_R_16F=_cublas.CUDA_R_16F,
)

cublas = make_module(
    "cupy.cuda.cublas",
    "Emulated cuBLAS: the GEMMs npresnet calls, on raw addresses (see npresnet._emulation._cublas).",
    **{name: getattr(_cublas, name) for name in dir(_cublas) if name.startswith(("CUBLAS_", "gemm", "getP", "setP"))},
)

device = make_module(
    "cupy.cuda.device", "The current device's library handles.", get_cublas_handle=_cublas.get_cublas_handle
)
cuda = make_module("cupy.cuda", "Emulated CUDA device.", Device=Device, runtime=runtime, cublas=cublas, device=device)
