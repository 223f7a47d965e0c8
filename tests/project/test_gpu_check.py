"""benchmarks/gpu_check.py keeps working: its dry run, on the emulated device, runs every phase and reports.

The GPU check runs only when a GPU is lent, rarely; its dry run is the same code on the
emulated CuPy at tiny sizes, so a change that breaks the check breaks this test first. The
timings are not asserted; the errors and launch counts are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from npresnet.backend import available_backends

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "benchmarks", "gpu_check.py")
F64_TOL = 1e-10  # as tests/fast/test_fuse.py
FLOAT32_REFUSAL = 1e-3  # the benchmark harness's float32 tolerance (benchmarks/_engines.py TOLERANCE)


def _run(*args, timeout=480):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, CHECK, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def test_dry_run_runs_every_phase_and_writes_a_flat_report(tmp_path):
    out = tmp_path / "out"
    proc = _run("--dry-run", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(os.listdir(out))
    assert files == ["gpu_check.json", "gpu_check.md", "suite.log"]  # flat, within the device tool's 8 files
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] and report["machine"]["backend"] == "cupy-emulated"
    assert report["suite"]["status"] == "passed" and "1 passed" in report["suite"]["summary"]

    (arch,) = report["architectures"]
    assert arch["status"] == "ok", arch
    assert arch["reference-float64"] < F64_TOL and arch["fused-float64"] < F64_TOL
    for key in ("reference-float32", "fused-float32", "fused-tf32"):
        assert 0 < arch[key] < FLOAT32_REFUSAL, (key, arch[key])
    assert 0 < arch["fused-float16"] < float("inf")  # its bound is checked by tests/fast/test_float16.py

    rows = report["benchmark"]
    modes = {(r["batch"], r["path"], r["precision"]) for r in rows}
    fused = {(b, "fused", p) for b in (1, 2) for p in ("float32", "tf32", "float16")}
    assert modes == fused | {(2, "reference", "float32")}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["seconds"] > 0 and r["torch_seconds"] > 0 and r["ratio"] > 0
    # ResNet-18's 20 convolutions all gather (none is a stride-1 1×1): 1 input copy + 3 per
    # convolution + max pool + the head's 3 (average pool, fc GEMM, fc bias).
    assert {r["launches"] for r in rows if r["batch"] == 1} == {1 + 3 * 20 + 1 + 3}

    table = (out / "gpu_check.md").read_text()
    assert "## Architectures" in table and "## Benchmark" in table and "| resnet18 | 2 | reference |" in table
    assert "gpu_check.py --dry-run" in table


def test_a_bad_budget_is_refused(tmp_path):
    proc = _run("--dry-run", "--out", str(tmp_path / "out"), "--suite-seconds", "0")
    assert proc.returncode == 2 and "--suite-seconds must be in (0, 480]" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif("cupy" in available_backends(), reason="a GPU is usable here: the full check would run")
def test_without_a_gpu_the_full_check_refuses_and_points_to_the_dry_run(tmp_path):
    proc = _run("--out", str(tmp_path / "gpu"))
    assert proc.returncode == 2 and "no usable GPU" in proc.stderr and "--dry-run" in proc.stderr
    assert not (tmp_path / "gpu").exists()
