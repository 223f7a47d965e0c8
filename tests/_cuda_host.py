"""The kernels' CUDA source compiled for the CPU with g++, so the C translation itself runs in CI.

A small header gives the source what NVCC would: ``__global__``/``__device__`` vanish, the
thread indices are globals, and a launch runs every (block, thread) one after another, which
is exact for kernels without shared memory or ``__syncthreads`` (all of npresnet.fast.cuda's).
Arguments are passed as CUDA's ``cudaLaunchKernel`` takes them: an array of pointers, one to
each argument. The sources' ``#include <cuda_fp16.h>`` finds :data:`CUDA_FP16`, written beside
them: ``__half`` is GCC's ``_Float16`` (IEEE binary16, conversions rounding to nearest even, as
CUDA's), so the float16 instantiations run too.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

HEADER = r"""
#include <cstring>
#include <utility>
#include <type_traits>
#define __global__
#define __device__
struct host_dim3 { unsigned int x, y, z; };
static host_dim3 blockIdx, threadIdx, blockDim, gridDim;
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, sizeof d); return d; }

template <typename... A, std::size_t... I>
void host_call(void (*kernel)(A...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

template <typename... A>
void host_launch(void (*kernel)(A...), unsigned int grid, unsigned int block, void** args)
{
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int b = 0; b < grid; ++b)
        for (unsigned int t = 0; t < block; ++t) {
            blockIdx = {b, 0, 0};
            threadIdx = {t, 0, 0};
            host_call(kernel, args, std::index_sequence_for<A...>{});
        }
}
"""


CUDA_FP16 = r"""
// The host build's stand-in for CUDA's cuda_fp16.h: what the kernels use of it.
#pragma once
#include <cstring>
typedef _Float16 __half;
inline __half __ushort_as_half(unsigned short bits) { __half h; std::memcpy(&h, &bits, sizeof h); return h; }
"""


def gxx_missing() -> str | None:
    """Why the host build cannot run here, or None."""
    return None if shutil.which("g++") else "g++ is not installed"


def build(unit, directory) -> dict:
    """Compile ``unit`` (a :class:`npresnet.fast.cuda.KernelSource`) into a shared library in ``directory``.

    Returns ``{name_expression: launch}`` with ``launch(grid, block, *ctypes_args)``.
    """
    launchers = "".join(
        f'extern "C" void launch_{n}(unsigned int g, unsigned int b, void** a) {{ host_launch(&{e}, g, b, a); }}\n'
        for n, e in enumerate(unit.name_expressions)
    )
    source = directory / unit.filename.replace(".cu", ".cpp")
    source.write_text(HEADER + unit.source + launchers)
    (directory / "cuda_fp16.h").write_text(CUDA_FP16)
    library = directory / unit.filename.replace(".cu", ".so")
    cmd = ["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{directory}"]
    cmd += ["-o", str(library), str(source)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(library))

    def launcher(n):
        def launch(grid, block, *args):
            pointers = (ctypes.c_void_p * len(args))(*(ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in args))
            getattr(lib, f"launch_{n}")(ctypes.c_uint(grid), ctypes.c_uint(block), pointers)

        return launch

    return {e: launcher(n) for n, e in enumerate(unit.name_expressions)}
