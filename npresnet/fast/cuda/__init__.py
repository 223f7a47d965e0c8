"""CUDA kernels for a GPU-native fused path, each with a NumPy twin that proves its index math.

Modules: :mod:`.im2col` (NHWC column gather for one GEMM per group), :mod:`.epilogue`
(``relu(acc + bias [+ residual])`` in one pass), :mod:`.pool` (NHWC max pool and global
average pool), :mod:`.grid` (a thread grid evaluated with NumPy, for the twins),
:mod:`.nvrtc` (compiles the sources with NVRTC, no GPU needed), :mod:`.launch` (CuPy
``RawModule`` wrappers), :mod:`.gemm` (one cuBLAS call per convolution, with an explicit
compute type).

What has been checked where: every source compiles for sm_80 and sm_90 in CI, and each
twin, the same statements as its kernel over every thread of a launch, matches the
reference layers of :mod:`npresnet.functional` with each output written exactly once and
every read in bounds; the tests also compile the same source with g++ for the CPU and
check it against the twins. :class:`npresnet.fast.FusedResNet` uses them on a CuPy backend
(:mod:`npresnet.fast.device`); on the emulated CuPy (:mod:`npresnet._emulation`) each launch
runs the kernel's twin (:data:`TWINS`), so the whole GPU-native forward runs in CI. The
kernels have never run on a GPU.

Importing this package needs only NumPy; compiling needs CuPy (the ``gpu`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from . import epilogue, im2col, pool

__all__ = ["KernelSource", "SOURCES", "TWINS"]


class KernelSource(NamedTuple):
    """One CUDA translation unit: a ``filename`` for messages, its ``source``, the templates it instantiates."""

    filename: str
    source: str
    name_expressions: tuple[str, ...]


SOURCES = (
    KernelSource("im2col.cu", im2col.SOURCE, im2col.NAME_EXPRESSIONS),
    KernelSource("epilogue.cu", epilogue.SOURCE, epilogue.NAME_EXPRESSIONS),
    KernelSource("pool.cu", pool.SOURCE, pool.NAME_EXPRESSIONS),
)

TWINS: dict[str, Callable[..., None]] = {
    "im2col_nhwc": im2col.im2col_nhwc,
    "bias_residual_relu": epilogue.bias_residual_relu,
    "max_pool_nhwc": pool.max_pool_nhwc,
    "global_avg_pool_nhwc": pool.global_avg_pool_nhwc,
}
"""Each kernel's NumPy twin by kernel name: ``twin(launch, *args)`` with the kernel's arguments,
pointers as :class:`.grid.Buffer`."""
