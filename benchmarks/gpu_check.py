"""The one prepared GPU check: the suite on CuPy, the ten architectures against torchvision, the benchmark.

On a machine with one CUDA GPU (written for an H100/H200), from the repository root::

    python benchmarks/gpu_check.py --out gpu_check_out

runs three phases, each under its own time budget (by default 240 + 120 + 150 s, 8.5 minutes; the
suite's is a hard timeout, the other two are checked before each row, so a slow row can run past
them: give the call 10 minutes), and writes a flat directory: ``gpu_check.json`` (everything),
``gpu_check.md`` (the tables), ``suite.log`` (pytest's output).

1. **suite** (``--suite-seconds``, 240): ``pytest -k "cupy and not emulated"``, the tests
   parametrised by the ``backend`` fixture, on real CuPy.
2. **architectures** (``--arch-seconds``, 120): each of the ten ResNets with the same weights
   as torchvision's on the GPU; for the reference ``model(x)`` and the fused path, in float32
   and float64, the relative error ``max|a - b| / max|b|`` against torchvision in float64 on
   the GPU, and for the fused TF32 and float16 modes too (TF32's error against float64 is
   measured only here; float16's is also bounded on the emulation, tests/fast/test_float16.py).
3. **benchmark** (``--bench-seconds``, 150): ResNet-18 and -50 at batch 1, 64 and 256, 224×224:
   the fused path in float32 and float16 storage (against torch float32 with TF32 off) and in
   TF32 (against torch with TF32 on), and the reference path at batch 64, as median seconds
   over round-robin repeats; peak
   device memory of each (CuPy's memory pool after ``free_all_blocks``: it caches every block it
   handed out, so its total is the peak held; torch's ``max_memory_allocated``); and the fused
   forward's kernel launches, counted on the emulated device (:mod:`npresnet._emulation`) for the
   same network and batch (launch counts depend on the shapes, not on the device).

A phase that runs out of time stops where it is and says so in the report; a row that fails
records its error and the check goes on.

``--dry-run`` runs the same code on the emulated CuPy with torch on the CPU, at tiny sizes (one
architecture, batch 1 and 2, 32×32, one quick test as the suite), in seconds; CI runs it
(``tests/project/test_gpu_check.py``) so the script cannot rot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):  # run from a checkout without installing; the harness's own modules beside it
    if path not in sys.path:
        sys.path.insert(0, path)

import npresnet  # noqa: E402
from _engines import build_model, relative_error, set_torch_tf32  # noqa: E402
from _report import write_atomically  # noqa: E402
from npresnet.backend import cupy_unavailable_reason, get_backend  # noqa: E402
from npresnet.fast import fuse  # noqa: E402

ARCHITECTURES = tuple(npresnet.ARCHITECTURES)
FULL = dict(archs=ARCHITECTURES, arch_shape=(2, 3, 64, 64), bench_archs=("resnet18", "resnet50"))
FULL.update(batches=(1, 64, 256), size=224, reference_batch=64, repeats=5)
DRY = dict(archs=("resnet18",), arch_shape=(1, 3, 32, 32), bench_archs=("resnet18",))
DRY.update(batches=(1, 2), size=32, reference_batch=2, repeats=1)
DRY_SUITE = ["tests/emulation/test_emulated_cupy.py", "-k", "a_raw_kernel_launch_runs_its_twin"]
GPU_SUITE = ["tests", "-k", "cupy and not emulated"]


class Phase:
    """A time budget: ``phase.left()`` seconds remain; ``phase.over()`` once they are spent."""

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def over(self) -> bool:
        return self.left() <= 0


class Device:
    """Where the check runs: the array backend for npresnet and the torch device, with their sync."""

    def __init__(self, dry_run: bool):
        import torch

        self.backend = "cupy-emulated" if dry_run else "cupy"
        self.xp = get_backend(self.backend)
        self.torch = torch.device("cpu" if dry_run else "cuda")
        self.dry_run = dry_run

    def sync(self):
        self.xp.cuda.Device().synchronize()
        if self.torch.type == "cuda":
            import torch

            torch.cuda.synchronize()

    def describe(self) -> dict:
        import torch

        info = {"backend": self.backend, "torch": torch.__version__, "python": platform.python_version()}
        if self.torch.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name()
            info["cupy"] = self.xp.__version__
        return info


# --------------------------------------------------------------------------- phase 1: the suite
def run_suite(out_dir: str, dry_run: bool, seconds: float) -> dict:
    """pytest on the CuPy-parametrised tests; the log goes to ``suite.log``, the counts to the report."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "0"]
    cmd += DRY_SUITE if dry_run else GPU_SUITE
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(seconds, 1))
        log, status = done.stdout + done.stderr, ("passed" if done.returncode == 0 else f"rc {done.returncode}")
    except subprocess.TimeoutExpired as exc:
        log, status = (exc.stdout or b"").decode(errors="replace"), f"stopped at its {seconds:.0f} s budget"
    write_atomically(os.path.join(out_dir, "suite.log"), " ".join(cmd) + "\n" + log)
    summary = [line for line in log.splitlines() if " passed" in line or " failed" in line or " error" in line]
    return {"command": " ".join(cmd[1:]), "status": status, "summary": summary[-1] if summary else ""}


# --------------------------------------------------------------------------- phase 2: architectures
def _torch_logits(tv, x, device, tf32=False):
    import torch

    set_torch_tf32(tf32)
    with torch.inference_mode():
        return tv(torch.from_numpy(x).to(device)).cpu().numpy()


def _torchvision(arch: str, model, device):
    """torchvision's ``arch`` in ``model``'s dtype with ``model``'s weights, on ``device``, in eval mode.

    Cast before loading: ``load_state_dict`` copies into the parameters' dtype, so loading float64
    weights into a float32 model would round them."""
    import torch
    import torchvision

    tv = getattr(torchvision.models, arch)(weights=None).to(getattr(torch, model.dtype.name))
    tv.load_state_dict({k: torch.from_numpy(npresnet.to_numpy(v).copy()) for k, v in model.state_dict().items()})
    return tv.to(device).eval()


def check_architectures(device: Device, sizes: dict, phase: Phase) -> list[dict]:
    """Errors of the reference and fused paths (float32, float64, TF32, float16) against torchvision in float64."""
    rows = []
    for arch in sizes["archs"]:
        if phase.over():
            rows.append({"arch": arch, "status": "not run: phase time budget spent"})
            continue
        x = np.random.default_rng(0).standard_normal(sizes["arch_shape"])
        model64 = build_model(arch, "float64")
        tv64 = _torchvision(arch, model64, device.torch)
        exact = _torch_logits(tv64, x, device.torch)
        row = {"arch": arch, "status": "ok"}
        try:
            row["torch-float32"] = relative_error(
                _torch_logits(tv64.float(), x.astype(np.float32), device.torch), exact
            )
            for dtype in ("float64", "float32"):  # the same weights: the float64 model's, rounded once
                model = build_model(arch, "float64").to(device.backend, dtype=dtype)
                xd = npresnet.to_backend(x.astype(dtype), device.backend)
                row[f"reference-{dtype}"] = relative_error(npresnet.to_numpy(model(xd)), exact)
                row[f"fused-{dtype}"] = relative_error(npresnet.to_numpy(fuse(model)(xd)), exact)
            row["fused-tf32"] = relative_error(npresnet.to_numpy(fuse(model, precision="tf32")(xd)), exact)
            row["fused-float16"] = relative_error(npresnet.to_numpy(fuse(model, precision="float16")(xd)), exact)
        except Exception as exc:  # recorded, and the check goes on to the next architecture
            row["status"] = f"error: {type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- phase 3: benchmark
def _median_seconds(run, device: Device, repeats: int) -> float:
    run()  # warm-up: compiles kernels, grows buffers and pools
    device.sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        device.sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _cupy_peak(device: Device, run) -> int:
    pool = device.xp.get_default_memory_pool()
    pool.free_all_blocks()
    run()
    device.sync()
    return int(pool.total_bytes())


def _torch_peak(device: Device, run) -> int | None:
    import torch

    if device.torch.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())


def _emulated_launches(arch: str, batch: int, size: int) -> int:
    """Launches of one fused float32 forward on the emulated device, at the benchmark's shape."""
    from npresnet._emulation import count

    model = npresnet.ARCHITECTURES[arch](rng=0).to("cupy-emulated")
    fused = fuse(model, workspace_bytes=1 << 62)  # one chunk per convolution, as on a large device
    x = npresnet.to_backend(np.zeros((batch, 3, size, size), np.float32), "cupy-emulated")
    with count() as c:
        fused(x)
    return c.launches


def benchmark(device: Device, sizes: dict, phase: Phase) -> list[dict]:
    """Median seconds, ratios to torch and peak device memory; one row per (arch, batch, mode)."""
    import torch

    rows = []
    for arch in sizes["bench_archs"]:
        model = build_model(arch, "float32")
        tv = _torchvision(arch, model, device.torch)
        model = model.to(device.backend)
        launches = _emulated_launches(arch, 1, 32)
        for batch in sizes["batches"]:
            modes = [("fused", "float32", False), ("fused", "tf32", True), ("fused", "float16", False)]
            if batch == sizes["reference_batch"]:
                modes.append(("reference", "float32", False))
            x = np.random.default_rng(1).standard_normal((batch, 3, sizes["size"], sizes["size"]), dtype=np.float32)
            xd, xt = npresnet.to_backend(x, device.backend), torch.from_numpy(x).to(device.torch)
            for path, precision, tf32 in modes:
                if phase.over():
                    rows.append(
                        {"arch": arch, "batch": batch, "path": path, "precision": precision, "status": "not run"}
                    )
                    continue
                row = {"arch": arch, "batch": batch, "path": path, "precision": precision, "status": "ok"}
                try:
                    engine = fuse(model, precision=precision) if path == "fused" else model

                    def ours(engine=engine, xd=xd):
                        return engine(xd)

                    def theirs(tf32=tf32, tv=tv, xt=xt):
                        set_torch_tf32(tf32)
                        with torch.inference_mode():
                            return tv(xt)

                    row["seconds"] = _median_seconds(ours, device, sizes["repeats"])
                    row["torch_seconds"] = _median_seconds(theirs, device, sizes["repeats"])
                    row["ratio"] = row["seconds"] / row["torch_seconds"]
                    row["peak_bytes"] = _cupy_peak(device, ours)
                    row["torch_peak_bytes"] = _torch_peak(device, theirs)
                    if path == "fused":
                        row["launches"] = launches if batch == 1 else None
                except Exception as exc:
                    row["status"] = f"error: {type(exc).__name__}: {exc}"
                rows.append(row)
    return rows


# --------------------------------------------------------------------------- report
def _fmt(value, spec=".2e"):
    return "—" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({'dry run, emulated device' if report['dry_run'] else 'GPU'})", ""]
    lines += [f"Command: `{report['command']}`", "", f"Machine: {json.dumps(report['machine'])}", ""]
    suite = report["suite"]
    lines += ["## Suite on CuPy", "", f"`{suite['command']}`: {suite['status']}. {suite['summary']}", ""]
    cols = ["torch-float32", "reference-float32", "fused-float32", "fused-tf32", "fused-float16"]
    cols += ["reference-float64", "fused-float64"]
    lines += ["## Architectures: max|a − b| / max|b| against torchvision float64 on the device", ""]
    lines += ["| arch | " + " | ".join(cols) + " | status |", "|---" * (len(cols) + 2) + "|"]
    for r in report["architectures"]:
        lines.append(f"| {r['arch']} | " + " | ".join(_fmt(r.get(c)) for c in cols) + f" | {r['status']} |")
    lines += ["", "## Benchmark against torch on the same device (median seconds; ratio = ours / torch)", ""]
    lines += [
        "| arch | batch | path | precision | seconds | torch | ratio | peak MiB | torch MiB | launches | status |"
    ]
    lines += ["|---" * 11 + "|"]
    for r in report["benchmark"]:
        mib = [None if r.get(k) is None else r[k] / 2**20 for k in ("peak_bytes", "torch_peak_bytes")]
        lines.append(
            f"| {r['arch']} | {r['batch']} | {r['path']} | {r['precision']} | {_fmt(r.get('seconds'), '.4f')} | "
            f"{_fmt(r.get('torch_seconds'), '.4f')} | {_fmt(r.get('ratio'), '.2f')} | {_fmt(mib[0], '.0f')} | "
            f"{_fmt(mib[1], '.0f')} | {_fmt(r.get('launches'), 'd')} | {r['status']} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for gpu_check.json, gpu_check.md, suite.log")
    parser.add_argument("--dry-run", action="store_true", help="the emulated device, tiny sizes, seconds")
    parser.add_argument("--suite-seconds", type=float, default=240.0)
    parser.add_argument("--arch-seconds", type=float, default=120.0)
    parser.add_argument("--bench-seconds", type=float, default=150.0)
    args = parser.parse_args(argv)
    for name in ("suite_seconds", "arch_seconds", "bench_seconds"):
        if not 0 < getattr(args, name) <= 480:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 480], got {getattr(args, name)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.dry_run and "cupy" not in npresnet.available_backends():
        print(f"gpu_check: no usable GPU ({cupy_unavailable_reason()}); try --dry-run", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    device, sizes = Device(args.dry_run), (DRY if args.dry_run else FULL)
    report = {"command": " ".join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]]), "dry_run": args.dry_run}
    report["machine"] = device.describe()
    report["suite"] = run_suite(args.out, args.dry_run, args.suite_seconds)
    report["architectures"] = check_architectures(device, sizes, Phase(args.arch_seconds))
    report["benchmark"] = benchmark(device, sizes, Phase(args.bench_seconds))
    write_atomically(os.path.join(args.out, "gpu_check.json"), json.dumps(report, indent=1, default=str) + "\n")
    write_atomically(os.path.join(args.out, "gpu_check.md"), markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
