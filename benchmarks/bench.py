"""Side-by-side CPU inference benchmark: npresnet (reference and fused) vs PyTorch eager vs ONNX Runtime.

One command, one process, one run, so that the ratios compare engines under the same
machine conditions:

    python benchmarks/bench.py --markdown benchmarks/RESULTS.md.table

For each architecture and batch size it

1. builds an npresnet model (seeded weights, batch norms randomised so none is the identity),
   its fused path, a torchvision model with the *same* weights (``load_state_dict``), and,
   when ``onnxruntime`` imports, an ONNX export of that torchvision model;
2. checks that every engine's logits agree with PyTorch's (``max|a - b| / max|b|`` below
   1e-3 in float32, 1e-9 in float64) and refuses to time an engine that disagrees;
3. times the engines round-robin (one call of each per round, after ``--warmup`` rounds), so
   a load spike from another process hits every engine alike; reports the median, the
   inter-quartile range and the minimum, images/s, the ratio to PyTorch, and effective
   GFLOP/s = 2 × MACs / median (MACs from :func:`npresnet.summary.summarize`), beside the
   float32 matrix-product rate measured in the same run;
4. measures each engine's peak memory in a fresh subprocess (``--probe``): after the model
   and input exist, the kernel's peak-RSS counter is reset (``/proc/self/clear_refs``), two
   forward passes run, and ``VmHWM - VmRSS(before)`` is the peak extra resident memory (freed
   memory the C allocator still caches is returned to the kernel first, ``malloc_trim``). For
   the NumPy engines ``tracemalloc``'s peak (NumPy reports its allocations to it) is given too.

Limits of the memory figure: RSS counts pages touched, so memory an allocator keeps
cached from before the reset is invisible (hence a fresh process per engine), and
thread stacks and library arenas count. It is a fair comparison between engines, not an
exact byte count of arrays.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

import npresnet  # noqa: E402
from npresnet.fast import fuse  # noqa: E402

ENGINES = ("reference", "fast", "torch", "onnxruntime")
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}


# ---------------------------------------------------------------------------- machine
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
    buf = io.StringIO()
    stdout, sys.stdout = sys.stdout, buf
    try:
        np.show_config()
    finally:
        sys.stdout = stdout
    m = re.search(r"blas:.*?name:\s*(\S+).*?version:\s*(\S+)", buf.getvalue(), re.S)
    info["numpy BLAS"] = f"{m.group(1)} {m.group(2)}" if m else "unknown"
    try:
        import threadpoolctl  # optional

        info["BLAS threads"] = ", ".join(f"{p['internal_api']}={p['num_threads']}"
                                         for p in threadpoolctl.threadpool_info())
    except ImportError:
        info["BLAS threads"] = (f"threadpoolctl not installed; OPENBLAS_NUM_THREADS="
                                f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, cores={os.cpu_count()}")
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


# ---------------------------------------------------------------------------- engines
def build_model(arch: str, dtype: str, seed: int = 0):
    """An npresnet model with seeded weights and randomised batch-norm statistics and affine parameters."""
    model = npresnet.ARCHITECTURES[arch](rng=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for module in model.modules():
        if isinstance(module, npresnet.nn.BatchNorm2d):
            c = module.num_features
            module.weight[...] = rng.uniform(0.5, 1.5, c)
            module.bias[...] = rng.normal(0, 0.1, c)
            module.running_mean[...] = rng.normal(0, 0.1, c)
            module.running_var[...] = rng.uniform(0.5, 2.0, c)
    return model


def torch_model(arch: str, model, dtype: str):
    """The torchvision model with ``model``'s weights, in eval mode."""
    import torch
    import torchvision

    tv = getattr(torchvision.models, arch)(weights=None)
    tv.load_state_dict({k: torch.from_numpy(np.array(npresnet.to_numpy(v))) for k, v in model.state_dict().items()})
    return tv.to(getattr(torch, dtype)).eval()


def onnx_session(tv, x_shape, dtype: str, threads: int, directory: str):
    """Export ``tv`` to ONNX (dynamic batch) and open a CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort
    import torch

    import warnings

    path = os.path.join(directory, "model.onnx")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(tv, (torch.zeros(x_shape, dtype=getattr(torch, dtype)),), path, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # ORT's idle workers otherwise spin and keep a core busy between its calls: with them spinning,
    # the fast path timed 1.45× slower in this process (368 vs 254 ms, ResNet-18 batch 8).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def make_engines(arch, model, x_shape, dtype, threads, wanted, directory, backend="numpy"):
    """``{name: callable(x) -> NumPy logits}`` for the wanted engines that are available here."""
    engines, skipped = {}, {}
    xp_model = model.to(backend) if backend != "numpy" else model
    fused = fuse(xp_model)
    sync = _synchroniser(backend)
    if "reference" in wanted:
        engines["reference"] = lambda x: sync(npresnet.to_numpy(xp_model(x)))
    if "fast" in wanted:
        engines["fast"] = lambda x: sync(npresnet.to_numpy(fused(x)))
    need_torch = bool({"torch", "onnxruntime"} & set(wanted))
    try:
        import torch

        torch.set_num_threads(threads)
        tv = torch_model(arch, model, dtype) if need_torch else None
    except ImportError as exc:
        tv = None
        skipped["torch"] = skipped["onnxruntime"] = f"torch not importable ({exc})"
    if tv is not None and "torch" in wanted:
        def run_torch(x):
            with torch.inference_mode():
                return tv(torch.from_numpy(npresnet.to_numpy(x))).numpy()
        engines["torch"] = run_torch
    if tv is not None and "onnxruntime" in wanted:
        try:
            session = onnx_session(tv, x_shape, dtype, threads, directory)
            engines["onnxruntime"] = lambda x: session.run(None, {"x": npresnet.to_numpy(x)})[0]
        except ImportError as exc:
            skipped["onnxruntime"] = f"onnx/onnxruntime not importable ({exc})"
    return engines, skipped


def _synchroniser(backend):
    if backend == "cupy":
        import cupy

        def sync(value):
            cupy.cuda.Device().synchronize()
            return value
        return sync
    return lambda value: value


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.abs(expected).max(initial=0.0)
    diff = np.abs(actual - expected).max(initial=0.0)
    return diff / scale if scale else diff


# ---------------------------------------------------------------------------- memory probe
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
        cmd = [sys.executable, os.path.abspath(__file__), "--probe", engine, "--arch", arch, "--batch", str(batch),
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


# ---------------------------------------------------------------------------- timing
def time_round_robin(engines: dict, x, warmup: int, repeats: int, gap: float = 0.0) -> dict:
    """``{name: [seconds, ...]}``: each round calls every engine once, in turn.

    ``gap`` seconds of sleep precede each timed call: OpenBLAS, OpenMP (torch) and ONNX Runtime
    worker threads spin for a while after a call returns, and without the pause they steal the
    cores from whichever engine runs next (measured here: PyTorch right after the fast path
    took 1.25× its time alone).
    """
    for _ in range(warmup):
        for run in engines.values():
            run(x)
    times = {name: [] for name in engines}
    for _ in range(repeats):
        for name, run in engines.items():
            time.sleep(gap)
            t = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - t)
    return times


def run_config(args, arch, batch, gemm_gflops, directory, corrupt=None) -> list[dict]:
    """Check and time every engine on one (arch, batch); returns one row per engine."""
    from npresnet.summary import summarize

    model = build_model(arch, args.dtype)
    x = np.random.default_rng(batch).standard_normal((batch, 3, args.size, args.size)).astype(args.dtype)
    engines, skipped = make_engines(arch, model, x.shape, args.dtype, args.threads, args.engines, directory,
                                    args.backend)
    if "torch" not in engines:
        raise SystemExit(f"PyTorch is needed as the oracle and the baseline: {skipped.get('torch')}")
    if args.backend != "numpy":
        x_backend = npresnet.to_backend(x, args.backend)
        numpy_engines = {"torch", "onnxruntime"}
        engines = {name: (run if name in numpy_engines else (lambda run: lambda _x: run(x_backend))(run))
                   for name, run in engines.items()}
    expected = engines["torch"](x)
    for name, run in engines.items():
        got = run(x)
        if name == corrupt:  # the harness's own test: a wrong answer must be refused
            got = got + 0.1 * np.abs(expected).max()
        error = relative_error(got, expected)
        if not error <= TOLERANCE[args.dtype]:
            raise SystemExit(f"REFUSED: {name} logits disagree with PyTorch's for {arch} batch {batch} "
                             f"({error:.2e} > {TOLERANCE[args.dtype]:.0e}); not timing a wrong answer")
    macs = summarize(model, (args.size, args.size), batch=batch).total_macs
    times = time_round_robin(engines, x, args.warmup, args.repeats, args.gap)
    memory = measure_memory(args, arch, batch, list(engines)) if args.memory else {}
    torch_median = float(np.median(times["torch"]))
    rows = []
    for name, ts in times.items():
        ts = np.asarray(ts)
        median = float(np.median(ts))
        q1, q3 = np.percentile(ts, [25, 75])
        mem = memory.get(name, {})
        rows.append({
            "arch": arch, "batch": batch, "size": args.size, "dtype": args.dtype, "engine": name,
            "median_ms": 1e3 * median, "iqr_ms": (1e3 * q1, 1e3 * q3), "min_ms": 1e3 * float(ts.min()),
            "images_per_s": batch / median, "ratio_to_torch": median / torch_median,
            "gflops": 2 * macs / median / 1e9, "gemm_fraction": 2 * macs / median / 1e9 / gemm_gflops,
            "macs": macs, "peak_rss_mb": mem.get("peak_rss_bytes", float("nan")) / 2**20,
            "traced_mb": (mem["traced_peak_bytes"] / 2**20 if name in ("reference", "fast") and "traced_peak_bytes" in mem
                          else float("nan")),
            "relative_error": relative_error(engines[name](x), expected),
        })
    for name, why in skipped.items():
        if name in args.engines:
            rows.append({"arch": arch, "batch": batch, "engine": name, "skipped": why})
    return rows


# ---------------------------------------------------------------------------- profile of the fast path
def profile_fast(arch: str, batch: int, size: int, dtype: str, repeats: int = 3) -> str:
    """Where the fused path's time goes: per convolution, im2col copies vs GEMM vs epilogue.

    Each convolution call of one forward pass is recorded (by wrapping ``FusedConv.__call__``
    for the duration of this function), then re-run in isolation on random data of the same
    shapes: the whole call, its im2col copies alone, and its matrix products alone (median of
    ``repeats``); the epilogue (bias, residual, ReLU) is the remainder. Returns a markdown table.
    """
    from npresnet.fast.conv import FusedConv
    from npresnet.functional import workspace_chunks
    from npresnet.fast.winograd import WinogradConv

    model = build_model(arch, dtype)
    fused = fuse(model)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(dtype)
    calls = []
    originals = {cls: cls.__call__ for cls in (FusedConv, WinogradConv)}

    def recording(cls):
        def call(self, x, out, residual=False, relu=False, workspace=None, budget=None):
            if cls is FusedConv or self.uses_winograd(out.shape):  # a Winograd fallback is recorded as im2col
                calls.append((self, x.shape, x.flags.c_contiguous, out.shape, residual, relu))
            return originals[cls](self, x, out, residual, relu, workspace, budget)
        return call

    fused(x)
    total = _median_time(lambda: fused(x), repeats)
    for cls in originals:
        cls.__call__ = recording(cls)
    try:
        fused(x)
    finally:
        for cls, original in originals.items():
            cls.__call__ = original
    rng = np.random.default_rng(1)
    scratch = {}

    def workspace(n, slot=0):
        if slot not in scratch or scratch[slot].size < n:
            scratch[slot] = np.empty(n, dtype)
        return scratch[slot][:n]

    rows, sums = [], {"im2col": 0.0, "gemm": 0.0, "epilogue": 0.0}
    for index, (conv, in_shape, contiguous, out_shape, residual, relu) in enumerate(calls):
        xin = rng.standard_normal(in_shape).astype(dtype)
        if not contiguous:  # the stem reads the NCHW input through a transposed view
            xin = np.ascontiguousarray(xin.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
        out = np.zeros(out_shape, dtype)  # a residual call reads it: no uninitialised NaNs
        whole = _median_time(lambda: conv(xin, out, residual, relu, workspace, fused.workspace_bytes), repeats)
        N, out_h, out_w, O = out_shape
        if isinstance(conv, WinogradConv):
            t_copy, t_gemm = _winograd_parts(conv, xin, out_shape, fused.workspace_bytes, workspace, repeats)
            t_epi = max(whole - t_copy - t_gemm, 0.0)
            for key, value in zip(("im2col", "gemm", "epilogue"), (t_copy, t_gemm, t_epi)):
                sums[key] += value
            macs = N * out_h * out_w * O * 9 * in_shape[3]  # of the direct convolution it replaces
            rows.append(f"| {index} | 3×3/1 F({conv.m}×{conv.m}) | {in_shape[1]}×{in_shape[2]}×{in_shape[3]} → "
                        f"{out_h}×{out_w}×{O} | {1e3 * whole:.2f} | {1e3 * t_copy:.2f} | {1e3 * t_gemm:.2f} | "
                        f"{1e3 * t_epi:.2f} | {2 * macs / t_gemm / 1e9:.0f}* |")
            continue
        kh, kw = conv.kernel_size
        direct = conv.pointwise and conv.stride == (1, 1) and contiguous
        K = kh * kw * in_shape[3]
        row_bytes = out_w * ((in_shape[3] if direct else K) + (2 if residual else 1) * O) * out.itemsize
        parts = workspace_chunks(N, out_h, row_bytes, fused.workspace_bytes)

        by_rows = conv.uses_row_windows(in_shape[3])

        def copies():
            if by_rows:  # the stem: pad once, then copy kernel rows (as FusedConv.__call__ does)
                (ph, pw), (_, H, W, C) = conv.padding, in_shape
                xpad = np.zeros((N, H + 2 * ph, W + 2 * pw, C), dtype)
                xpad[:, ph : ph + H, pw : pw + W] = xin
            for n0, n1, y0, y1 in parts:
                cols = workspace((n1 - n0) * (y1 - y0) * out_w * K)  # slot 0, as the real call
                cols = cols.reshape(conv.groups, n1 - n0, y1 - y0, out_w, kh, kw, -1)
                if by_rows:
                    conv._im2col_rows(xpad[n0:n1], cols[0], y0, y1, out_w)
                else:
                    conv._im2col(xin[n0:n1], cols, y0, y1, out_w)

        def products():
            for n0, n1, y0, y1 in parts:
                m = (n1 - n0) * (y1 - y0) * out_w
                o = out[n0:n1, y0:y1].reshape(m, O)
                a = xin[n0:n1, y0:y1].reshape(m, -1) if direct else workspace(m * K).reshape(conv.groups, m, -1)
                if direct or conv.groups == 1:
                    np.matmul(a if direct else a[0], conv.weight2d, out=o)
                else:
                    np.matmul(a, conv.weight)

        t_copy = 0.0 if direct else _median_time(copies, repeats)
        t_gemm = _median_time(products, repeats)
        t_epi = max(whole - t_copy - t_gemm, 0.0)
        sums["im2col"] += t_copy
        sums["gemm"] += t_gemm
        sums["epilogue"] += t_epi
        macs = N * out_h * out_w * O * K // conv.groups
        kind = f"{kh}×{kw}/{conv.stride[0]}" + (" g" + str(conv.groups) if conv.groups > 1 else "")
        rows.append(f"| {index} | {kind} | {in_shape[1]}×{in_shape[2]}×{in_shape[3]} → {out_h}×{out_w}×{O} | "
                    f"{1e3 * whole:.2f} | {1e3 * t_copy:.2f} | {1e3 * t_gemm:.2f} | {1e3 * t_epi:.2f} | "
                    f"{2 * macs / t_gemm / 1e9:.0f} |")
    convs = sum(sums.values())
    head = [f"Profile of the fast path: {arch}, batch {batch}, {size}×{size}, {dtype}. "
            f"Whole forward {1e3 * total:.1f} ms; convolutions in isolation {1e3 * convs:.1f} ms = "
            f"im2col copies {1e3 * sums['im2col']:.1f} + GEMM {1e3 * sums['gemm']:.1f} + "
            f"epilogue (bias, residual, ReLU) {1e3 * sums['epilogue']:.1f}; the rest "
            f"(max pool, average pool, fc, Python) ≈ {1e3 * max(total - convs, 0):.1f} ms. "
            "Winograd rows (F(2×2)): im2col ms = the tile copies, GEMM ms = input transform + tile-position "
            "products + output transform, epilogue = scatter of the output tiles + bias, residual, ReLU; "
            "their GFLOP/s (*) count the direct convolution's multiply-adds, so they can exceed the sgemm rate.", "",
            "| # | conv | input H×W×C → output | whole ms | im2col ms | GEMM ms | epilogue ms | GEMM GFLOP/s |",
            "|---|---|---|---|---|---|---|---|"]
    return "\n".join(head + rows) + "\n"


def _winograd_parts(conv, xin, out_shape, budget, workspace, repeats):
    """Seconds of a :class:`WinogradConv` call's tile copies, and of its three products (transforms and
    the (m+2)² tile-position products), chunk by chunk as the real call does."""
    m, n_in, O, C = conv.m, conv.m + 2, out_shape[3], xin.shape[3]
    P = n_in * n_in
    tw, per_tile, parts = conv.plan(xin.shape, out_shape, xin.itemsize, budget)

    def copies():
        for n0, n1, t0, t1 in parts:
            T = (n1 - n0) * (t1 - t0) * tw
            tiles = workspace(T * per_tile, 0)[: P * T * C].reshape(n_in, n_in, n1 - n0, t1 - t0, tw, C)
            conv._gather(xin[n0:n1], tiles, t0, t1)

    def products():
        for n0, n1, t0, t1 in parts:
            T = (n1 - n0) * (t1 - t0) * tw
            a, b = workspace(T * per_tile, 0), workspace(T * per_tile, 1)
            np.matmul(conv.BB, a[: P * T * C].reshape(P, -1), out=b[: P * T * C].reshape(P, -1))
            np.matmul(b[: P * T * C].reshape(P, T, C), conv.U, out=a[: P * T * O].reshape(P, T, O))
            np.matmul(conv.AA, a[: P * T * O].reshape(P, -1), out=b[: m * m * T * O].reshape(m * m, -1))

    return _median_time(copies, repeats), _median_time(products, repeats)


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


# ---------------------------------------------------------------------------- report
HEADER = ("| model | batch | engine | median ms | IQR ms | min ms | img/s | × PyTorch | GFLOP/s | % sgemm "
          "| peak RSS MB | NumPy traced MB | rel. error |")


def format_row(r: dict) -> str:
    if "skipped" in r:
        return f"| {r['arch']} | {r['batch']} | {r['engine']} | skipped: {r['skipped']} |" + " |" * 10
    return (f"| {r['arch']} | {r['batch']} | {r['engine']} | {r['median_ms']:.1f} | "
            f"{r['iqr_ms'][0]:.1f}–{r['iqr_ms'][1]:.1f} | {r['min_ms']:.1f} | {r['images_per_s']:.1f} | "
            f"{r['ratio_to_torch']:.2f} | {r['gflops']:.0f} | {100 * r['gemm_fraction']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['traced_mb']:.0f} | {r['relative_error']:.1e} |")


def format_markdown(info: dict, gemm: float, command: str, rows: list[dict], args) -> str:
    lines = ["## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- measured float32 matrix product (2048² NumPy `@`, this run): {gemm:.0f} GFLOP/s",
              f"- load average at start: {args.load_start}, at end: {os.getloadavg()[0]:.2f}", "",
              "## Command", "", f"    {command}", "",
              f"{args.size}×{args.size}, {args.dtype}, backend {args.backend}, {args.threads} threads, "
              f"{args.warmup} warm-up rounds, {args.repeats} timed rounds (round-robin, {args.gap} s idle before each call); "
              f"peak memory: median of {args.memory_repeats} fresh processes per engine.", "",
              HEADER, "|" + "---|" * 13]
    lines += [format_row(r) for r in rows]
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=["resnet18", "resnet50"], choices=sorted(npresnet.ARCHITECTURES))
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for every engine (BLAS, torch, onnxruntime); default: all cores")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--gap", type=float, default=0.2,
                   help="seconds of idle before each timed call, so no engine's spinning threads slow the next")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory probes")
    p.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per engine for the memory median")
    p.add_argument("--markdown", metavar="PATH", help="also write the results as markdown to PATH")
    p.add_argument("--profile", action="store_true",
                   help="instead of the comparison, print where the fast path's time goes (first --arch/--batch)")
    p.add_argument("--smoke", action="store_true", help="one tiny configuration (resnet18, batch 1, 64×64, 1 repeat)")
    p.add_argument("--probe", choices=ENGINES, help=argparse.SUPPRESS)  # internal: memory of one engine
    p.add_argument("--corrupt", choices=ENGINES, help=argparse.SUPPRESS)  # internal: test the refusal
    args = p.parse_args(argv)
    if args.smoke:
        args.arch, args.batch, args.size, args.repeats, args.warmup = ["resnet18"], [1], 64, 1, 0
        args.gap, args.memory_repeats = 0.0, 1
    for name in ("repeats", "threads", "size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0 or min(args.batch) < 1:
        p.error("--warmup must be >= 0 and every --batch >= 1")
    if "torch" not in args.engines:
        args.engines.append("torch")  # the oracle
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe:
        print(json.dumps(probe_memory(args)))
        return 0
    missing = {k: v for k, v in _thread_env(args.threads).items() if os.environ.get(k) != v}
    if missing:  # BLAS reads its thread count at import: re-run with it set, same arguments
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                  {**os.environ, **missing})
    args.load_start = f"{os.getloadavg()[0]:.2f}"
    if args.profile:
        text = profile_fast(args.arch[0], args.batch[0], args.size, args.dtype)
        print(text)
        if args.markdown:
            write_atomically(args.markdown, text)
        return 0
    info = machine_description(args.threads)
    gemm = sgemm_rate(n=512 if args.smoke else 2048)
    print(f"# npresnet benchmark: {info.get('Model name', '?')}, {args.threads} threads, numpy {np.__version__} "
          f"({info['numpy BLAS']}), sgemm {gemm:.0f} GFLOP/s, load {args.load_start}", flush=True)
    print(HEADER, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for arch in args.arch:
            for batch in args.batch:
                for row in run_config(args, arch, batch, gemm, directory, corrupt=args.corrupt):
                    rows.append(row)
                    print(format_row(row), flush=True)
    if args.markdown:
        command = "python benchmarks/bench.py " + " ".join(sys.argv[1:])
        write_atomically(args.markdown, format_markdown(info, gemm, command, rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
