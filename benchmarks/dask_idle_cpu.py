"""CPU that an idle local Dask cluster takes: Dask's default monitoring against ``embed``'s embedded cluster.

    python benchmarks/dask_idle_cpu.py                 # 2 workers, 10 s per cluster, 3 rounds

Each cluster has the same shape (W single-threaded worker processes on 127.0.0.1, no dashboard).
"Dask defaults" is a plain ``distributed.LocalCluster``; "embedded" is
``npresnet.distributed.cluster.connect``, which also turns down the monitoring that only feeds a
dashboard (``QUIET_MONITORING``). The CPU time (user + system) of this process (client,
scheduler, nannies) and of every worker process is read with psutil before and after a sleep.
CPU time, unlike wall time, hardly depends on what else the machine runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

import distributed  # noqa: E402
import psutil  # noqa: E402

from npresnet.distributed.cluster import connect, usable_cores  # noqa: E402


@contextlib.contextmanager
def dask_defaults(n_workers):
    cluster = distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        scheduler_kwargs={"dashboard": False},
    )
    with cluster, distributed.Client(cluster) as client:  # the cluster closes on the way out
        yield client


def cpu_seconds(processes):
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def idle_share(client, seconds):
    """Share of the machine (all usable cores) that this process and the workers used while idle."""
    client.wait_for_workers(len(client.scheduler_info()["workers"]))
    time.sleep(1)  # let start-up finish
    me = psutil.Process()
    workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    before = cpu_seconds([me]), cpu_seconds(workers)
    time.sleep(seconds)
    used = cpu_seconds([me]) - before[0], cpu_seconds(workers) - before[1]
    capacity = seconds * usable_cores()
    return used[0] / capacity, used[1] / capacity


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    makers = {"Dask defaults": dask_defaults, "embedded (embed's cluster)": lambda w: connect(n_workers=w)}
    shares = {name: [] for name in makers}
    for _ in range(args.rounds):
        for name, make in makers.items():
            with make(args.workers) as client:
                shares[name].append(idle_share(client, args.seconds))
    print(
        f"Idle {args.workers}-worker cluster, {args.seconds:g} s × {args.rounds} rounds, {usable_cores()} cores: "
        "share of the machine, median (range)\n"
    )
    print("| cluster | client + scheduler + nannies | workers | total |")
    print("|---|---|---|---|")
    for name, values in shares.items():
        columns = [[v[0] for v in values], [v[1] for v in values], [v[0] + v[1] for v in values]]
        cells = [f"{statistics.median(c):.1%} ({min(c):.1%}–{max(c):.1%})" for c in columns]
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
