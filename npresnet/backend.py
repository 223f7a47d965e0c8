"""Array backends: NumPy on the CPU, CuPy on the GPU.

Every layer in :mod:`npresnet.functional` is written once against an array
namespace ``xp`` taken from its inputs with :func:`get_array_module`, the idiom
CuPy and Chainer use. We chose it over the Array API standard because the
layers need functions the standard does not define (``pad``, ``einsum``,
strided slicing assignment with ``out=`` reductions) while NumPy and CuPy both
provide them under the same names: ``xp`` is simply ``numpy`` or ``cupy``.

CuPy is imported lazily, in one place (``_import_cupy()``), so that NumPy-only
machines never pay for it and never see an ImportError. CuPy counts as available only
when ``cupy.is_available()`` says a device is usable: CuPy imports on a machine without a
driver, and then nothing may try to use it.

A third backend, ``"cupy-emulated"`` (``npresnet._emulation``), is test infrastructure:
CuPy's rules computed by NumPy, so the CuPy code path runs without a GPU. It is used only
when asked for by name; :func:`available_backends` lists it only with ``emulated=True``.
"""

from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING, Any, cast

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

BACKENDS = ("numpy", "cupy", "cupy-emulated")
EMULATED = "cupy-emulated"
_EMULATED_PACKAGE = "npresnet._emulation"


@functools.cache
def _import_cupy() -> tuple[types.ModuleType | None, str]:
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
        usable = cupy.is_available()  # False, not an exception, when there is no driver or device
    except Exception as exc:
        return None, f"CuPy is installed but no CUDA device is usable ({exc.__class__.__name__}: {exc})"
    if not usable:
        return None, "CuPy is installed but no CUDA device is usable (cupy.is_available() is False)"
    return cast(types.ModuleType, cupy), ""


def cupy_unavailable_reason() -> str:
    """Why CuPy cannot be used on this machine ('' when it can)."""
    return _import_cupy()[1]


def available_backends(emulated: bool = False) -> list[str]:
    """Names of the backends usable on this machine, NumPy first.

    Parameters
    ----------
    emulated : bool
        Also list ``"cupy-emulated"``, the CuPy emulation for tests (usable everywhere).

    Returns
    -------
    list of str
        ``["numpy"]`` or ``["numpy", "cupy"]``, then ``"cupy-emulated"`` if asked for.
    """
    names = ["numpy"]
    if _import_cupy()[0] is not None:
        names.append("cupy")
    if emulated:
        names.append(EMULATED)
    return names


def get_backend(name: str) -> types.ModuleType:
    """Return the array module for a backend name (``"numpy"``, ``"cupy"`` or ``"cupy-emulated"``).

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
    if name == EMULATED:
        from ._emulation import cupy as emulated

        return emulated
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def backend_name(array: object) -> str:
    """``"cupy"`` for a CuPy array, ``"cupy-emulated"`` for an emulated one, ``"numpy"`` for anything else."""
    # Decided by the type's module, so that CuPy (or the emulation) is never imported just to ask.
    module = type(array).__module__
    if module.split(".")[0] == "cupy":
        return "cupy"
    if module.startswith(_EMULATED_PACKAGE):
        return EMULATED
    return "numpy"


def get_array_module(*arrays: object) -> types.ModuleType:
    """Return the array module of the first device array among the arguments, else ``numpy``.

    Non-array arguments (None, scalars) are ignored.
    """
    for array in arrays:
        name = backend_name(array)
        if name != "numpy":
            return get_backend(name)
    return numpy


def to_numpy(array: Array) -> numpy.ndarray:
    """Return ``array`` as a NumPy array, copying from the device if needed."""
    if backend_name(array) != "numpy":
        device: Any = array  # a CuPy (or emulated) array: typed as NumPy's, it has CuPy's .get()
        return cast(numpy.ndarray, device.get())
    return numpy.asarray(array)


def to_backend(array: Array, backend: str) -> Array:
    """Return ``array`` on ``backend``, copying only when it must move.

    Parameters
    ----------
    array : array_like
        A NumPy, CuPy or emulated CuPy array (or anything ``numpy.asarray`` accepts).
    backend : {"numpy", "cupy", "cupy-emulated"}
        The destination.

    Returns
    -------
    array
        On NumPy, ``array`` itself when it already is a NumPy array. On CuPy, a device array
        with the same values and shape in *native byte order*: CuPy arrays have no byte-order
        flag, so a big-endian ``>f2`` host array arrives as ``<f2`` (on a little-endian host)
        and comes back from :func:`to_numpy` that way. The conversion is explicit here, on the
        host, so it never depends on how a CuPy version treats foreign byte orders. Between two
        device backends the array goes through the host.
    """
    if backend == "numpy":
        return to_numpy(array)
    xp = get_backend(backend)
    if backend_name(array) == backend:
        return array  # already on the device: no copy
    host = to_numpy(array)
    if not host.dtype.isnative:
        host = host.astype(host.dtype.newbyteorder("="))  # same values, native byte order
    return cast("Array", xp.asarray(host))
