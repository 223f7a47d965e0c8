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


def _device_allocator(engine: str):
    """``(reset, peak_bytes)`` for the GPU memory an engine's allocator reserves: CuPy's default pool for
    npresnet, PyTorch's caching allocator for torch. Both keep freed blocks, so growth of what they
    hold is the high-water mark of the forward passes (fragmentation included, alike for both)."""
    if engine.startswith("torch"):
        import torch

        def reset():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_reserved()

        def peak(before):
            torch.cuda.synchronize()
            return torch.cuda.max_memory_reserved() - before

        return reset, peak
    import cupy

    pool = cupy.get_default_memory_pool()

    def reset():
        cupy.cuda.Device().synchronize()
        pool.free_all_blocks()  # drop cached blocks; what stays is live (the weights, the input)
        return pool.total_bytes()

    def peak(before):
        cupy.cuda.Device().synchronize()
        return pool.total_bytes() - before

    return reset, peak


def probe_memory(args) -> dict:
    """Peak extra resident memory (and tracemalloc peak) of one engine's forward passes, in this process;
    with ``--backend cupy`` also the peak extra GPU memory its allocator reserves."""
    model = build_model(args.arch[0], args.dtype)
    x = np.random.default_rng(0).standard_normal((args.batch[0], 3, args.size, args.size)).astype(args.dtype)
    with tempfile.TemporaryDirectory() as directory:
        engines, skipped = make_engines(
            args.arch[0], model, x.shape, args.dtype, args.threads, [args.probe], directory, args.backend
        )
        if args.probe not in engines:
            return {"engine": args.probe, "skipped": skipped.get(args.probe, "unavailable")}
        run = engines[args.probe]
        if args.backend == "cupy":
            return {"engine": args.probe, **_device_peak(args, run, x)}
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


def _device_peak(args, run, x) -> dict:
    """GPU counterpart of the RSS probe: the input is on the device before the baseline (npresnet's
    engines get a CuPy array; the torch engines copy theirs in on the first call, counted: < 1 % here)."""
    import npresnet

    if not args.probe.startswith("torch"):
        x = npresnet.to_backend(x, "cupy")
    reset, peak = _device_allocator(args.probe)
    before = reset()
    run(x)
    run(x)
    return {"peak_device_bytes": peak(before)}


def measure_memory(args, arch, batch, engines) -> dict:
    """Run :func:`probe_memory` in ``--memory-repeats`` fresh subprocesses per engine; ``{engine: dict}``
    with the median of each figure (PyTorch's RSS peak varies by ~2× from process to process)."""
    if args.backend == "numpy" and not os.path.exists("/proc/self/clear_refs"):
        return {}
    results = {}
    for engine in engines:
        cmd = [
            sys.executable,
            BENCH,
            "--probe",
            engine,
            "--arch",
            arch,
            "--batch",
            str(batch),
            "--size",
            str(args.size),
            "--dtype",
            args.dtype,
            "--threads",
            str(args.threads),
            "--backend",
            args.backend,
        ]
        probes = []
        for _ in range(args.memory_repeats):
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **_thread_env(args.threads)})
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                probes = None
                results[engine] = {"engine": engine, "skipped": f"probe failed: {proc.stderr.strip()[-300:]}"}
                break
            probes.append(json.loads(lines[-1]))
        if probes and "skipped" not in probes[0]:
            keys = [key for key in ("peak_rss_bytes", "traced_peak_bytes", "peak_device_bytes") if key in probes[0]]
            results[engine] = {key: float(np.median([p[key] for p in probes])) for key in keys}
    return results


def _thread_env(threads: int) -> dict:
    return {k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
