"""The stem's column copy, by runs and by elements, side by side in one process.

ResNet's stem (7×7, stride 2, 3 → 64 channels) has too few input channels for the per-offset copies,
so :class:`npresnet.fast.conv.FusedConv` copies its columns by kernel rows, one run of ``7·3 = 21``
contiguous floats per output pixel and kernel row. On NumPy each run is copied as one item of a
void dtype (``FusedConv._copy_row_runs``); on other backends element by element through a strided
window view (``FusedConv._copy_row_windows``). This times, round-robin, for ResNet-18's stem at
224×224 (random weights, float32, NHWC, the default NumPy workspace bound):

- ``copy``: the column copy of one call, each way, chunk by chunk as the convolution does it;
- ``stem``: the whole stem convolution (copy, product, bias), each way;

and checks that the two ways give bit-identical outputs.

Run: ``python benchmarks/stem_gather.py [--batch 1 8] [--rounds 30]``; set ``OPENBLAS_NUM_THREADS``
for the product's threads (the copies are single-threaded). Its output is quoted in
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from npresnet.fast.conv import FusedConv  # noqa: E402
from npresnet.fast.fold import gemm_weight  # noqa: E402
from npresnet.workspace import NUMPY_WORKSPACE_BYTES, workspace_chunks  # noqa: E402

WAYS = ("runs", "elements")


def stem(way: str, rng: np.random.Generator) -> FusedConv:
    """ResNet's stem as a FusedConv that copies its columns ``way``."""
    weight = rng.standard_normal((64, 3, 7, 7)) * (2 / 147) ** 0.5
    conv = FusedConv(
        gemm_weight(weight, 1).astype(np.float32), np.zeros(64, np.float32), (7, 7), (2, 2), (3, 3), (1, 1), 1
    )
    if way == "elements":
        conv._copy_row_runs = conv._copy_row_windows  # type: ignore[method-assign]
    return conv


def copy_columns(conv: FusedConv, xpad: np.ndarray, cols: np.ndarray, out_w: int, row_bytes: int) -> None:
    """The column copies of one stem call, chunk by chunk as ``FusedConv.__call__`` makes them."""
    N, out_h = xpad.shape[0], out_w
    for n0, n1, y0, y1 in workspace_chunks(N, out_h, row_bytes, NUMPY_WORKSPACE_BYTES):
        m = (n1 - n0) * (y1 - y0) * out_w
        conv._im2col_rows(xpad[n0:n1], cols[: m * 147].reshape(n1 - n0, y1 - y0, out_w, 7, 7, 3), y0, y1, out_w)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    print(f"# OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, {args.rounds} rounds")
    for N in args.batch:
        x = rng.standard_normal((N, 3, 224, 224)).astype(np.float32).transpose(0, 2, 3, 1)  # NHWC view of NCHW
        convs = {way: stem(way, np.random.default_rng(1)) for way in WAYS}
        out_shape = convs["runs"].output_shape(x.shape)
        outs = {way: np.empty(out_shape, np.float32) for way in WAYS}
        for way, conv in convs.items():
            conv(x, outs[way])
        if not np.array_equal(outs["runs"], outs["elements"]):
            raise SystemExit("the two copies gave different outputs")
        xpad = convs["runs"]._pad(x)
        out_w = out_shape[2]
        row_bytes = out_w * (147 + 64) * 4
        cols = np.empty(NUMPY_WORKSPACE_BYTES // 4 + out_w * 147, np.float32)
        times: dict[tuple[str, str], list[float]] = {(k, w): [] for k in ("copy", "stem") for w in WAYS}
        for _ in range(args.rounds):
            for way, conv in convs.items():
                t = time.perf_counter()
                copy_columns(conv, xpad, cols, out_w, row_bytes)
                times["copy", way].append(time.perf_counter() - t)
                t = time.perf_counter()
                conv(x, outs[way])
                times["stem", way].append(time.perf_counter() - t)
        for kind in ("copy", "stem"):
            med = {w: np.median(times[kind, w]) * 1e3 for w in WAYS}
            spread = {w: np.percentile(times[kind, w], [25, 75]) * 1e3 for w in WAYS}
            cells = " | ".join(f"{w} {med[w]:.2f} ms (IQR {spread[w][0]:.2f}–{spread[w][1]:.2f})" for w in WAYS)
            print(f"batch {N}, {kind}: {cells} | elements/runs {med['elements'] / med['runs']:.2f}×")


if __name__ == "__main__":
    main()
