"""Compile a kernel's CUDA source with NVRTC, with no GPU and no driver: the check CI runs.

CuPy's own entry points (``RawModule.compile()``, ``compile_using_nvrtc``) ask the driver
for the device's architecture and fail without one. NVRTC itself needs no device: this
module calls it through CuPy's thin binding, with the options CuPy passes for a
``RawModule`` (its include directories and C++ standard from
``assemble_cupy_compiler_options``, then ``-ftz=true``, ``-arch=sm_XX``,
``--device-as-default-execution-space``). With ``-arch=sm_XX`` NVRTC also runs ptxas, so
resource errors (too much shared memory, too many registers) fail here as they would at
load time.

These are private CuPy APIs (``cupy_backends.cuda.libs.nvrtc``,
``cupy._core.core.assemble_cupy_compiler_options``), read from cupy-cuda13x 14.2, the
version the ``gpu`` extra pins; they are used here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import NpresnetError

__all__ = ["ARCHITECTURES", "KernelCompileError", "Compiled", "compiler_options", "compile_cuda"]

ARCHITECTURES = (80, 90)  # A100 and H100/H200, the GPUs this code targets


class KernelCompileError(NpresnetError, RuntimeError):
    """NVRTC refused a kernel; the message is NVRTC's log (``file(line): error: ...``)."""


@dataclass(frozen=True)
class Compiled:
    """A compiled module: ``cubin`` (ELF bytes), ``lowered`` (name expression → mangled symbol), ``log``."""

    cubin: bytes
    lowered: dict[str, str]
    log: str


def compiler_options(arch: int) -> tuple[str, ...]:
    """Return the NVRTC options CuPy would use to compile a ``RawModule`` for ``sm_{arch}``."""
    from cupy._core.core import assemble_cupy_compiler_options

    options: tuple[str, ...] = assemble_cupy_compiler_options(())
    return options + ("-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space")


def compile_cuda(source: str, name_expressions: tuple[str, ...], arch: int, filename: str = "kernel.cu") -> Compiled:
    """Compile ``source`` to a cubin for ``sm_{arch}``, instantiating each of ``name_expressions``.

    Parameters
    ----------
    source : str
        CUDA C++; errors are reported as ``filename(line)`` with lines counted in ``source``.
    name_expressions : tuple of str
        The kernels to instantiate and look up, e.g. ``("im2col_nhwc<float>",)``.
    arch : int
        Compute capability times ten (80 for sm_80).

    Raises
    ------
    KernelCompileError
        With NVRTC's log, on a syntax, type or resource (ptxas) error.
    """
    from cupy_backends.cuda.libs import nvrtc

    program = nvrtc.createProgram(source, filename, (), ())
    try:
        for name in name_expressions:
            nvrtc.addNameExpression(program, name)
        try:
            nvrtc.compileProgram(program, compiler_options(arch))
        except nvrtc.NVRTCError as e:
            log = nvrtc.getProgramLog(program).strip()
            raise KernelCompileError(f"{filename} for sm_{arch}: {e}\n{log}") from None
        lowered = {name: nvrtc.getLoweredName(program, name) for name in name_expressions}
        return Compiled(nvrtc.getCUBIN(program), lowered, nvrtc.getProgramLog(program))
    finally:
        nvrtc.destroyProgram(program)
