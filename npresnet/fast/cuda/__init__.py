"""CUDA kernels for a GPU-native fused path, each with a NumPy twin that proves its index math.

Modules: :mod:`.im2col` (NHWC column gather for one GEMM per group), :mod:`.epilogue`
(``relu(acc + bias [+ residual])`` in one pass), :mod:`.pool` (NHWC max pool and global
average pool), :mod:`.grid` (a thread grid evaluated with NumPy, for the twins),
:mod:`.nvrtc` (compiles the sources with NVRTC, no GPU needed), :mod:`.launch` (CuPy
``RawModule`` wrappers).

What has been checked where: every source compiles for sm_80 and sm_90 in CI, and each
twin, the same statements as its kernel over every thread of a launch, matches the
reference layers of :mod:`npresnet.functional` with each output written exactly once and
every read in bounds; the tests also compile the same source with g++ for the CPU and
check it against the twins. The kernels have never run on a GPU, and
:class:`npresnet.fast.FusedResNet` does not use them yet.

Importing this package needs only NumPy; compiling needs CuPy (the ``gpu`` extra).
"""

from __future__ import annotations

from typing import NamedTuple

from . import epilogue, im2col, pool

__all__ = ["KernelSource", "SOURCES"]


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
