"""Where the fused path's time goes, read from its own profiling hook (``FusedResNet.profile``).

The library times each step of a real forward pass (per convolution: gather, products,
epilogue); this module only repeats the pass, takes medians and formats the table.
"""

from __future__ import annotations

import time

import numpy as np

from _engines import build_model
from npresnet.fast import fuse

PHASES = ("gather", "transform", "gemm", "epilogue")


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _shape_text(shape) -> str:
    return "×".join(str(s) for s in shape[1:])


def profile_fast(arch: str, batch: int, size: int, dtype: str, repeats: int = 3, winograd=True) -> str:
    """A markdown table of the fused path's steps for one (arch, batch): median of ``repeats`` profiled passes
    of ``fuse(model, winograd=winograd)``."""
    model = build_model(arch, dtype)
    fused = fuse(model, winograd=winograd)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(dtype)
    total = _median_time(lambda: fused(x), repeats)  # untimed passes, for the overhead of the hook
    runs = [fused.profile(x) for _ in range(repeats)]
    rows, sums = [], dict.fromkeys(PHASES, 0.0)
    for index, steps in enumerate(zip(*runs)):
        r = steps[0]
        seconds = float(np.median([s.seconds for s in steps]))
        phases = {p: float(np.median([s.phases.get(p, 0.0) for s in steps])) for p in PHASES}
        for p in PHASES:
            sums[p] += phases[p]
        rate = (
            f"{2 * r.macs / phases['gemm'] / 1e9:.0f}" + ("*" if r.kind == "winograd" else "")
            if r.macs and phases["gemm"] > 0
            else "–"
        )
        rows.append(
            f"| {index} | {r.name} | {r.kind} | {_shape_text(r.in_shape)} → {_shape_text(r.out_shape)} | "
            f"{1e3 * seconds:.2f} | " + " | ".join(f"{1e3 * phases[p]:.2f}" for p in PHASES) + f" | {rate} |"
        )
    steps = sum(float(np.median([s.seconds for s in col])) for col in zip(*runs))
    head = [
        f"Profile of the fast path (winograd={fused.winograd}): {arch}, batch {batch}, {size}×{size}, {dtype} "
        f"(`FusedResNet.profile`, median of {repeats} passes). Untimed forward {1e3 * total:.1f} ms; "
        f"profiled steps {1e3 * steps:.1f} ms, of which gather {1e3 * sums['gather']:.1f} (im2col columns, "
        f"Winograd tiles), transform {1e3 * sums['transform']:.1f} (Winograd's input and output transforms), "
        f"GEMM {1e3 * sums['gemm']:.1f} (for Winograd: the tile-position products), epilogue "
        f"{1e3 * sums['epilogue']:.1f} (bias, residual, ReLU; Winograd's output scatter). GFLOP/s counts the "
        "direct convolution's multiply-adds over the GEMM time (*: Winograd, so it can exceed the sgemm rate). "
        "Input shapes are channels-last H×W×C.",
        "",
        "| # | layer | kind | input → output | ms | gather ms | transform ms | GEMM ms | epilogue ms | GEMM GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"
