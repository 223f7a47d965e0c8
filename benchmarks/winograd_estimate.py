"""Would Winograd F(2×2, 3×3) pay off in NumPy? A one-layer estimate, not part of npresnet.

For one stride-1 3×3 convolution of ResNet layer1 (batch 8, 56×56×64 → 64, NHWC, float32)
it times, unchunked:

- Winograd F(2×2,3×3): input transform ``Bᵀ d B`` as 4 + 16 separable NumPy add/subtract
  passes over strided views, 16 batched matrix products ``(T, C) @ (C, O)``, output transform
  ``Aᵀ m A`` as 12 passes plus the 2×2 scatter;
- im2col + one GEMM ``(M, 9C) @ (9C, O)``.

Run: ``python benchmarks/winograd_estimate.py``. The numbers it prints are quoted, with
their context, in ``benchmarks/RESULTS.md``. Values are random; only times are reported.
"""
from __future__ import annotations

import time

import numpy as np

N, H, W, C, O = 8, 56, 56, 64, 64
TH, TW = H // 2, W // 2  # output tiles of 2×2
T = N * TH * TW


def median_ms(fn, repeats=7):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    xpad = np.zeros((N, H + 2, W + 2, C), np.float32)
    xpad[:, 1:-1, 1:-1] = x
    U = rng.standard_normal((16, C, O)).astype(np.float32)  # transformed weights G g Gᵀ (values irrelevant)
    V = np.empty((4, 4, N, TH, TW, C), np.float32)
    rows = np.empty((4, N, TH, W + 2, C), np.float32)
    M = np.empty((16, T, O), np.float32)
    Y = np.empty((4, 2, T, O), np.float32)
    out = np.empty((N, H, W, O), np.float32)

    def input_transform():  # Bᵀ d B, rows then columns; Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]
        r = [xpad[:, k : k + 2 * TH : 2] for k in range(4)]  # (N, TH, W+2, C)
        np.subtract(r[0], r[2], out=rows[0])
        np.add(r[1], r[2], out=rows[1])
        np.subtract(r[2], r[1], out=rows[2])
        np.subtract(r[1], r[3], out=rows[3])
        for i in range(4):
            c = [rows[i][:, :, k : k + 2 * TW : 2] for k in range(4)]  # (N, TH, TW, C)
            np.subtract(c[0], c[2], out=V[i, 0])
            np.add(c[1], c[2], out=V[i, 1])
            np.subtract(c[2], c[1], out=V[i, 2])
            np.subtract(c[1], c[3], out=V[i, 3])

    def products():
        np.matmul(V.reshape(16, T, C), U, out=M)  # (16, T, O)

    def output_transform():  # Aᵀ m A; Aᵀ = [[1,1,1,0],[0,1,-1,-1]]
        m = M.reshape(4, 4, T, O)
        for i in range(4):
            np.add(m[i, 0], m[i, 1], out=Y[i, 0])
            Y[i, 0] += m[i, 2]
            np.subtract(m[i, 1], m[i, 2], out=Y[i, 1])
            Y[i, 1] -= m[i, 3]
        for j in range(2):
            top = Y[0, j] + Y[1, j]
            top += Y[2, j]
            bottom = Y[1, j] - Y[2, j]
            bottom -= Y[3, j]
            out[:, 0::2, j::2] = top.reshape(N, TH, TW, O)
            out[:, 1::2, j::2] = bottom.reshape(N, TH, TW, O)

    w = rng.standard_normal((9 * C, O)).astype(np.float32)
    cols = np.empty((N, H, W, 3, 3, C), np.float32)
    product = np.empty((N * H * W, O), np.float32)

    def im2col():
        for i in range(3):
            for j in range(3):
                cols[:, :, :, i, j] = xpad[:, i : i + H, j : j + W]

    def gemm():
        np.matmul(cols.reshape(-1, 9 * C), w, out=product)

    a, b, c = median_ms(input_transform), median_ms(products), median_ms(output_transform)
    d, e = median_ms(im2col), median_ms(gemm)
    print(f"layer1 3x3 conv, batch 8, unchunked: Winograd F(2x2,3x3) input {a:.1f} + products {b:.1f} + "
          f"output {c:.1f} = {a + b + c:.1f} ms | im2col {d:.1f} + GEMM {e:.1f} = {d + e:.1f} ms")


if __name__ == "__main__":
    main()
