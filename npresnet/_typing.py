"""Names for the public API's annotations.

Every module that uses these imports them under ``if TYPE_CHECKING:`` and has
``from __future__ import annotations``, so nothing here is evaluated at run time
and CuPy is never imported for typing. This module imports nothing from npresnet.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Array", "IntPair", "PathLike", "Shape"]

#: A ``numpy.ndarray`` or a ``cupy.ndarray`` (Any, so that CuPy is not needed to type-check).
Array = Any

#: An int for both spatial axes, or a ``(height, width)`` pair, as torch.nn.functional accepts.
IntPair = int | tuple[int, int]

#: A file path: a string or an ``os.PathLike`` (``pathlib.Path``).
PathLike = str | os.PathLike[str]

#: An array shape.
Shape = tuple[int, ...]
