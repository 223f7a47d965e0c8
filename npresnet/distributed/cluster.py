"""Where the tasks run: a given ``Client``, a scheduler address, or an embedded local cluster.

The scheduler address is given, or read from Dask's configuration as ``distributed.Client()`` reads it.

The embedded cluster listens on 127.0.0.1 only (a threaded one talks in-process), has no
dashboard, and is sized to the machine: one single-threaded worker per core by default, each with
``cores // workers`` BLAS threads, so workers do not oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from .._args import is_int
from ..limits import MAX_WORKERS_PER_CORE

if TYPE_CHECKING:
    import types
    from collections.abc import Iterator, Mapping

    from distributed import Client
    from distributed.deploy.cluster import Cluster

MAX_CONNECT_WORKERS = 512  # connect()'s own bound; embed's, one per usable core, is check_local_workers

__all__ = ["usable_cores", "max_local_workers", "check_local_workers", "connect", "configured_scheduler"]

# The embedded cluster has no dashboard, so the monitoring that feeds one only takes CPU from the
# tasks. Measured on the 2-core machine by CPU time (benchmarks/dask_idle_cpu.py): an idle 2-worker
# cluster took a median 7.4 % of the machine with Dask's defaults and 2.2 % with these.
QUIET_MONITORING = {
    "distributed.worker.profile.enabled": False,  # samples every thread's stack each 10 ms, for the dashboard
    "distributed.admin.system-monitor.interval": "10s",  # CPU, memory and network plots; default 500 ms
    "distributed.admin.tick.interval": "500ms",  # event-loop health check; default 20 ms, still warns after 3 s
}


def _distributed() -> Any:  # the distributed module (its types are absent where the type check runs without it)
    try:
        import distributed
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('running on Dask needs dask[distributed]: pip install "npresnet[distributed]"') from None
    return distributed


CONFIG_ORIGIN = "Dask's config: DASK_SCHEDULER_ADDRESS or scheduler-address"


def configured_scheduler() -> str | None:
    """Return the scheduler address Dask's configuration names, or None.

    That is Dask's ``scheduler-address`` key, set by ``DASK_SCHEDULER_ADDRESS`` or a Dask YAML
    config file, which ``distributed.Client()`` connects to when given no address.
    """
    _distributed()
    import dask

    return dask.config.get("scheduler-address", None) or None


def choose_scheduler(
    client: Client | None, scheduler: str | None, n_workers: int | None, processes: bool
) -> str | None:
    """Return the scheduler address: ``scheduler`` if given, else Dask's configured one, else None (local cluster).

    A given ``client`` uses neither. ``n_workers`` or ``processes=False`` size a local cluster, so with
    only a configured address they are refused rather than silently ignored or silently obeyed.
    """
    if client is not None or scheduler is not None:
        return scheduler
    configured = configured_scheduler()
    if configured is not None and (n_workers is not None or not processes):
        raise ValueError(
            f"n_workers and processes size a local cluster, but {CONFIG_ORIGIN} names the scheduler "
            f"{configured}; pass scheduler= to use it, or unset it for a local cluster"
        )
    return configured


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def max_local_workers() -> int:
    """Most workers of an embedded local cluster: :data:`~npresnet.limits.MAX_WORKERS_PER_CORE` per usable core."""
    return MAX_WORKERS_PER_CORE * usable_cores()


def check_local_workers(n_workers: object) -> None:
    """Refuse a worker count outside 1 to :func:`max_local_workers` (ValueError naming ``n_workers``)."""
    most = max_local_workers()
    if not is_int(n_workers) or not 1 <= int(n_workers) <= most:  # NumPy integers too
        raise ValueError(
            f"n_workers must be between 1 and {most} on this machine (one per usable core; each worker runs "
            f"one single-threaded task at a time), got {n_workers!r}"
        )


@contextlib.contextmanager
def _embedded_settings(values: Mapping[str, str]) -> Iterator[None]:
    """Make the cluster built inside this block monitor quietly, with ``values`` as its workers' BLAS settings.

    Quietly: :data:`QUIET_MONITORING`. The worker processes see exactly ``values``.

    Dask's nannies take the environment of a new worker from ``distributed.nanny.pre-spawn-environ``,
    but a variable already in ``os.environ`` wins, and each nanny copies its values into
    ``os.environ`` when it spawns, so a second cluster would inherit the first one's thread counts.
    Both are set here and ``os.environ`` is restored on exit; the nannies keep their copy for restarts.

    Dask's default also sets ``MALLOC_TRIM_THRESHOLD_``, which turns off glibc's dynamic mmap
    threshold: every large NumPy temporary becomes a fresh mmap, page-faulted in again. Measured
    here, that made one worker about 3× slower than ``npresnet predict``, so it is left unset.
    """
    import dask

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        with dask.config.set({**QUIET_MONITORING, "distributed.nanny.pre-spawn-environ": dict(values)}):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def connect(
    client: Client | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    processes: bool = True,
    backend: str = "numpy",
) -> Iterator[Client]:
    """Yield a ``distributed.Client``; close what this function opened on exit.

    Parameters
    ----------
    client : distributed.Client, optional
        Used as is and left open.
    scheduler : str, optional
        A scheduler address (``tcp://host:8786``); the client is closed on exit, the cluster kept.
        Default: the one Dask's configuration names (:func:`configured_scheduler`), if any.
    n_workers : int, optional
        Workers of the embedded cluster (default: one per usable core).
    processes : bool
        Embedded cluster of worker processes (default), or of threads in this process.
    backend : {"numpy", "cupy"}
        With ``"cupy"`` the embedded cluster follows dask-cuda's convention, one worker per GPU:
        ``dask_cuda.LocalCUDACluster`` when dask-cuda is installed, else a single worker.
    """
    if client is not None:
        yield client
        return
    distributed = _distributed()
    origin = ""
    if scheduler is None:
        scheduler = configured_scheduler()
        origin = "" if scheduler is None else f" (from {CONFIG_ORIGIN})"
    if scheduler is not None:
        try:  # waits up to Dask's distributed.comm.timeouts.connect (30 s by default)
            remote = distributed.Client(scheduler)
        except OSError as err:  # TimeoutError included
            raise OSError(f"cannot reach the Dask scheduler at {scheduler}{origin}: {err}") from None
        with remote:
            yield remote
        return
    if backend == "cupy":  # dask-cuda's convention: one worker per GPU
        cuda_cluster = _cuda_cluster(n_workers)
        if cuda_cluster is not None:
            yield from _serve(distributed, cuda_cluster)
            return
        if n_workers not in (None, 1):  # without dask-cuda every worker would share device 0
            raise ValueError(
                "several GPU workers need dask-cuda (pip install dask-cuda), which pins one GPU per "
                "worker; without it the embedded cluster runs one worker on the current GPU"
            )
        n_workers, processes = 1, False  # one worker, in this process, on the current GPU
    cores = usable_cores()
    n_workers = cores if n_workers is None else int(n_workers)
    if not 1 <= n_workers <= MAX_CONNECT_WORKERS:  # embed holds its own, per core (check_local_workers)
        raise ValueError(f"n_workers must be between 1 and {MAX_CONNECT_WORKERS}, got {n_workers}")
    blas = str(max(1, cores // n_workers))
    threads = {name: blas for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    network = {"host": "127.0.0.1"} if processes else {}  # threads talk in-process ("inproc://")
    with _embedded_settings(threads):
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            worker_dashboard_address="127.0.0.1:0",
            # CRITICAL, not ERROR: every failure of a run reaches the caller as a result or an exception
            # (embed reports them in its own words), so what Dask logs here is teardown noise -- e.g. a
            # worker whose heartbeat meets the closing scheduler after a Ctrl-C logs an ERROR traceback
            silence_logs=logging.CRITICAL,
            **network,
            # the HTTP routes (health, metrics) of scheduler and workers listen on free ports of 127.0.0.1 only
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        )
    yield from _serve(distributed, cluster)


def _serve(distributed: types.ModuleType, cluster: Cluster) -> Iterator[Client]:
    """Yield a client of ``cluster``; close the cluster afterwards, whatever happened."""
    try:
        with distributed.Client(cluster) as local:
            yield local
    finally:
        cluster.close()


def _cuda_cluster(n_workers: int | None) -> Cluster | None:
    """Return dask-cuda's ``LocalCUDACluster``, or None without dask-cuda.

    One worker per GPU, each seeing only its own device. Untested here: no GPU on the CI machine.
    """
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        return None
    import dask

    with dask.config.set(QUIET_MONITORING):
        cluster: Cluster = LocalCUDACluster(
            n_workers=n_workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    return cluster
