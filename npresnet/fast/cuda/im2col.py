"""NHWC im2col: the column matrix of one GEMM per group, gathered by one kernel launch.

The CUDA source and its NumPy twin below are line-for-line parallel; the twin runs every
thread of a launch at once (:mod:`.grid`), so the tests can check its index arithmetic
against :func:`npresnet.functional.im2col` over random geometries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

if TYPE_CHECKING:
    from .grid import Buffer, Launch

__all__ = ["SOURCE", "NAME_EXPRESSIONS", "im2col_nhwc"]

SOURCE = r"""
#include <cuda_fp16.h>  // __half, for float16 storage

// NHWC im2col for a convolution with any stride, padding, dilation and groups.
//
// NumPy definition (xpad: x zero-padded by ph rows and pw columns on each side):
//   cols[g, n, oy, ox, i, j, c] = xpad[n, oy*sy + i*dy, ox*sx + j*dx, g*Cg + c]
// read as a (groups, M, K) matrix with M = N*out_h*out_w rows and K = kh*kw*Cg columns,
// so that out[:, g*Og:(g+1)*Og] = cols[g] @ weight[g], weight from
// npresnet.fast.fold.gemm_weight, shape (groups, K, Og).
//
// One thread per element of cols; consecutive threads take consecutive channels c, so
// reads and writes are coalesced runs of Cg values. The grid-stride loop lets any grid
// cover any size.
template <typename T>
__global__ void im2col_nhwc(const T* __restrict__ x, T* __restrict__ cols,
                            int N, int H, int W, int C, int out_h, int out_w,
                            int kh, int kw, int sy, int sx, int ph, int pw, int dy, int dx, int groups)
{
    const int Cg = C / groups;
    const long long K = (long long)kh * kw * Cg;
    const long long M = (long long)N * out_h * out_w;
    const long long total = groups * M * K;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int c = idx % Cg;  // idx = (g*M + m)*K + k, k = (i*kw + j)*Cg + c
        const int j = idx / Cg % kw;
        const int i = idx / ((long long)Cg * kw) % kh;
        const long long m = idx / K % M;  // m = (n*out_h + oy)*out_w + ox
        const int g = idx / (K * M);
        const int ox = m % out_w;
        const int oy = m / out_w % out_h;
        const int n = m / ((long long)out_w * out_h);
        const int iy = oy * sy - ph + i * dy;  // the input pixel this tap reads
        const int ix = ox * sx - pw + j * dx;
        T v = 0;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W)
            v = x[(((long long)n * H + iy) * W + ix) * C + g * Cg + c];
        cols[idx] = v;
    }
}
"""

NAME_EXPRESSIONS = ("im2col_nhwc<float>", "im2col_nhwc<double>", "im2col_nhwc<__half>")


def im2col_nhwc(
    launch: Launch, x: Buffer, cols: Buffer, N: int, H: int, W: int, C: int, out_h: int, out_w: int,
    kh: int, kw: int, sy: int, sx: int, ph: int, pw: int, dy: int, dx: int, groups: int,
) -> None:  # fmt: skip
    """Run ``im2col_nhwc``'s twin: the kernel's statements, every thread of ``launch`` at once.

    Parameters
    ----------
    launch : :class:`npresnet.fast.cuda.grid.Launch`
    x : :class:`npresnet.fast.cuda.grid.Buffer` over an array of shape (N, H, W, C)
    cols : :class:`npresnet.fast.cuda.grid.Buffer` over an array of shape (groups, N*out_h*out_w, kh*kw*C/groups)
    N, H, W, C, out_h, out_w, kh, kw, sy, sx, ph, pw, dy, dx, groups : int
        As the kernel's arguments.
    """
    Cg = C // groups
    K = kh * kw * Cg
    M = N * out_h * out_w
    total = groups * M * K
    for idx in launch.grid_stride(total):
        c = idx % Cg  # idx = (g*M + m)*K + k, k = (i*kw + j)*Cg + c
        j = idx // Cg % kw
        i = idx // (Cg * kw) % kh
        m = idx // K % M  # m = (n*out_h + oy)*out_w + ox
        g = idx // (K * M)
        ox = m % out_w
        oy = m // out_w % out_h
        n = m // (out_w * out_h)
        iy = oy * sy - ph + i * dy  # the input pixel this tap reads
        ix = ox * sx - pw + j * dx
        v = numpy.zeros(idx.shape, dtype=x.flat.dtype)
        inside = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        v[inside] = x[(((n * H + iy) * W + ix) * C + g * Cg + c)[inside]]
        cols[idx] = v
