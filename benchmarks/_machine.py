"""What machine a benchmark ran on: CPU, cores, library versions, BLAS, and the float32 matrix-product rate."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time

import numpy as np


def numpy_blas() -> str:
    """NumPy's BLAS as "name version", read from its build configuration as data.

    ``np.show_config()`` prints, and warns "Install `pyyaml` for better output" when PyYAML is
    missing (the warning the benchmark used to print); ``mode="dicts"`` returns the same
    information without either.
    """
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip()
    except (TypeError, KeyError):  # an old NumPy without mode=
        return "unknown"


def machine_description(threads: int) -> dict:
    """CPU model, core count, library versions and BLAS configuration."""
    info = {"python": platform.python_version(), "numpy": np.__version__, "threads": threads}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for key in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache"):
            m = re.search(rf"^{re.escape(key)}:\s+(.+)$", lscpu, re.M)
            if m:
                info[key] = m.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        info["Model name"] = platform.processor() or "unknown"
    info["numpy BLAS"] = numpy_blas()
    try:
        import threadpoolctl  # optional

        info["BLAS threads"] = ", ".join(
            f"{p['internal_api']}={p['num_threads']}" for p in threadpoolctl.threadpool_info()
        )
    except ImportError:
        info["BLAS threads"] = (
            f"threadpoolctl not installed; OPENBLAS_NUM_THREADS="
            f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, cores={os.cpu_count()}"
        )
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def sgemm_rate(n: int = 2048, repeats: int = 5, dtype="float32") -> float:
    """GFLOP/s of a square ``n×n @ n×n`` NumPy matrix product (median of ``repeats``)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / float(np.median(times)) / 1e9
