"""The convolution epilogue in one pass: ``out = relu(acc + bias [+ residual])``.

The CUDA source and its NumPy twin below are line-for-line parallel (see :mod:`.grid`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

if TYPE_CHECKING:
    from .grid import Buffer, Launch

__all__ = ["SOURCE", "NAME_EXPRESSIONS", "bias_residual_relu"]

SOURCE = r"""
#include <cuda_fp16.h>  // __half: float16 storage; converting float to __half rounds to nearest even

// Epilogue of a convolution computed as a GEMM, on its (M, O) output, in one pass: computed in
// the arithmetic type A, rounded once to the storage type T.
//
// NumPy definition:
//   v = acc + bias                     # acc (M, O) and bias (O,) in A, bias broadcast over the rows
//   if has_residual: v += residual     # the block's shortcut, (M, O) in T, widened to A
//   if relu: v = numpy.maximum(v, 0)
//   out[...] = v.astype(T)             # the one rounding (none when T is A)
// (T, A): (float, float), (double, double), or (__half, float) for float16 storage with float32
// arithmetic. When T is A, out may be acc itself (in place). Without a residual, pass any valid
// pointer: it is not read. v < 0 ? 0 : v keeps NaN, as numpy.maximum and torch.relu do.
template <typename T, typename A>
__global__ void bias_residual_relu(const A* acc, const A* __restrict__ bias, const T* residual, T* out,
                                   long long M, int O, int has_residual, int relu)
{
    const long long total = M * O;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        A v = acc[idx] + bias[idx % O];
        if (has_residual)
            v += static_cast<A>(residual[idx]);
        if (relu)
            v = v < 0 ? A(0) : v;
        out[idx] = static_cast<T>(v);
    }
}
"""

NAME_EXPRESSIONS = (
    "bias_residual_relu<float, float>",
    "bias_residual_relu<double, double>",
    "bias_residual_relu<__half, float>",
)


def bias_residual_relu(
    launch: Launch,
    acc: Buffer,
    bias: Buffer,
    residual: Buffer,
    out: Buffer,
    M: int,
    O: int,
    has_residual: int,
    relu: int,
) -> None:
    """Run ``bias_residual_relu``'s twin: the kernel's statements, every thread of ``launch`` at once.

    Parameters
    ----------
    launch : :class:`npresnet.fast.cuda.grid.Launch`
    acc, residual, out : :class:`npresnet.fast.cuda.grid.Buffer` over arrays of shape (M, O)
        ``acc`` in the arithmetic type, ``residual`` and ``out`` in the storage type; ``out`` may be
        ``acc`` when the two types are one; ``residual`` is not read unless ``has_residual``.
    bias : :class:`npresnet.fast.cuda.grid.Buffer` over an array of shape (O,), the arithmetic type
    M, O, has_residual, relu : int
    """
    total = M * O
    for idx in launch.grid_stride(total):
        v = acc[idx] + bias[idx % O]
        if has_residual:
            v += residual[idx].astype(v.dtype)
        if relu:
            v = numpy.where(v < 0, v.dtype.type(0), v)
        out[idx] = v.astype(out.flat.dtype)
