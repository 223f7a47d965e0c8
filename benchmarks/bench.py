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

``--profile`` instead prints where the fused path's time goes, from the library's own hook
(``FusedResNet.profile``). This file is the harness (arguments, checks, round-robin timing);
the pieces live beside it: ``_machine.py`` (machine description), ``_engines.py`` (the
engines), ``_memory.py`` (the peak-memory probe), ``_profile.py``, ``_report.py``.

Limits of the memory figure: RSS counts pages touched, so memory an allocator keeps
cached from before the reset is invisible (hence a fresh process per engine), and
thread stacks and library arenas count. It is a fair comparison between engines, not an
exact byte count of arrays.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):  # run from a checkout without installing; the harness's own modules beside it
    if path not in sys.path:
        sys.path.insert(0, path)

import npresnet  # noqa: E402
from _engines import (  # noqa: E402
    FAST_VARIANTS,
    TF32_ENGINES,
    TF32_TOLERANCE,
    TOLERANCE,
    build_model,
    make_engines,
    relative_error,
)
from _machine import machine_description, sgemm_rate  # noqa: E402
from _memory import _thread_env, measure_memory, probe_memory  # noqa: E402
from _profile import profile_fast  # noqa: E402
from _report import HEADER, format_markdown, format_row, write_atomically  # noqa: E402

ENGINES = ("reference", "fast", "torch", "torch-tf32", "onnxruntime")
ALL_ENGINES = ENGINES + tuple(FAST_VARIANTS)  # the fast path's winograd variants only when asked for


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
    engines, skipped = make_engines(
        arch, model, x.shape, args.dtype, args.threads, args.engines, directory, args.backend
    )
    if "torch" not in engines:
        raise SystemExit(f"PyTorch is needed as the oracle and the baseline: {skipped.get('torch')}")
    if args.backend != "numpy":
        x_backend = npresnet.to_backend(x, args.backend)
        numpy_engines = {"torch", "torch-tf32", "onnxruntime"}  # they move their own input

        def on_device(run):  # the CuPy engines always get the device copy of the input
            return lambda _x: run(x_backend)

        engines = {name: run if name in numpy_engines else on_device(run) for name, run in engines.items()}
    expected = engines["torch"](x)
    for name, run in engines.items():
        got = run(x)
        if name == corrupt:  # the harness's own test: a wrong answer must be refused
            got = got + 0.1 * np.abs(expected).max()
        error = relative_error(got, expected)
        tolerance = TF32_TOLERANCE if name in TF32_ENGINES else TOLERANCE[args.dtype]
        if not error <= tolerance:
            raise SystemExit(
                f"REFUSED: {name} logits disagree with PyTorch's for {arch} batch {batch} "
                f"({error:.2e} > {tolerance:.0e}); not timing a wrong answer"
            )
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
        rows.append(
            {
                "arch": arch,
                "batch": batch,
                "size": args.size,
                "dtype": args.dtype,
                "engine": name,
                "median_ms": 1e3 * median,
                "iqr_ms": (1e3 * q1, 1e3 * q3),
                "min_ms": 1e3 * float(ts.min()),
                "images_per_s": batch / median,
                "ratio_to_torch": median / torch_median,
                "gflops": 2 * macs / median / 1e9,
                "gemm_fraction": 2 * macs / median / 1e9 / gemm_gflops,
                "macs": macs,
                "peak_rss_mb": mem.get("peak_rss_bytes", float("nan")) / 2**20,
                "peak_device_mb": mem.get("peak_device_bytes", float("nan")) / 2**20,
                "traced_mb": (
                    mem["traced_peak_bytes"] / 2**20
                    if name in ("reference", "fast") and "traced_peak_bytes" in mem
                    else float("nan")
                ),
                "relative_error": relative_error(engines[name](x), expected),
            }
        )
    for name, why in skipped.items():
        if name in args.engines:
            rows.append({"arch": arch, "batch": batch, "engine": name, "skipped": why})
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=["resnet18", "resnet50"], choices=sorted(npresnet.ARCHITECTURES))
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument(
        "--engines",
        nargs="+",
        default=None,
        choices=ALL_ENGINES,
        help="default: all but the fast-* variants; torch-tf32 (a GPU precision mode) only with --backend cupy",
    )
    p.add_argument(
        "--winograd",
        nargs="+",
        default=[],
        choices=["F4", "F2", "auto", "im2col"],
        help="also time the fast path with each of these winograd choices (engines fast-F4, fast-F2, "
        "fast-auto, fast-im2col) beside the default 'fast'; with --profile, profile the first one",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for every engine (BLAS, torch, onnxruntime); default: all cores",
    )
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--gap",
        type=float,
        default=0.2,
        help="seconds of idle before each timed call, so no engine's spinning threads slow the next",
    )
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory probes")
    p.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per engine for the memory median")
    p.add_argument("--markdown", metavar="PATH", help="also write the results as markdown to PATH")
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of the comparison, print where the fast path's time goes (first --arch/--batch)",
    )
    p.add_argument("--smoke", action="store_true", help="one tiny configuration (resnet18, batch 1, 64×64, 1 repeat)")
    p.add_argument("--probe", choices=ALL_ENGINES, help=argparse.SUPPRESS)  # internal: memory of one engine
    p.add_argument("--corrupt", choices=ALL_ENGINES, help=argparse.SUPPRESS)  # internal: test the refusal
    args = p.parse_args(argv)
    if args.smoke:
        args.arch, args.batch, args.size, args.repeats, args.warmup = ["resnet18"], [1], 64, 1, 0
        args.gap, args.memory_repeats = 0.0, 1
    for name in ("repeats", "threads", "size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0 or min(args.batch) < 1:
        p.error("--warmup must be >= 0 and every --batch >= 1")
    if args.engines is None:
        args.engines = [e for e in ENGINES if args.backend == "cupy" or e != "torch-tf32"]
    args.engines += [f"fast-{w}" for w in args.winograd if f"fast-{w}" not in args.engines]
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
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], {**os.environ, **missing})
    args.load_start = f"{os.getloadavg()[0]:.2f}"
    if args.profile:
        winograd = FAST_VARIANTS[f"fast-{args.winograd[0]}"] if args.winograd else True
        text = profile_fast(args.arch[0], args.batch[0], args.size, args.dtype, winograd=winograd)
        print(text)
        if args.markdown:
            write_atomically(args.markdown, text)
        return 0
    info = machine_description(args.threads)
    gemm = sgemm_rate(n=512 if args.smoke else 2048)
    print(
        f"# npresnet benchmark: {info.get('Model name', '?')}, {args.threads} threads, numpy {np.__version__} "
        f"({info['numpy BLAS']}), sgemm {gemm:.0f} GFLOP/s, load {args.load_start}",
        flush=True,
    )
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
