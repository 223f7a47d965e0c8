"""The convolution epilogue in one pass: ``out = relu(acc + bias [+ residual])``.

The CUDA source and its NumPy twin below are line-for-line parallel (see :mod:`.grid`).
"""

from __future__ import annotations

import numpy

__all__ = ["SOURCE", "NAME_EXPRESSIONS", "bias_residual_relu"]

SOURCE = r"""
// Epilogue of a convolution computed as a GEMM, on its (M, O) output, in one pass.
//
// NumPy definition:
//   out[...] = acc + bias              # bias, shape (O,), broadcast over the M rows
//   if has_residual: out += residual   # the block's shortcut, shape (M, O)
//   if relu: numpy.maximum(out, 0, out=out)
// out may be acc itself (in place). Without a residual, pass any valid pointer: it is not read.
// v < 0 ? 0 : v keeps NaN, as numpy.maximum and torch.relu do.
template <typename T>
__global__ void bias_residual_relu(const T* acc, const T* __restrict__ bias, const T* residual, T* out,
                                   long long M, int O, int has_residual, int relu)
{
    const long long total = M * O;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        T v = acc[idx] + bias[idx % O];
        if (has_residual)
            v += residual[idx];
        if (relu)
            v = v < 0 ? T(0) : v;
        out[idx] = v;
    }
}
"""

NAME_EXPRESSIONS = ("bias_residual_relu<float>", "bias_residual_relu<double>")


def bias_residual_relu(launch, acc, bias, residual, out, M, O, has_residual, relu):
    """The twin of ``bias_residual_relu``: the kernel's statements, every thread of ``launch`` at once.

    Parameters
    ----------
    launch : :class:`npresnet.fast.cuda.grid.Launch`
    acc, residual, out : :class:`npresnet.fast.cuda.grid.Buffer` over arrays of shape (M, O)
        ``out`` may be ``acc``; ``residual`` is not read unless ``has_residual``.
    bias : :class:`npresnet.fast.cuda.grid.Buffer` over an array of shape (O,)
    M, O, has_residual, relu : int
    """
    total = M * O
    for idx in launch.grid_stride(total):
        v = acc[idx] + bias[idx % O]
        if has_residual:
            v += residual[idx]
        if relu:
            v = numpy.where(v < 0, v.dtype.type(0), v)
        out[idx] = v
