"""The emulated ``cupy.RawModule``: a kernel launch runs the kernel's NumPy twin, counted as one launch.

npresnet's CUDA kernels (:mod:`npresnet.fast.cuda`) each have a twin, the same statements
evaluated over every thread of the launch (:mod:`npresnet.fast.cuda.grid`); the twins are
proved against the reference layers by ``tests/fast/cuda/test_kernels.py``. Here a launch
``kernel(grid, block, args)`` checks ``args`` against the kernel's C parameter list, read from
the source, the way the GPU would take them: a pointer parameter needs a C-contiguous device
array of its type, a template parameter's being the name expression's argument in its place
(``bias_residual_relu<__half, float>``: ``T`` is float16, ``A`` float32; a kernel sees only the
address of the first element), an
``int`` a ``numpy.int32`` and a ``long long`` a ``numpy.int64`` (CuPy passes a Python ``int``
as 64 bits, which an ``int`` parameter would misread). Then it runs the twin with
:class:`~npresnet.fast.cuda.grid.Buffer` over each array, so every load and store is
bounds-checked.

Only the sources of :data:`npresnet.fast.cuda.SOURCES` can be "compiled": a kernel without a
twin cannot run here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy

from ._array import ndarray
from ._counters import record_kernel

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..fast.cuda.grid import Buffer

__all__ = ["RawModule"]

_CTYPES = {"float": numpy.float32, "double": numpy.float64, "__half": numpy.float16}
_SCALARS = {"int": numpy.int32, "long long": numpy.int64}


def _template_types(code: str, kernel: str, expression: str) -> dict[str, numpy.dtype[Any]]:
    """Each template parameter of ``kernel`` in ``code`` with its type in ``expression`` (``"k<__half, float>"``)."""
    match = re.search(rf"template\s*<([^>]*)>\s*__global__\s+void\s+{re.escape(kernel)}\s*\(", code)
    names = [] if match is None else [p.split()[-1] for p in match.group(1).split(",")]
    _, _, inside = expression.partition("<")
    arguments = [a.strip() for a in inside.rstrip(">").split(",")] if inside else []
    if len(arguments) != len(names) or any(a not in _CTYPES for a in arguments):
        raise NotImplementedError(f"emulated RawModule: {expression!r} for template parameters {names}")
    return {name: numpy.dtype(_CTYPES[a]) for name, a in zip(names, arguments)}


def _parameters(code: str, kernel: str) -> list[tuple[str, str, bool]]:
    """``(name, type, is_pointer)`` of each parameter of ``__global__ void kernel(...)`` in ``code``."""
    match = re.search(rf"__global__\s+void\s+{re.escape(kernel)}\s*\(([^)]*)\)", code)
    if match is None:
        raise AttributeError(f"emulated RawModule: no kernel {kernel!r} in the source")
    params = []
    for param in match.group(1).split(","):
        words = param.replace("*", " * ").split()
        name = words[-1]
        kind = " ".join(w for w in words[:-1] if w not in ("const", "__restrict__", "*"))
        params.append((name, kind, "*" in words))
    return params


class RawModule:
    """``cupy.RawModule(code=..., name_expressions=...)`` for a source of :data:`npresnet.fast.cuda.SOURCES`."""

    def __init__(
        self,
        code: str | None = None,
        *,
        path: str | None = None,
        options: tuple[str, ...] = (),
        backend: str = "nvrtc",
        translate_cucomplex: bool = False,
        enable_cooperative_groups: bool = False,
        name_expressions: Sequence[str] | None = None,
        jitify: bool | None = None,
    ) -> None:
        from ..fast.cuda import SOURCES

        if code is None or path is not None:
            raise NotImplementedError("emulated RawModule: only code=... is emulated (no cubin or PTX files)")
        if code not in {unit.source for unit in SOURCES}:
            raise NotImplementedError("emulated RawModule: only npresnet.fast.cuda's sources have NumPy twins to run")
        self.code = code
        self.name_expressions = tuple(name_expressions or ())

    def get_function(self, name: str) -> _RawKernel:
        from ..fast.cuda import TWINS

        if name not in self.name_expressions:
            raise KeyError(f"emulated RawModule: {name!r} is not among the name expressions {self.name_expressions}")
        kernel = name.partition("<")[0]
        types = _template_types(self.code, kernel, name)
        return _RawKernel(name, TWINS[kernel], _parameters(self.code, kernel), types)


class _RawKernel:
    """One kernel of a :class:`RawModule`: ``kernel(grid, block, args)`` runs its twin."""

    def __init__(
        self,
        name: str,
        twin: Callable[..., object],
        parameters: list[tuple[str, str, bool]],
        types: dict[str, numpy.dtype[Any]],
    ) -> None:
        self.name, self.twin, self.parameters, self.types = name, twin, parameters, types

    def __call__(
        self, grid: int | tuple[int, ...], block: int | tuple[int, ...], args: Sequence[Any], *, shared_mem: int = 0
    ) -> None:
        from ..fast.cuda.grid import Buffer, Launch

        grid_dim, block_dim = _dim(grid, "grid"), _dim(block, "block")
        if len(args) != len(self.parameters):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.parameters)} parameters")
        values: list[Buffer | int] = []
        for (param, kind, pointer), arg in zip(self.parameters, args):
            where = f"{self.name}: argument {param!r}"
            if pointer:
                if not isinstance(arg, ndarray):
                    raise TypeError(f"{where} is a pointer; got {type(arg).__name__}, expected a device array")
                expected = self.types[kind] if kind in self.types else numpy.dtype(_CTYPES[kind])
                if arg.dtype != expected or not arg.flags.c_contiguous:
                    raise TypeError(
                        f"{where} points to {kind} ({expected}); got a {'' if arg.flags.c_contiguous else 'non-'}"
                        f"contiguous {arg.dtype} array (the kernel sees only the first element's address)"
                    )
                values.append(Buffer(arg._a, count_stores=False))
            else:
                scalar = _SCALARS[kind]
                if type(arg) is not scalar:
                    raise TypeError(
                        f"{where} is declared {kind}; got {type(arg).__name__}, expected {scalar.__name__} "
                        f"(CuPy passes a Python int as 64 bits and a float as a double)"
                    )
                values.append(int(arg))
        record_kernel(self.name)
        self.twin(Launch(grid_dim, block_dim), *values)


def _dim(value: int | tuple[int, ...], what: str) -> int:
    """Return a 1-D launch dimension from CuPy's ``grid``/``block`` argument (an int or a tuple padded with 1s)."""
    dims = value if isinstance(value, tuple) else (value,)
    if not dims or any(d != 1 for d in dims[1:]) or not isinstance(dims[0], int) or dims[0] < 1:
        raise ValueError(f"emulated RawKernel: {what} {value!r}; only 1-D launches are emulated")
    return dims[0]
