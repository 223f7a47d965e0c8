"""What the emulated device did: kernel launches by kind, host synchronisations, transfers.

Counting is scoped: :func:`count` opens a region and returns a :class:`Counts` that every
emulated operation inside the region adds to (nested regions all count). Nothing is
counted outside a region, and the regions live in a :class:`contextvars.ContextVar`, so
threads and tasks each see only their own.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Counts", "count", "allow_float64", "LAUNCH_KINDS", "EVENT_KINDS"]

LAUNCH_KINDS = ("elementwise", "reduction", "copy", "fill", "gemm", "gather", "scatter", "kernel")
"""What counts as one kernel launch: an elementwise operation (ufunc, operator, ``where``), a
reduction (``sum``, ``max``, ...), a copy (``astype``, ``copy``, assignment into a slice, a
reshape that cannot be a view), a fill (``zeros``, ``full``, assigning a scalar), a matrix
product (``matmul``, a cuBLAS call), a gather (advanced indexing), a scatter (``bincount``,
``add.at``, assignment through an index array) or a ``RawKernel`` launch."""

EVENT_KINDS = ("sync", "h2d", "d2h")
"""Host synchronisations (the host waits for the device: ``item``, ``float``, ``bool``,
``tolist``, ``get``, ``Device().synchronize()``) and host-to-device / device-to-host transfers."""

_regions: contextvars.ContextVar[tuple[Counts, ...]] = contextvars.ContextVar("npresnet_emulation_regions", default=())
_float64_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar("npresnet_emulation_float64", default=False)


@dataclasses.dataclass
class Counts:
    """Counters of one region; ``by_kind`` maps each of :data:`LAUNCH_KINDS` and :data:`EVENT_KINDS` to a count."""

    by_kind: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    gemm_types: collections.Counter[tuple[str, str, str]] = dataclasses.field(default_factory=collections.Counter)
    """cuBLAS products by ``(A/B data type, C data type, compute type)`` names, e.g.
    ``("CUDA_R_32F", "CUDA_R_32F", "CUBLAS_COMPUTE_32F")``."""
    kernels: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """``RawKernel`` launches by name expression (``"im2col_nhwc<float>"``)."""

    @property
    def launches(self) -> int:
        """Kernel launches of every kind."""
        return sum(self.by_kind[k] for k in LAUNCH_KINDS)

    @property
    def syncs(self) -> int:
        """Host synchronisations."""
        return self.by_kind["sync"]

    @property
    def transfers(self) -> int:
        """Host-to-device plus device-to-host copies."""
        return self.by_kind["h2d"] + self.by_kind["d2h"]

    def __getitem__(self, kind: str) -> int:
        return self.by_kind[kind]


def record(kind: str) -> None:
    """Add one ``kind`` event to every open region."""
    for counts in _regions.get():
        counts.by_kind[kind] += 1


def record_gemm_type(ab: str, c: str, compute: str) -> None:
    """Note one cuBLAS product's data and compute types in every open region."""
    for counts in _regions.get():
        counts.gemm_types[ab, c, compute] += 1


def record_kernel(name: str) -> None:
    """Count one ``RawKernel`` launch, by name expression, in every open region."""
    record("kernel")
    for counts in _regions.get():
        counts.kernels[name] += 1


@contextlib.contextmanager
def count() -> Iterator[Counts]:
    """Count what the emulated device does inside the ``with`` block.

    >>> from npresnet._emulation import cupy, count
    >>> with count() as c:
    ...     y = cupy.zeros(3) + 1.0
    >>> c.launches, c["fill"], c["elementwise"], c.syncs
    (2, 1, 1, 0)
    """
    counts = Counts()
    token = _regions.set(_regions.get() + (counts,))
    try:
        yield counts
    finally:
        _regions.reset(token)


@contextlib.contextmanager
def allow_float64() -> Iterator[None]:
    """Allow float64 results from narrower floats inside the block.

    Inside it, such an operation does not raise :class:`npresnet._emulation.Float64PromotionError`
    (the check is on everywhere else).
    """
    token = _float64_allowed.set(True)
    try:
        yield
    finally:
        _float64_allowed.reset(token)


def float64_allowed() -> bool:
    return _float64_allowed.get()
