"""Array backends: NumPy on the CPU, CuPy on the GPU.

Every layer in :mod:`npresnet.functional` is written once against an array
namespace ``xp`` taken from its inputs with :func:`get_array_module`, the idiom
CuPy and Chainer use. We chose it over the Array API standard because the
layers need functions the standard does not define (``pad``, ``einsum``,
strided slicing assignment with ``out=`` reductions) while NumPy and CuPy both
provide them under the same names: ``xp`` is simply ``numpy`` or ``cupy``.

CuPy is imported lazily, in one place (:func:`_import_cupy`), so that NumPy-only
machines never pay for it and never see an ImportError.
"""

from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING

import numpy

if TYPE_CHECKING:
    from ._typing import Array

__all__ = [
    "get_array_module",
    "get_backend",
    "available_backends",
    "backend_name",
    "to_backend",
    "to_numpy",
    "cupy_unavailable_reason",
]

BACKENDS = ("numpy", "cupy")


@functools.cache
def _import_cupy():
    """Return the ``cupy`` module when it imports and sees a GPU, else the reason it cannot.

    Returns
    -------
    (module or None, str)
        The module (or None) and a human-readable reason when it is unusable.
    """
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        return None, f"CuPy is not installed ({exc.__class__.__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy is installed but no CUDA device is usable ({exc})"
    if count < 1:
        return None, "CuPy is installed but no CUDA device is present"
    return cupy, ""


def cupy_unavailable_reason() -> str:
    """Why CuPy cannot be used on this machine ('' when it can)."""
    return _import_cupy()[1]


def available_backends() -> list[str]:
    """Names of the backends usable on this machine, NumPy first.

    Returns
    -------
    list of str
        ``["numpy"]`` or ``["numpy", "cupy"]``.
    """
    names = ["numpy"]
    if _import_cupy()[0] is not None:
        names.append("cupy")
    return names


def get_backend(name: str) -> types.ModuleType:
    """Return the array module for a backend name (``"numpy"`` or ``"cupy"``).

    Raises
    ------
    ValueError
        For an unknown name, or ``"cupy"`` on a machine where CuPy cannot run.
    """
    if name == "numpy":
        return numpy
    if name == "cupy":
        cupy, reason = _import_cupy()
        if cupy is None:
            raise ValueError(f"backend 'cupy' is not available: {reason}")
        return cupy
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def _is_cupy_array(array) -> bool:
    # Checked by the type's module so that CuPy is never imported just to ask.
    return type(array).__module__.split(".")[0] == "cupy"


def get_array_module(*arrays: Array) -> types.ModuleType:
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Non-array arguments (None, scalars) are ignored.
    """
    for array in arrays:
        if _is_cupy_array(array):
            return get_backend("cupy")
    return numpy


def backend_name(array: Array) -> str:
    """``"cupy"`` for a CuPy array, ``"numpy"`` for anything else."""
    return "cupy" if _is_cupy_array(array) else "numpy"


def to_numpy(array: Array) -> numpy.ndarray:
    """Return ``array`` as a NumPy array, copying from the GPU if needed."""
    if _is_cupy_array(array):
        return array.get()
    return numpy.asarray(array)


def to_backend(array: Array, backend: str) -> Array:
    """Return ``array`` on ``backend`` (``"numpy"`` or ``"cupy"``), copying only when it must move.

    Parameters
    ----------
    array : array_like
        A NumPy or CuPy array (or anything ``numpy.asarray`` accepts).
    backend : {"numpy", "cupy"}
        The destination.

    Returns
    -------
    array
        On NumPy, ``array`` itself when it already is a NumPy array. On CuPy, a device array
        with the same values and shape in *native byte order*: CuPy arrays have no byte-order
        flag, so a big-endian ``>f2`` host array arrives as ``<f2`` (on a little-endian host)
        and comes back from :func:`to_numpy` that way. The conversion is explicit here, on the
        host, so it never depends on how a CuPy version treats foreign byte orders.
    """
    if backend == "numpy":
        return to_numpy(array)
    xp = get_backend(backend)
    if _is_cupy_array(array):
        return array  # already on the device: no copy
    host = numpy.asarray(array)
    if not host.dtype.isnative:
        host = host.astype(host.dtype.newbyteorder("="))  # same values, native byte order
    return xp.asarray(host)
