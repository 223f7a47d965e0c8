"""Winograd against im2col, one stride-1 3×3 convolution at a time, side by side in one process.

For the stride-1 3×3 convolutions of ResNet-18 (56×56×64, 28×28×128, 14×14×256, 7×7×512, all
C → C, padding 1, NHWC, float32) at batch 8 and batch 1 it times, round-robin, with the fast
default NumPy workspace bound and a ReLU epilogue:

- ``im2col``: the shipped :class:`npresnet.fast.conv.FusedConv` (chunked columns + one GEMM);
- ``F2``, ``F4``: :class:`npresnet.fast.winograd.WinogradConv` with F(2×2,3×3) and F(4×4,3×3)
  (transforms as two BLAS products each, no fallback),

and the float32 error of each against the float64 result, ``max|out - exact| / max|exact|``.
It also prints the split of one layer1 call, F(2×2) and F(4×4): tile copies, transforms, products,
scatter + epilogue (the library's own phase clock), and the calls with few tiles where im2col wins
(``MIN_TILES``; run with ``OPENBLAS_NUM_THREADS=1`` for CPU times that mean something).

Run: ``python benchmarks/winograd_estimate.py``. Its output is quoted in ``benchmarks/RESULTS.md``.
Values are random (He-scaled weights); only times and errors are reported.
"""

from __future__ import annotations

import functools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from npresnet.fast.conv import FusedConv  # noqa: E402
from npresnet.fast.fold import gemm_weight  # noqa: E402
from npresnet.fast.profile import PhaseClock  # noqa: E402
from npresnet.fast.winograd import WinogradConv, winograd_weight  # noqa: E402
from npresnet.workspace import NUMPY_WORKSPACE_BYTES  # noqa: E402

LAYERS = [(56, 64), (28, 128), (14, 256), (7, 512)]  # (H = W, C = O)


def workspace_of(dtype):
    scratch = {}

    def workspace(size, slot=0):
        if slot not in scratch or scratch[slot].size < size:
            scratch[slot] = np.empty(size, dtype)
        return scratch[slot][:size]

    return workspace


def round_robin_ms(calls: dict, repeats: int = 9) -> dict:
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def main():
    rng = np.random.default_rng(0)
    budget = NUMPY_WORKSPACE_BYTES
    for N in (8, 1):
        for H, C in LAYERS:
            w = rng.standard_normal((C, C, 3, 3)) * np.sqrt(2 / (9 * C))
            b = rng.standard_normal(C) * 0.1
            x64 = rng.standard_normal((N, H, H, C))
            x = x64.astype(np.float32)
            exact = np.empty((N, H, H, C))
            FusedConv(gemm_weight(w, 1), b, (3, 3), (1, 1), (1, 1), (1, 1), 1)(x64, exact, relu=True)
            convs = {
                "im2col": FusedConv(
                    gemm_weight(w, 1).astype(np.float32), b.astype(np.float32), (3, 3), (1, 1), (1, 1), (1, 1), 1
                )
            }
            for m in (2, 4):
                convs[f"F{m}"] = WinogradConv(winograd_weight(w, m).astype(np.float32), b.astype(np.float32), (1, 1))
            outs = {name: np.empty((N, H, H, C), np.float32) for name in convs}
            ws = workspace_of(np.float32)
            calls = {
                name: functools.partial(conv, x, outs[name], False, True, ws, budget) for name, conv in convs.items()
            }
            ms = round_robin_ms(calls)
            errors = {name: np.abs(outs[name] - exact).max() / np.abs(exact).max() for name in convs}
            print(
                f"batch {N}, {H}x{H}x{C}: "
                + " | ".join(f"{name} {ms[name]:.2f} ms (err {errors[name]:.1e})" for name in convs),
                flush=True,
            )
    split_layer1(rng, budget)
    tile_threshold(rng, budget)


def split_layer1(rng, budget, repeats: int = 9):
    """Where one layer1 call's time goes, F(2×2) and F(4×4): the library's own phase clock
    (gather, transform, tile-position products, scatter + epilogue), median over ``repeats`` calls."""
    N, H, C = 8, 56, 64
    w = rng.standard_normal((C, C, 3, 3)) * np.sqrt(2 / (9 * C))
    x = rng.standard_normal((N, H, H, C)).astype(np.float32)
    out = np.empty((N, H, H, C), np.float32)
    for m in (2, 4):
        conv = WinogradConv(winograd_weight(w, m).astype(np.float32), np.zeros(C, np.float32), (1, 1))
        ws = workspace_of(np.float32)
        conv(x, out, False, True, ws, budget)
        phases = []
        for _ in range(repeats):
            clock = PhaseClock()
            conv(x, out, False, True, ws, budget, clock)
            phases.append(clock.phases)
        ms = {p: 1e3 * float(np.median([ph[p] for ph in phases])) for p in phases[0]}
        print(
            f"F({m}x{m}) layer1 batch 8, {len(conv.plan(x.shape, out.shape, 4, budget)[2])} chunks: "
            + " + ".join(f"{name} {v:.2f}" for name, v in ms.items())
            + f" = {sum(ms.values()):.2f} ms"
        )


def tile_threshold(rng, budget, repeats: int = 9):
    """Where Winograd starts to beat im2col as the tiles in a call grow (:data:`MIN_TILES`): layer4's
    7×7×512 at batch 1–6 and layer3's 14×14×256 at batch 1–2, CPU seconds (``process_time``: steadier
    than the wall clock on a shared machine; meaningful with one BLAS thread), median of ``repeats``."""
    for H, C, batches in ((7, 512, (1, 2, 3, 4, 6)), (14, 256, (1, 2))):
        w = rng.standard_normal((C, C, 3, 3)) * np.sqrt(2 / (9 * C))
        zero = np.zeros(C, np.float32)
        convs = {"im2col": FusedConv(gemm_weight(w, 1).astype(np.float32), zero, (3, 3), (1, 1), (1, 1), (1, 1), 1)}
        for m in (2, 4):
            convs[f"F{m}"] = WinogradConv(winograd_weight(w, m).astype(np.float32), zero, (1, 1))  # no fallback
        for N in batches:
            x = rng.standard_normal((N, H, H, C)).astype(np.float32)
            out, ws = np.empty_like(x), workspace_of(np.float32)
            times = {name: [] for name in convs}
            for i in range(repeats + 1):
                for name, conv in convs.items():
                    t = time.process_time()
                    conv(x, out, False, True, ws, budget)
                    if i:  # the first round allocates
                        times[name].append(time.process_time() - t)
            tiles = ", ".join(f"F{m} {N * (-(-H // m)) ** 2}" for m in (2, 4))
            print(
                f"{H}x{H}x{C} batch {N} (tiles: {tiles}), CPU ms: "
                + " | ".join(f"{name} {1e3 * float(np.median(t)):.2f}" for name, t in times.items()),
                flush=True,
            )


if __name__ == "__main__":
    main()
