"""A shape-only stand-in for an array, so a model can be walked without computing anything.

Calling a model on a :class:`TensorSpec` runs the model's real ``forward`` code, but
every leaf layer answers with the :class:`TensorSpec` of its output instead of
computing it. The summary tool uses this to read each layer's output shape from the
real module graph, at any input size, in milliseconds and without weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


@dataclass(frozen=True, eq=False)
class TensorSpec:
    """Shape and dtype of an array that is never materialised.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy.dtype or str
        Kept for the dtype checks layers make on real arrays.
    tracer : callable, optional
        Called as ``tracer(op, inputs, output)`` for the array operations a
        ``forward`` performs directly on specs (``"add"``, ``"reshape"``), so a tool
        can follow every tensor's lifetime. Leaf layers are seen through forward hooks.
    """

    shape: tuple[int, ...]
    dtype: Any = "float32"  # any dtype-like; a numpy.dtype once constructed
    tracer: Callable[[str, tuple[Any, ...], TensorSpec], object] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Normalise ``shape`` to a tuple of ints and ``dtype`` to a ``numpy.dtype``."""
        import numpy  # dtype bookkeeping only; specs never hold data

        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", numpy.dtype(self.dtype))

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes an array of this shape and dtype would take."""
        return self.size * int(self.dtype.itemsize)

    def like(self, shape: Iterable[int]) -> TensorSpec:
        """Return a new spec with ``shape``, the same dtype and tracer."""
        return TensorSpec(tuple(shape), self.dtype, self.tracer)

    def _trace(self, op: str, inputs: tuple[Any, ...], output: TensorSpec) -> TensorSpec:
        if self.tracer is not None:
            self.tracer(op, inputs, output)
        return output

    def __add__(self, other: object) -> TensorSpec:
        """Return the spec of ``self + other``: same shape (another spec must match it)."""
        if isinstance(other, TensorSpec) and other.shape != self.shape:
            raise ValueError(f"cannot add arrays of shapes {self.shape} and {other.shape}")
        return self._trace("add", (self, other), self.like(self.shape))

    __radd__ = __add__

    def __iadd__(self, other: object) -> TensorSpec:
        """Return the spec of ``self += other``: ``self`` itself."""
        # An in-place add writes into self's buffer: report it as an add whose output is self.
        if isinstance(other, TensorSpec) and other.shape != self.shape:
            raise ValueError(f"cannot add arrays of shapes {self.shape} and {other.shape}")
        return self._trace("iadd", (self, other), self)

    def reshape(self, *shape: int | tuple[int, ...] | list[int]) -> TensorSpec:
        """Return the spec of ``reshape(*shape)``: ints, or one tuple; one ``-1`` is inferred."""
        dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        ints = cast("tuple[int, ...]", dims)  # as torch's reshape takes them: ints, or one tuple of ints
        known = math.prod(s for s in ints if s != -1)
        if -1 in ints:
            ints = tuple(self.size // known if s == -1 else s for s in ints)
        if math.prod(ints) != self.size:
            raise ValueError(f"cannot reshape {self.shape} into {ints}")
        return self._trace("reshape", (self,), self.like(ints))
