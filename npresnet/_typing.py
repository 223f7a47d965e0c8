"""Names for the public API's annotations.

Every module that uses these imports them under ``if TYPE_CHECKING:`` and has
``from __future__ import annotations``, so nothing here is evaluated at run time
and CuPy is never imported for typing. This module imports nothing from npresnet.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, TypeAlias

from numpy.typing import NDArray

__all__ = ["Array", "IntPair", "PathLike", "Shape", "Shaped"]

#: A ``numpy.ndarray`` or a ``cupy.ndarray``. The checker sees NumPy's ``ndarray`` of any dtype:
#: CuPy's ndarray mirrors its interface (shape, dtype, indexing, operators, methods) and ships
#: no type information, so CuPy is neither needed nor imported to type-check.
Array: TypeAlias = NDArray[Any]


class Shaped(Protocol):
    """An array or a :class:`~npresnet.nn.TensorSpec`: what the shape-only checks and functions read."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def ndim(self) -> int: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def size(self) -> int: ...


#: An int for both spatial axes, or a ``(height, width)`` pair, as torch.nn.functional accepts.
IntPair = int | tuple[int, int]

#: A file path: a string or an ``os.PathLike`` (``pathlib.Path``).
PathLike = str | os.PathLike[str]

#: An array shape.
Shape = tuple[int, ...]
