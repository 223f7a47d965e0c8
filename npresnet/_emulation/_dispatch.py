"""How Python's operators and NumPy's calls on a device array reach the emulated ``cupy`` namespace.

As in CuPy (``cupy/_core/core.pyx``): an operator (``x + y``, ``-x``, ``x < y``) calls the NumPy
ufunc of its name, which hands the call to the array's ``__array_ufunc__``; that runs the
namespace's function of the same name (an emulated ufunc, or ``matmul``). ``__array_function__``
runs a NumPy function (``numpy.concatenate(...)``) as the namespace's function at the same
module path and name, and declines (NumPy then raises TypeError) where CuPy has none. An
in-place operator (``x += y``) calls the namespace's ufunc with ``out=x``.

This module holds the namespace's registration (``._namespace`` registers the module it
builds) and the functions the array class installs as its operators and protocol methods;
it imports nothing of the array class, which imports it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

import numpy

if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Collection, Mapping, Sequence

__all__ = ["NAMESPACE", "namespace", "unary_operator", "binary_operator", "operators", "array_ufunc", "array_function"]

NAMESPACE: list[types.ModuleType] = []  # the emulated ``cupy`` module, registered by ._namespace when it is built

_PY_SCALARS = (bool, int, float, complex)

DeviceArray = TypeVar("DeviceArray")
"""The emulated ``ndarray``: an operator on one gives another."""


def namespace() -> types.ModuleType:
    """Return the emulated ``cupy`` module (``._namespace`` builds it on the array class, then registers it here)."""
    return NAMESPACE[0]


def unary_operator(name: str, ufunc_name: str) -> Callable[[DeviceArray], DeviceArray]:
    """Make the operator ``name`` (``__neg__``) that calls the NumPy ufunc ``ufunc_name`` on the array."""

    def op(self: DeviceArray) -> DeviceArray:
        result: DeviceArray = getattr(numpy, ufunc_name)(self)  # through __array_ufunc__ to the emulated ufunc
        return result

    op.__name__ = name
    return op


def binary_operator(
    name: str, ufunc_name: str, reflected: bool = False
) -> Callable[[DeviceArray, object], DeviceArray]:
    """Make the operator ``name`` (``__add__``, or reflected ``__radd__``) that calls the NumPy ufunc ``ufunc_name``."""

    def op(self: DeviceArray, other: object) -> DeviceArray:
        ufunc = getattr(numpy, ufunc_name)  # dispatches to the emulated ufunc through __array_ufunc__, as CuPy
        result: DeviceArray = ufunc(other, self) if reflected else ufunc(self, other)
        return result

    op.__name__ = name
    return op


def _inplace_operator(name: str, ufunc_name: str) -> Callable[[DeviceArray, object], DeviceArray]:
    def op(self: DeviceArray, other: object) -> DeviceArray:
        result: DeviceArray = getattr(namespace(), ufunc_name)(self, other, out=self)
        return result

    op.__name__ = name
    return op


def operators(
    name: str, ufunc_name: str
) -> tuple[
    Callable[[DeviceArray, object], DeviceArray],
    Callable[[DeviceArray, object], DeviceArray],
    Callable[[DeviceArray, object], DeviceArray],
]:
    """Return ``__name__``, ``__rname__`` and ``__iname__`` through the ufunc ``ufunc_name`` (``"add"``)."""
    return (
        binary_operator(f"__{name}__", ufunc_name),
        binary_operator(f"__r{name}__", ufunc_name, reflected=True),
        _inplace_operator(f"__i{name}__", ufunc_name),
    )


# NumPy's protocols: ``Any``, as NumPy's own, since they pass any arguments through to any function.
def array_ufunc(self: object, ufunc: numpy.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
    """``ndarray.__array_ufunc__``: run the namespace's ufunc of ``ufunc``'s name, or decline (NotImplemented)."""
    cupy = namespace()
    if "out" in kwargs:
        out = kwargs["out"]
        if len(out) != 1:
            raise ValueError("The 'out' parameter must have exactly one array value")
        kwargs["out"] = out[0]
        inout = inputs + out
    else:
        inout = inputs
    if method not in ("__call__", "outer", "at", "reduce", "accumulate", "reduceat"):
        return NotImplemented
    try:  # the namespace's function of the same name (a ufunc, or matmul), as CuPy looks it up
        func = getattr(cupy, ufunc.__name__)
        if method != "__call__":
            func = getattr(func, method)
    except AttributeError:
        return NotImplemented
    for x in inout:  # type(self): the device array class
        if not (isinstance(x, (type(self), numpy.ndarray, numpy.generic)) or isinstance(x, _PY_SCALARS)):
            return NotImplemented
    return func(*inputs, **kwargs)


def array_function(
    self: object, func: Callable[..., Any], types: Collection[type], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Any:
    """``ndarray.__array_function__``: run the namespace's function at ``func``'s module path and name, or decline."""
    cupy = namespace()
    try:
        module = functools.reduce(getattr, func.__module__.split(".")[1:], cupy)
        emulated = getattr(module, func.__name__)
    except AttributeError:
        return NotImplemented
    if emulated is func or not all(issubclass(t, (type(self), numpy.ndarray)) for t in types):
        return NotImplemented
    return emulated(*args, **kwargs)
