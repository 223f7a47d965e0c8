"""The stem's column copy, by runs and by elements, side by side in one process.

ResNet's stem (7×7, stride 2, 3 → 64 channels) has too few input channels for the per-offset copies,
so :class:`npresnet.fast.conv.FusedConv` copies its columns by kernel rows, one run of ``7·3 = 21``
contiguous floats per output pixel and kernel row. On NumPy each run is copied as one item of a
void dtype (``FusedConv._copy_row_runs``); on other backends element by element through a strided
window view (``FusedConv._copy_row_windows``). This times, round-robin, for ResNet-18's stem at
224×224 (random weights, float32, NHWC, the default NumPy workspace bound):

- ``copy``: the convolution's gather phase, each way (the library's own phase clock,
  :class:`npresnet.fast.profile.PhaseClock`: the input's padded copy, then the column copies of
  every workspace chunk);
- ``stem``: the whole stem convolution (gather, product, bias), each way, in the same call;

and checks that the two ways give bit-identical outputs.

Run: ``python benchmarks/stem_gather.py [--batch 1 8] [--rounds 30]``; set ``OPENBLAS_NUM_THREADS``
for the product's threads (the copies are single-threaded). Its output is quoted in
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from npresnet.fast.conv import FusedConv  # noqa: E402
from npresnet.fast.fold import gemm_weight  # noqa: E402
from npresnet.fast.profile import PhaseClock  # noqa: E402

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
        times: dict[tuple[str, str], list[float]] = {(k, w): [] for k in ("copy", "stem") for w in WAYS}
        clock = PhaseClock()
        for _ in range(args.rounds):
            for way, conv in convs.items():
                clock.start()
                conv(x, outs[way], clock=clock)
                times["copy", way].append(clock.phases["gather"])
                times["stem", way].append(clock.elapsed())
        for kind in ("copy", "stem"):
            med = {w: np.median(times[kind, w]) * 1e3 for w in WAYS}
            spread = {w: np.percentile(times[kind, w], [25, 75]) * 1e3 for w in WAYS}
            cells = " | ".join(f"{w} {med[w]:.2f} ms (IQR {spread[w][0]:.2f}–{spread[w][1]:.2f})" for w in WAYS)
            print(f"batch {N}, {kind}: {cells} | elements/runs {med['elements'] / med['runs']:.2f}×")


if __name__ == "__main__":
    main()
