"""Emulated device memory: poisoned fresh allocations, the addresses ``.data.ptr`` hands out, their allocations.

Freshly allocated memory (``empty``) holds garbage on a GPU: here :func:`poison` fills it with
NaN or the integer maximum, so code that reads memory it has not written fails visibly.

CuPy's ``x.data.ptr`` is the address of ``x``'s first element. The emulation hands out the
NumPy address and remembers the allocation it lies in (weakly: an entry goes when its memory
is freed), so the emulated cuBLAS (:mod:`._cublas`) can find the allocation behind an address
with :func:`resolve_pointer` and refuse one that reaches outside it, as a kernel would fault.
"""

from __future__ import annotations

import weakref

import numpy

__all__ = ["MemoryPointer", "poison", "pointer_to", "resolve_pointer"]


def poison(a: numpy.ndarray) -> numpy.ndarray:
    """Fill freshly allocated ``a`` with values that show reads of unwritten memory: NaN, or the integer maximum."""
    if a.dtype.kind in "fc":
        a.fill(numpy.nan)
    elif a.dtype.kind in "iu":
        a.fill(numpy.iinfo(a.dtype).max)
    return a


class MemoryPointer:
    """An address in emulated device memory (CuPy's ``cupy.cuda.MemoryPointer``, its ``ptr`` only)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: int):
        self.ptr = ptr


_ALLOCATIONS: weakref.WeakValueDictionary[int, numpy.ndarray] = weakref.WeakValueDictionary()
"""The allocations whose addresses have been handed out (``.data``), by base address; an entry
goes when its memory is freed."""


def _allocation(a: numpy.ndarray) -> numpy.ndarray:
    """Return the array that owns ``a``'s memory (following views, ``as_strided``'s included)."""
    while True:
        base, holder_base = a.base, getattr(a.base, "base", None)
        if isinstance(base, numpy.ndarray):
            a = base
        elif isinstance(holder_base, numpy.ndarray):  # as_strided's interface holder
            a = holder_base
        else:
            return a


def resolve_pointer(ptr: int) -> tuple[numpy.ndarray, int]:
    """Return the allocation holding address ``ptr`` (handed out by ``.data``) and ``ptr``'s byte offset in it.

    Raises ValueError for an address in no live allocation, as a kernel reading it would fault.
    """
    for base, root in list(_ALLOCATIONS.items()):
        if base <= ptr < base + max(root.nbytes, 1):
            return root, ptr - base
    raise ValueError(f"emulated device: address {ptr:#x} is in no live device allocation")


def pointer_to(a: numpy.ndarray) -> MemoryPointer:
    """Return the address of ``a``'s first element, its allocation remembered for :func:`resolve_pointer`."""
    root = _allocation(a)
    _ALLOCATIONS[root.ctypes.data] = root
    return MemoryPointer(a.ctypes.data)
