"""Peak memory of one engine's forward passes, measured in a fresh process (see bench.py's docstring)."""
from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import tracemalloc

import numpy as np

from _engines import build_model, make_engines

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench.py")


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+)", f.read(), re.M).group(1))


def _release_freed_memory() -> None:
    """Hand memory that is free but still cached by the C allocator back to the kernel (glibc's
    ``malloc_trim``), so that an engine which reuses it (PyTorch, after its model was built) is seen
    to touch it again: without this, PyTorch's ResNet-50 batch-8 peak read 13–84 MB, with it 266 MB."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to release this way
        pass


def probe_memory(args) -> dict:
    """Peak extra resident memory (and tracemalloc peak) of one engine's forward passes, in this process."""
    model = build_model(args.arch[0], args.dtype)
    x = np.random.default_rng(0).standard_normal((args.batch[0], 3, args.size, args.size)).astype(args.dtype)
    with tempfile.TemporaryDirectory() as directory:
        engines, skipped = make_engines(args.arch[0], model, x.shape, args.dtype, args.threads, [args.probe],
                                        directory)
        if args.probe not in engines:
            return {"engine": args.probe, "skipped": skipped.get(args.probe, "unavailable")}
        run = engines[args.probe]
        _release_freed_memory()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        before = _proc_status_kib("VmRSS")
        tracemalloc.start()
        run(x)
        run(x)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak = _proc_status_kib("VmHWM")
    return {"engine": args.probe, "peak_rss_bytes": (peak - before) * 1024, "traced_peak_bytes": traced}


def measure_memory(args, arch, batch, engines) -> dict:
    """Run :func:`probe_memory` in ``--memory-repeats`` fresh subprocesses per engine; ``{engine: dict}``
    with the median of each figure (PyTorch's RSS peak varies by ~2× from process to process)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return {}
    results = {}
    for engine in engines:
        cmd = [sys.executable, BENCH, "--probe", engine, "--arch", arch, "--batch", str(batch),
               "--size", str(args.size), "--dtype", args.dtype, "--threads", str(args.threads)]
        probes = []
        for _ in range(args.memory_repeats):
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, **_thread_env(args.threads)})
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                probes = None
                results[engine] = {"engine": engine, "skipped": f"probe failed: {proc.stderr.strip()[-300:]}"}
                break
            probes.append(json.loads(lines[-1]))
        if probes and "skipped" not in probes[0]:
            results[engine] = {key: float(np.median([p[key] for p in probes]))
                               for key in ("peak_rss_bytes", "traced_peak_bytes")}
    return results


def _thread_env(threads: int) -> dict:
    return {k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
