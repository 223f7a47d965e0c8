"""The benchmark harness keeps working: its smoke mode runs end to end, and it refuses wrong answers.

Not a timed test: only that every engine is checked, timed and reported, and that the
markdown table is written. The timings themselves are not asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks", "bench.py")


def _run(*args, timeout=300):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, BENCH, "--smoke", "--threads", "1", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_smoke_runs_every_engine_and_writes_markdown(tmp_path):
    table = tmp_path / "results.md"
    proc = _run("--markdown", str(table))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| resnet18 | 1 |")]
    engines = {row.split("|")[3].strip() for row in rows}
    assert {"reference", "fast", "torch"} <= engines, proc.stdout
    text = table.read_text()
    assert "## Machine" in text and "GFLOP/s" in text and "bench.py --smoke" in text
    for row in rows:
        assert row in text
        if "skipped" not in row:
            cells = [c.strip() for c in row.split("|")[1:-1]]
            assert float(cells[3]) > 0  # a median time was measured
            assert float(cells[-1]) <= 1e-3  # and the answer it timed was checked


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_a_wrong_answer_is_refused_not_timed(engine):
    proc = _run("--corrupt", engine, "--no-memory")
    assert proc.returncode != 0
    assert f"REFUSED: {engine}" in proc.stderr
    assert f"| resnet18 | 1 | {engine} |" not in proc.stdout


def test_each_winograd_choice_is_its_own_checked_engine():
    """``--winograd F4 F2 im2col`` times the fast path with each choice beside the default, every one
    checked against PyTorch first; ``--profile --winograd F2`` profiles that choice."""
    proc = _run("--winograd", "F4", "F2", "im2col", "--engines", "fast", "--no-memory")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| resnet18 | 1 |")]
    engines = {row.split("|")[3].strip(): row for row in rows}
    assert {"fast", "fast-F4", "fast-F2", "fast-im2col", "torch"} <= set(engines), proc.stdout
    for name in ("fast-F4", "fast-F2", "fast-im2col"):
        assert float(engines[name].split("|")[-2]) <= 1e-3  # checked before it was timed
    proc = _run("--profile", "--winograd", "F2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "winograd=F2" in proc.stdout and "| winograd |" in proc.stdout


# ---------------------------------------------------------------------------- compare_commits.py
COMPARE = os.path.join(ROOT, "benchmarks", "compare_commits.py")
OLD = "283ec7c"  # compare_commits.DEFAULT_OLD: the commit before issue #19's refactor


def _has_commit(commit: str) -> bool:
    try:
        proc = subprocess.run(["git", "-C", ROOT, "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    except OSError:  # no git
        return False
    return proc.returncode == 0


needs_history = pytest.mark.skipif(
    not _has_commit(OLD), reason=f"commit {OLD} is not in this clone (a shallow clone?); compare_commits needs it"
)


def _compare(*args, timeout=300):
    return subprocess.run(
        [sys.executable, COMPARE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        cwd=ROOT,
    )


@needs_history
def test_compare_commits_smoke_times_both_versions_and_writes_markdown(tmp_path):
    """Old and new versions, each in its own process: the reference and the fast path (new F4 and F2 against
    the old fuse), checked to agree before they are timed, with the machine and the command in the file."""
    table = tmp_path / "compare.md"
    proc = _compare("--smoke", "--markdown", str(table))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {row.split("|")[3].strip(): row for row in proc.stdout.splitlines() if row.startswith("| resnet18 | 1 |")}
    assert set(rows) == {"reference", "fast, new F4", "fast, new F2"}, proc.stdout
    assert "fuse(model): F2" in rows["fast, new F4"] and "winograd='F4'" in rows["fast, new F4"]
    text = table.read_text()
    assert "## Machine" in text and "compare_commits.py --smoke" in text and f"old: {OLD}" in text
    for row in rows.values():
        assert row in text
        cells = [c.strip() for c in row.split("|")[1:-1]]
        cpu_old, cpu_new = (float(c.split()[0]) for c in cells[5:7])
        assert cpu_old > 0 and cpu_new > 0  # a CPU time was measured in each version
        assert float(cells[-1]) <= 1e-4  # and the two versions' logits were checked to agree


@needs_history
def test_compare_commits_refuses_versions_that_disagree():
    proc = _compare("--smoke", "--engines", "fast", "--winograd", "F2", "--corrupt", "fast")
    assert proc.returncode != 0
    assert "REFUSED: fast, new F2" in proc.stderr
    assert "| resnet18 | 1 | fast" not in proc.stdout


def test_compare_commits_names_a_missing_commit():
    proc = _compare("--smoke", "--old", "0" * 40)
    assert proc.returncode != 0
    assert f"commit {'0' * 40} is not in this repository" in proc.stderr
