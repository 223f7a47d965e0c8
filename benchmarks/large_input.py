"""ResNet-50's fast path on a large input: time and peak memory with the bounded workspace.

Run: ``python benchmarks/large_input.py [--size 1024] [--batch 4]``. Weights are seeded and
random (only time and memory are reported). Peak RSS is measured as in ``bench.py``:
``/proc/self/clear_refs`` resets the kernel's peak, then ``VmHWM - VmRSS(before)``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import npresnet  # noqa: E402
from npresnet.fast import fuse  # noqa: E402
from npresnet.workspace import resolve_workspace_bytes  # noqa: E402


def _kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+)", f.read(), re.M).group(1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args(argv)
    fused = fuse(npresnet.resnet50(rng=0))
    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _kib("VmRSS")
    tracemalloc.start()
    t = time.perf_counter()
    logits = fused(x)
    seconds = time.perf_counter() - t
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    largest = args.batch * 256 * (args.size // 4) ** 2 * 4  # layer1's output, the largest activation
    print(
        f"ResNet-50 fast, {args.batch}x3x{args.size}x{args.size} float32: {seconds:.1f} s, logits "
        f"{logits.shape}, peak RSS +{(_kib('VmHWM') - before) / 1024:.0f} MiB, tracemalloc peak "
        f"{traced / 2**20:.0f} MiB, cached buffers {fused.buffer_bytes() / 2**20:.0f} MiB (largest activation "
        f"{largest / 2**20:.0f} MiB, input {x.nbytes / 2**20:.0f} MiB, workspace bound "
        f"{resolve_workspace_bytes(fused.workspace_bytes) / 2**20:.0f} MiB per chunk, columns plus output)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
