"""Fault injection: ``npresnet embed`` on a real multi-process cluster through worker, scheduler and client kills.

The test starts a Dask scheduler and two nanny-managed worker processes on loopback, runs the
``embed`` command against them, and at seeded random points (counted in finished chunks) kills
a worker process (SIGKILL; Dask reruns its tasks), the scheduler (SIGKILL; the command fails and
the cluster is started again) and the command itself (SIGINT, then SIGKILL if it lingers). Then
it resumes until the command completes. Oracle: an uninterrupted run of the same command on the
same cluster, compared bit for bit, and every row present exactly once in its place.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy
import pytest

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")
zarr = pytest.importorskip("zarr")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("torch")

from _helpers import distributed as shared  # noqa: E402

images, torch_model = shared.images, shared.torch_model  # module-scoped fixtures
SEED = 20261203
# workers and commands alike: one BLAS thread, so that every run computes the same bits
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler process and a ``dask worker`` process with two nannies, on 127.0.0.1."""

    def __init__(self, log_dir):
        self.port, self.log_dir, self.procs = _free_port(), log_dir, []

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self):
        common = ["--no-dashboard"]
        log = open(self.log_dir / "cluster.log", "ab")  # noqa: SIM115 - closed with the process
        scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
        self.scheduler = subprocess.Popen(
            [*scheduler, "--port", str(self.port), *common], env=ENV, stdout=log, stderr=log
        )
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nworkers", "2"]
        worker += ["--nthreads", "1", "--host", "127.0.0.1", *common]
        self.workers = subprocess.Popen(worker, env=ENV, stdout=log, stderr=log)
        self.procs += [self.scheduler, self.workers]
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(self.address, timeout="2s") as client:
                    if len(client.scheduler_info()["workers"]) == 2:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, (self.log_dir / "cluster.log").read_text()[-3000:]
            time.sleep(0.2)

    def worker_pids(self):
        children = psutil.Process(self.workers.pid).children(recursive=True)
        return [p.pid for p in children if "resource_tracker" not in " ".join(p.cmdline())]

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                proc.kill()
                proc.wait()
        self.procs = []


def finished_chunks(feats) -> int:
    """Chunks with their done flag set (zarr's temporary files not counted)."""
    flags = feats / "done" / "c"
    return len([f for f in os.listdir(flags) if not f.startswith(".")]) if flags.is_dir() else 0


def test_a_run_through_worker_scheduler_and_client_kills_equals_an_uninterrupted_one(tmp_path, torch_model, images):
    _, weights = torch_model
    paths, bad = images[0][:80], images[1]  # 40 chunks of 2, two holding the three unreadable images
    n_chunks = len(paths) // 2
    rng = random.Random(SEED)
    # the finished-chunk counts at which each fault strikes, in order
    faults = sorted(rng.sample(range(4, n_chunks - 8), 3))
    kinds = ["worker", "scheduler", "client"]
    rng.shuffle(kinds)

    def command(features, predictions, address):
        argv = [sys.executable, "-m", "npresnet", "embed", *paths, "--arch", "resnet18", "--weights", str(weights)]
        argv += ["--out", str(features), "--predictions", str(predictions), "--scheduler", address]
        return argv + ["--batch-size", "2", "--top", "3", "--resize-size", "40", "--crop-size", "32"]

    feats, preds = tmp_path / "f.zarr", tmp_path / "p.parquet"
    cluster = Cluster(tmp_path)
    struck = []
    try:
        cluster.start()
        proc = None
        for at, kind in zip(faults, kinds):
            if proc is None or proc.poll() is not None:
                proc = subprocess.Popen(command(feats, preds, cluster.address), env=ENV, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while finished_chunks(feats) < at:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline
                time.sleep(0.01)
            struck.append((kind, finished_chunks(feats)))
            if kind == "worker":
                os.kill(rng.choice(cluster.worker_pids()), signal.SIGKILL)  # its nanny starts another
            elif kind == "scheduler":
                cluster.scheduler.send_signal(signal.SIGKILL)
                assert proc.wait(120) != 0  # the command loses its scheduler and fails
                cluster.stop()
                cluster = Cluster(tmp_path)
                cluster.start()
            else:
                proc.send_signal(signal.SIGINT)  # Ctrl-C
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.poll() is not None:
                proc.stderr.close()
        if proc.poll() is None:
            proc.wait(300)
            proc.stderr.close()
        assert [k for k, _ in struck] == kinds and all(n < n_chunks for _, n in struck), struck
        print("faults (kind, finished chunks):", struck)  # shown with -s or on failure

        resumed = subprocess.run(
            command(feats, preds, cluster.address), env=ENV, capture_output=True, text=True, timeout=300
        )
        assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stderr  # 1: unreadable images
        unreadable = sum(p in bad for p in paths)  # 3: rows 0, 37 and 38
        assert f"{unreadable} of {len(paths)} image(s) could not be read" in resumed.stderr
        whole_f, whole_p = tmp_path / "whole.zarr", tmp_path / "whole.parquet"
        whole = subprocess.run(
            command(whole_f, whole_p, cluster.address), env=ENV, capture_output=True, text=True, timeout=300
        )
        assert whole.returncode == 1, whole.stderr
    finally:
        cluster.stop()

    a, b = zarr.open_group(feats, mode="r"), zarr.open_group(whole_f, mode="r")
    assert a["paths"][:].tolist() == paths and a["done"][:].all()
    numpy.testing.assert_array_equal(a["features"][:], b["features"][:])  # bit for bit, NaN rows included
    assert a["errors"][:].tolist() == b["errors"][:].tolist()
    assert [i for i, e in enumerate(a["errors"][:].tolist()) if e] == [i for i, p in enumerate(paths) if p in bad]
    table = pq.read_table(preds)
    assert table.column("row").to_pylist() == list(range(len(paths)))  # every row once, in its place
    assert table.column("path").to_pylist() == paths
    assert table.equals(pq.read_table(whole_p))
    assert not (feats / "_staging").exists() and shared.leftovers(feats, preds) == []
