"""Images per second: single-process ``npresnet predict`` against the Dask path (``npresnet embed``).

    python benchmarks/dask_throughput.py                     # ResNet-18, 256 generated 224×224 JPEGs
    python benchmarks/dask_throughput.py --images 512 --batch-sizes 4 8 16 32 64
    python benchmarks/dask_throughput.py --smoke             # seconds: a few tiny images, every row once

Every configuration does the whole job, images decoded from JPEG files included:

1. ``predict``: ``npresnet.cli.main(["predict", ...])`` in a fresh process (BLAS on every core),
   timed inside it after the imports, stdout discarded; its time includes reading the weights,
   as a user's run does. A separate process keeps it away from the clusters' event loops.
   Run again with one BLAS thread: W single-threaded workers can do at most W times that,
   which bounds what W workers can gain over one worker that has every core;
2. ``dask, W workers``: :func:`npresnet.distributed.embed` writing features (Zarr) and predictions
   (Parquet) on a local cluster of W single-threaded worker processes, each with
   ``cores // W`` BLAS threads, started *before* the clock (its start-up is reported apart);
   the time includes reading and checking the weights, sending them to the workers, building
   the model there, and every write;
3. throughput against the images per task (``--batch-sizes``), with the most workers;
4. reading, decoding and preprocessing alone, once per round in this process: how much of
   the work is not the network.

CPU ms/image adds the CPU time of every process of a run (predict's process; this process and
every worker process for dask), all threads: the work a run costs, which a busy machine disturbs
far less than the wall-clock rate (OpenBLAS threads that spin while waiting count too, so compare
1-thread runs with 1-thread runs).

Configurations run round-robin ``--repeats`` times. Each rate is the median over the rounds with
its range; each ratio is the median of the per-round ratios (the two runs of a round are seconds
apart, so a slow drift of a shared machine cancels). Ratios are only meaningful within one run.
Targets (issue 13): 1 worker within 10% of predict; 2 workers ≥ 1.6× of 1 worker.
Weights are seeded (no download); the images are smooth random JPEGs (decoding does real work).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

import npresnet  # noqa: E402
from npresnet.distributed import embed  # noqa: E402
from npresnet.distributed.cluster import connect, usable_cores  # noqa: E402


def make_images(folder, count, size, seed=0):
    """``count`` JPEGs of ``size``×``size``: upsampled noise, so they compress and decode like photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        path = os.path.join(folder, f"img{i:05d}.jpg")
        image.save(path, quality=90)
        paths.append(path)
    return paths


_PREDICT_DRIVER = """
import contextlib, io, json, sys, time
from npresnet import cli
start, cpu = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(io.StringIO()):
    status = cli.main(json.loads(sys.argv[1]))
print(json.dumps([status, time.perf_counter() - start, time.process_time() - cpu]))
"""


def time_predict(paths, arch, weights, batch_size, size_args, blas_threads=None):
    """``npresnet predict`` in a fresh process, timed inside it (imports excluded), away from the clusters.

    ``blas_threads``: limit its BLAS to this many threads (default: BLAS's own choice, every core)."""
    argv = [
        "predict",
        *paths,
        "--arch",
        arch,
        "--weights",
        weights,
        "--batch-size",
        str(batch_size),
        "--format",
        "json",
        "--resize-size",
        str(size_args["resize_size"]),
        "--crop-size",
        str(size_args["crop_size"]),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    if blas_threads is not None:
        env.update({name: str(blas_threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    proc = subprocess.run(
        [sys.executable, "-c", _PREDICT_DRIVER, json.dumps(argv)], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"predict failed: {proc.stderr[-2000:]}")
    status, elapsed, cpu = json.loads(proc.stdout.strip().splitlines()[-1])
    if status != 0:
        raise RuntimeError(f"predict failed: {proc.stderr[-2000:]}")
    return elapsed, cpu


def time_decode(paths, size_args):
    """Seconds to read, decode and preprocess every image once, in this process (one thread)."""
    from npresnet.preprocess import load_and_preprocess

    start = time.perf_counter()
    for path in paths:
        load_and_preprocess(path, size_args["resize_size"], size_args["crop_size"])
    return time.perf_counter() - start


def _cluster_cpu(client):
    """CPU seconds used so far by this process and by every worker process of ``client``'s cluster."""
    return time.process_time() + sum(client.run(time.process_time).values())


def time_embed(client, paths, arch, weights, batch_size, workdir, size_args):
    """``(wall seconds, CPU seconds of this process and the workers)`` of one :func:`embed` run."""
    out = tempfile.mkdtemp(dir=workdir)
    cpu = _cluster_cpu(client)
    start = time.perf_counter()
    result = embed(
        paths,
        arch,
        weights,
        features=os.path.join(out, "f.zarr"),
        predictions=os.path.join(out, "p.parquet"),
        client=client,
        batch_size=batch_size,
        **size_args,
    )
    elapsed = time.perf_counter() - start
    cpu = _cluster_cpu(client) - cpu
    shutil.rmtree(out)
    if result.errors or result.computed != result.chunks:
        raise RuntimeError(f"embed did not process every image: {result}")
    return elapsed, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224, help="side of the generated JPEGs (default 224)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per task / per predict batch")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="*",
        default=[4, 8, 16, 32, 64],
        help="images per task for the scaling table (empty: skip it)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts (default 1 .. cores)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a few small images, one repeat: seconds")
    args = parser.parse_args(argv)
    size_args = {"resize_size": 256, "crop_size": 224}
    if args.smoke:
        args.images, args.size, args.repeats, args.batch_sizes = 12, 48, 1, [4]
        args.batch_size = 4
        size_args = {"resize_size": 40, "crop_size": 32}
    cores = usable_cores()
    worker_counts = args.workers or list(range(1, cores + 1))

    workdir = tempfile.mkdtemp(prefix="npresnet-dask-bench-")
    try:
        weights = os.path.join(workdir, f"{args.arch}.npz")
        npresnet.save_weights(npresnet.ARCHITECTURES[args.arch](rng=0).state_dict(), weights)
        paths = make_images(workdir, args.images, args.size)

        clusters, startup = {}, {}
        with contextlib.ExitStack() as stack:
            for w in worker_counts:
                t0 = time.perf_counter()
                clusters[w] = stack.enter_context(connect(n_workers=w))
                clusters[w].wait_for_workers(w)
                startup[w] = time.perf_counter() - t0
            runs = [("predict", None, args.batch_size), ("predict", 1, args.batch_size)]
            runs += [("dask", w, args.batch_size) for w in worker_counts]
            runs += [("dask", max(worker_counts), b) for b in args.batch_sizes if b != args.batch_size]
            samples, cpu = {}, {}
            for _ in range(args.repeats):
                samples.setdefault("decode", []).append(time_decode(paths, size_args))
                for kind, w, b in runs:
                    if kind == "predict":  # w: BLAS threads (None: all)
                        t, c = time_predict(paths, args.arch, weights, b, size_args, blas_threads=w)
                    else:
                        t, c = time_embed(clusters[w], paths, args.arch, weights, b, workdir, size_args)
                    samples.setdefault((kind, w, b), []).append(t)
                    cpu.setdefault((kind, w, b), []).append(c)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    n = args.images
    predict = ("predict", None, args.batch_size)
    one = ("dask", 1, args.batch_size) if 1 in worker_counts else None

    def spread(values, digits, unit="", note=""):
        """``median (min–max)``, each with ``digits`` decimals, ``unit`` after the median, ``note`` in the brackets."""
        low, high = min(values), max(values)
        return f"{statistics.median(values):.{digits}f}{unit} ({low:.{digits}f}–{high:.{digits}f}{note})"

    def rate(key):
        """Median images/s of ``key`` and its range over the repeats."""
        return spread([n / t for t in samples[key]], 1)

    def ratio(key, base):
        """Median, over the rounds, of the speed ratio key / base within a round, with its range.

        Pairing each round's two runs cancels the slow drifts of a shared machine."""
        if base is None:
            return "–"
        return spread([b / k for k, b in zip(samples[key], samples[base])], 2, "×")  # times: base / key = speed

    print(
        f"## {args.arch}, {n} JPEGs of {args.size}×{args.size}, preprocessing {size_args}, "
        f"{args.repeats} round-robin rounds: medians (range)\n"
    )
    print(
        f"Machine: {platform.processor() or platform.machine()}, {cores} usable cores, "
        f"Python {platform.python_version()}, NumPy {np.__version__}\n"
    )

    def cpu_ms(key):
        """Median CPU milliseconds per image (every process of the run, all threads) and its range."""
        return spread([1000 * c / n for c in cpu[key]], 1)

    print("| run | images/task | images/s | vs predict | vs 1 worker | CPU ms/image | cluster start (s) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| predict (one process) | {args.batch_size} | {rate(predict)} | 1.00× | – | {cpu_ms(predict)} | – |")
    single = ("predict", 1, args.batch_size)
    print(
        f"| predict, 1 BLAS thread | {args.batch_size} | {rate(single)} | {ratio(single, predict)} | – | "
        f"{cpu_ms(single)} | – |"
    )
    for w in worker_counts:
        key = ("dask", w, args.batch_size)
        print(
            f"| dask, {w} worker{'s' if w > 1 else ''} | {args.batch_size} | {rate(key)} | {ratio(key, predict)} | "
            f"{ratio(key, one)} | {cpu_ms(key)} | {startup[w]:.1f} |"
        )
    decode = [1000 * t / n for t in samples["decode"]]
    network = [1000 * t / n for t in samples[predict]]
    print(
        f"\nPer image: reading, decoding and preprocessing {spread(decode, 1, ' ms', ', one thread')}; "
        f"all of predict {spread(network, 0, ' ms')}."
    )
    top = max(worker_counts)
    if top > 1:
        bound = [top * t / s1 for t, s1 in zip(samples[predict], samples[single])]  # speed: top × 1-thread / predict
        reached = [s1 / (top * t) for s1, t in zip(samples[single], samples["dask", top, args.batch_size])]
        over_one = ""
        if one is not None:  # the same ceiling against the 1-worker run of each round
            ceiling_one = [top * t / s1 for t, s1 in zip(samples[one], samples[single])]
            over_one = f" and {spread(ceiling_one, 2, '×')} of 1 worker"
        print(
            f"\nCeiling: {top} single-threaded processes do at most {top}× the 1-thread predict, "
            f"{spread(bound, 2, '×')} of predict with every core{over_one}. {top} workers reached "
            f"{spread(reached, 2, '×')} of that ceiling."
        )
    if args.batch_sizes:
        w = max(worker_counts)
        print(f"\nThroughput against images per task (dask, {w} workers):\n")
        print("| images/task | images/s |")
        print("|---|---|")
        for b in sorted(set(args.batch_sizes) | {args.batch_size}):
            print(f"| {b} | {rate(('dask', w, b))} |")
    names = {k: "decode only" if k == "decode" else f"{k[0]} w={k[1]} b={k[2]}" for k in samples}
    print("\nSeconds per run, in round order:", {names[k]: [round(t, 2) for t in v] for k, v in samples.items()})
    return 0


if __name__ == "__main__":
    logging.getLogger("distributed").setLevel(logging.ERROR)
    sys.exit(main())
