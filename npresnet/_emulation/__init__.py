"""An emulated CuPy for tests: CuPy's rules, NumPy's arithmetic. Test infrastructure, not a backend for users.

The CuPy half of npresnet cannot run without a GPU, so this package stands in for
``cupy`` on any machine: arrays live "on a device" (:class:`ndarray`, wrapping a NumPy
array), functions take CuPy's arguments (:data:`cupy`, a module object named ``"cupy"``),
and the mistakes that only show on a GPU fail here too:

- implicit conversion to the host (``numpy.asarray(x)``) raises TypeError, as CuPy;
- ``float(x)``, ``bool(x)``, ``x.item()``, ``x.tolist()``, ``x.get()`` work but are counted as
  host synchronisations;
- a host array mixed into a device operation raises TypeError;
- a NumPy function CuPy does not implement, applied to a device array, raises TypeError;
- float64 produced from narrower floats without an explicit dtype raises
  :class:`Float64PromotionError` (inside :func:`allow_float64` it does not).

:func:`count` measures a region: kernel launches by kind (each array-producing call,
copy, fill, GEMM; views are free), host synchronisations and transfers.

Select it explicitly: ``npresnet.backend.get_backend("cupy-emulated")``, or
``npresnet.to_backend(x, "cupy-emulated")``. Values are computed by NumPy in the same
order as on the NumPy backend, so results are checked against the same oracles; what the
emulation cannot show is CuPy's own numerics (its reduction order, cuBLAS's GEMM).

>>> import numpy as np
>>> from npresnet._emulation import cupy, count
>>> x = cupy.asarray(np.arange(4.0, dtype=np.float32))
>>> np.asarray(x)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
TypeError: Implicit conversion to a NumPy array is not allowed. ...
>>> with count() as c:
...     total = float((x * 2).sum())
>>> total, c.launches, c.syncs
(12.0, 2, 1)
"""

from ._array import ndarray
from ._counters import EVENT_KINDS, LAUNCH_KINDS, Counts, allow_float64, count
from ._device import DEVICE_TOTAL_BYTES
from ._namespace import cupy
from ._precision import Float64PromotionError

__all__ = [
    "cupy",
    "ndarray",
    "count",
    "Counts",
    "allow_float64",
    "Float64PromotionError",
    "LAUNCH_KINDS",
    "EVENT_KINDS",
    "DEVICE_TOTAL_BYTES",
]
