"""NHWC pooling kernels: max pooling (the stem's) and the global average pool (the head's).

The CUDA sources and their NumPy twins below are line-for-line parallel (see :mod:`.grid`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

if TYPE_CHECKING:
    from .grid import Buffer, Launch

__all__ = ["SOURCE", "NAME_EXPRESSIONS", "max_pool_nhwc", "global_avg_pool_nhwc"]

SOURCE = r"""
#include <cuda_fp16.h>  // __half: float16 storage

// -inf by its bit pattern: NVRTC defines neither INFINITY nor HUGE_VAL without host headers.
__device__ inline float negative_infinity(float) { return __int_as_float(0xff800000); }
__device__ inline double negative_infinity(double) { return __longlong_as_double(0xfff0000000000000ULL); }
__device__ inline __half negative_infinity(__half) { return __ushort_as_half(0xfc00); }

// NHWC max pooling with any kernel, stride, padding and dilation (out_h, out_w from the
// host, so ceil_mode needs nothing here).
//
// NumPy definition (xpad: x padded with -inf by ph rows and pw columns on each side):
//   out[n, oy, ox, c] = max over (i, j) of xpad[n, oy*sy + i*dy, ox*sx + j*dx, c]
// Taps in the padding are skipped, which is what -inf padding amounts to; a NaN wins, as in torch.
// One thread per output element, consecutive threads on consecutive channels (coalesced).
template <typename T>
__global__ void max_pool_nhwc(const T* __restrict__ x, T* __restrict__ out,
                              int N, int H, int W, int C, int out_h, int out_w,
                              int kh, int kw, int sy, int sx, int ph, int pw, int dy, int dx)
{
    const long long total = (long long)N * out_h * out_w * C;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int c = idx % C;  // idx = ((n*out_h + oy)*out_w + ox)*C + c
        const int ox = idx / C % out_w;
        const int oy = idx / ((long long)C * out_w) % out_h;
        const int n = idx / ((long long)C * out_w * out_h);
        T best = negative_infinity(T(0));
        for (int i = 0; i < kh; ++i) {
            const int iy = oy * sy - ph + i * dy;
            if (iy < 0 || iy >= H)
                continue;
            for (int j = 0; j < kw; ++j) {
                const int ix = ox * sx - pw + j * dx;
                if (ix < 0 || ix >= W)
                    continue;
                const T v = x[(((long long)n * H + iy) * W + ix) * C + c];
                if (v > best || v != v)
                    best = v;
            }
        }
        out[idx] = best;
    }
}

// NHWC global average pool, adaptive_avg_pool2d(x, 1) on channels-last data, read in the
// storage type T, summed and written in the arithmetic type A: (float, float), (double, double),
// or (__half, float), whose float32 means feed the float32 fc product.
//
// NumPy definition: out[n, c] = x[n, :, c].astype(A).mean(), x viewed as (N, HW, C)
// One thread per (n, c), summing the HW pixels in order; consecutive threads read
// consecutive channels (coalesced).
template <typename T, typename A>
__global__ void global_avg_pool_nhwc(const T* __restrict__ x, A* __restrict__ out, int N, int HW, int C)
{
    const long long total = (long long)N * C;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int c = idx % C;  // idx = n*C + c
        const int n = idx / C;
        A sum = 0;
        for (int p = 0; p < HW; ++p)
            sum += static_cast<A>(x[((long long)n * HW + p) * C + c]);
        out[idx] = sum / HW;
    }
}
"""

NAME_EXPRESSIONS = (
    "max_pool_nhwc<float>",
    "max_pool_nhwc<double>",
    "max_pool_nhwc<__half>",
    "global_avg_pool_nhwc<float, float>",
    "global_avg_pool_nhwc<double, double>",
    "global_avg_pool_nhwc<__half, float>",
)


def max_pool_nhwc(
    launch: Launch, x: Buffer, out: Buffer, N: int, H: int, W: int, C: int, out_h: int, out_w: int,
    kh: int, kw: int, sy: int, sx: int, ph: int, pw: int, dy: int, dx: int,
) -> None:  # fmt: skip
    """Run ``max_pool_nhwc``'s twin: the kernel's statements, every thread of ``launch`` at once.

    Parameters
    ----------
    launch : :class:`npresnet.fast.cuda.grid.Launch`
    x : :class:`npresnet.fast.cuda.grid.Buffer` over an array of shape (N, H, W, C)
    out : :class:`npresnet.fast.cuda.grid.Buffer` over an array of shape (N, out_h, out_w, C)
    N, H, W, C, out_h, out_w, kh, kw, sy, sx, ph, pw, dy, dx : int
    """
    total = N * out_h * out_w * C
    for idx in launch.grid_stride(total):
        c = idx % C  # idx = ((n*out_h + oy)*out_w + ox)*C + c
        ox = idx // C % out_w
        oy = idx // (C * out_w) % out_h
        n = idx // (C * out_w * out_h)
        best = numpy.full(idx.shape, -numpy.inf, dtype=x.flat.dtype)
        for i in range(kh):
            iy = oy * sy - ph + i * dy
            row_inside = (iy >= 0) & (iy < H)  # the threads that do not `continue`
            for j in range(kw):
                ix = ox * sx - pw + j * dx
                inside = row_inside & (ix >= 0) & (ix < W)
                v = numpy.full(idx.shape, numpy.nan, dtype=x.flat.dtype)  # never read where not inside
                v[inside] = x[(((n * H + iy) * W + ix) * C + c)[inside]]
                take = inside & ((v > best) | (v != v))
                best[take] = v[take]
        out[idx] = best


def global_avg_pool_nhwc(launch: Launch, x: Buffer, out: Buffer, N: int, HW: int, C: int) -> None:
    """Run ``global_avg_pool_nhwc``'s twin: the kernel's statements, every thread of ``launch`` at once.

    Parameters
    ----------
    launch : :class:`npresnet.fast.cuda.grid.Launch`
    x : :class:`npresnet.fast.cuda.grid.Buffer` over an array of shape (N, HW, C), the storage type
    out : :class:`npresnet.fast.cuda.grid.Buffer` over an array of shape (N, C), the arithmetic type
    N, HW, C : int
    """
    total = N * C
    for idx in launch.grid_stride(total):
        c = idx % C  # idx = n*C + c
        n = idx // C
        sum = numpy.zeros(idx.shape, dtype=out.flat.dtype)
        for p in range(HW):
            sum += x[(n * HW + p) * C + c].astype(sum.dtype)
        out[idx] = sum / HW
