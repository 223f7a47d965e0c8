"""Where ``embed`` runs: Dask's configured scheduler address is honoured as ``distributed.Client()`` honours it.

Precedence, as Dask users expect: an explicit ``scheduler=`` / ``--scheduler`` first, then
``DASK_SCHEDULER_ADDRESS`` (Dask's ``scheduler-address`` key), then the embedded local cluster.
The oracle for "the run went to that scheduler" is the model-build count on that cluster's worker.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("distributed")
dask = pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
pytest.importorskip("torch")

from _helpers import distributed as shared  # noqa: E402
from npresnet.distributed import embed, model_loads  # noqa: E402

NOWHERE, SIZE_ARGS = shared.NOWHERE, shared.SIZE_ARGS
images, torch_model = shared.images, shared.torch_model  # module-scoped fixtures


@pytest.fixture
def tcp_client():
    """A one-worker cluster of threads in this process, reachable over TCP on loopback (as an external one)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1") as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def good(images):
    paths, bad = images
    return [p for p in paths if p not in bad][:4]


def builds(client):
    """Model builds on the cluster's workers: one per worker that ran a task (a fresh cluster each test)."""
    return sum(n for per_worker in model_loads(client).values() for n in per_worker.values())


def test_a_configured_scheduler_is_used_when_none_is_given(tmp_path, torch_model, good):
    _, weights = torch_model
    config = {"scheduler-address": NOWHERE, "distributed.comm.timeouts.connect": "1s"}
    with (
        dask.config.set(config),
        pytest.raises(OSError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 \(from Dask's config"),
    ):
        embed(good, "resnet18", weights, features=tmp_path / "a.zarr", **SIZE_ARGS)
    assert os.listdir(tmp_path) == []  # refused before anything was created


def test_an_explicit_scheduler_overrides_the_configured_one(tmp_path, torch_model, good, tcp_client):
    _, weights = torch_model
    with dask.config.set({"scheduler-address": NOWHERE}):
        result = embed(
            good, "resnet18", weights, features=tmp_path / "a.zarr", scheduler=tcp_client.scheduler.address, **SIZE_ARGS
        )
    assert result.computed == 1 and builds(tcp_client) == 1


def test_dask_scheduler_address_in_the_environment_sends_the_cli_run_there(tmp_path, torch_model, good, tcp_client):
    _, weights = torch_model
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": tcp_client.scheduler.address}
    argv = [sys.executable, "-m", "npresnet", "embed", *good, "--arch", "resnet18", "--weights", str(weights)]
    argv += ["--out", str(tmp_path / "a.zarr"), "--resize-size", "40", "--crop-size", "32"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert builds(tcp_client) == 1  # the model was built on that cluster's worker, not on a local one
    assert zarr.open_group(tmp_path / "a.zarr", mode="r")["done"][:].all()


def test_local_cluster_sizes_with_a_configured_scheduler_are_refused(tmp_path, torch_model, good):
    _, weights = torch_model
    with dask.config.set({"scheduler-address": NOWHERE}):
        for sizes in ({"n_workers": 2}, {"processes": False}):
            with pytest.raises(ValueError, match="size a local cluster, but Dask's config"):
                embed(good, "resnet18", weights, features=tmp_path / "a.zarr", **sizes, **SIZE_ARGS)
    assert os.listdir(tmp_path) == []
