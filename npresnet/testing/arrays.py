"""Reading the outputs of any array library on the host, without importing that library.

The kit compares in float64 NumPy. It reads NumPy, CuPy, torch (any device, bfloat16 included),
JAX, and anything with ``.numpy()``, ``__array__`` or ``__dlpack__``; anything else is an
AssertionError that names the type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from ..backend import backend_name, to_numpy

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["dtype_name", "to_host"]


def dtype_name(array: object) -> str:
    """``"float32"``, ``"bfloat16"``, ``"int64"``, ... for a NumPy, CuPy, torch, JAX or similar array."""
    __tracebackhide__ = True
    dtype = getattr(array, "dtype", None)
    if dtype is None:
        return f"<no dtype: {type(array).__name__}>"
    try:
        name: str = numpy.dtype(dtype).name  # NumPy, CuPy, JAX (ml_dtypes' bfloat16 too)
        return name
    except TypeError:
        text = str(dtype)  # torch.float32, dtypes.float (tinygrad), ...
        text = text.rsplit(".", 1)[-1]
        return {"float": "float32", "half": "float16", "double": "float64"}.get(text, text)


def _is_torch(array: object) -> bool:
    return type(array).__module__.split(".")[0] == "torch" and hasattr(array, "detach")


def to_host(array: object, what: str, case: object) -> tuple[NDArray[Any], str]:
    """``(values, dtype name)``: ``array`` copied to a NumPy array (floating values as float64).

    Raises
    ------
    AssertionError
        If ``array`` is not something the kit can read; the message names its type and ``what``.
    """
    __tracebackhide__ = True
    name = dtype_name(array)
    duck: Any = array  # any library's array, read below by what it has (torch, CuPy, JAX, ...)
    host: NDArray[Any]
    try:
        if isinstance(array, numpy.ndarray):
            host = array
        elif _is_torch(array):
            tensor = duck.detach().cpu()
            host = (tensor.double() if tensor.is_floating_point() else tensor).numpy()  # bfloat16 has no NumPy dtype
        elif backend_name(array) != "numpy":  # CuPy, or npresnet's emulated CuPy: an explicit copy to the host
            host = to_numpy(duck)
        elif callable(getattr(array, "numpy", None)):
            host = numpy.asarray(duck.numpy())  # tinygrad, TensorFlow
        elif hasattr(array, "__array__"):
            host = numpy.asarray(duck)  # JAX and other array-likes
        elif hasattr(array, "__dlpack__"):
            host = numpy.from_dlpack(duck)
        else:
            raise TypeError("it has no __array__, __dlpack__ or .numpy()")
        host = numpy.asarray(host)
        if host.dtype.kind not in "biu":
            host = host.astype(numpy.float64)
    except Exception as exc:  # noqa: BLE001 - whatever the library raises, the message says what it was
        raise AssertionError(
            f"{what} is a {type(array).__module__}.{type(array).__qualname__} that the kit cannot read as an "
            f"array ({type(exc).__name__}: {exc}); it reads NumPy, CuPy, torch, JAX and anything with "
            f"__array__, __dlpack__ or .numpy(); case: {case!r}"
        ) from None
    return host, name
