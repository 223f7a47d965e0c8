"""One training step of ResNet-18 — forward, cross-entropy, backward, SGD — npresnet against PyTorch eager, CPU.

    python benchmarks/train_step.py                       # batch 32, 32x32, float32, 15 rounds
    python benchmarks/train_step.py --threads 1 --rounds 5

Time: the two engines alternate step by step (round robin), so a change in the machine's load
hits both; the median and the spread (min–max) of the per-step times are reported, and their
ratio. Both start from the same weights and batch; their losses are compared before timing.

Memory: each engine runs in a fresh subprocess that builds the model and optimiser, takes one
warm-up step (momentum buffers and gradients now exist), notes its resident set size (RSS), resets
the kernel's peak-RSS mark (``/proc/self/clear_refs``; Linux), takes two more steps and reports
``peak RSS (VmHWM) - RSS before``: the transient
memory of a step (activations saved for backward, gradients, workspaces) measured the same way for
both. For npresnet, tracemalloc's peak of NumPy's allocations during one step is printed as well.

Profile: per leaf layer type and per stage, where npresnet's backward time goes (wall time of each
module's ``backward``, summed over a few steps).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _set_threads(threads):
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)


def _setup(engine, batch, size, seed=0):
    """(step function, its first loss) for ``engine``, from the same weights and batch."""
    import numpy as np

    sys.path.insert(0, ROOT)
    import npresnet
    import npresnet.functional as F
    from npresnet.optim import SGD

    model = npresnet.resnet18(rng=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 1000, batch)
    if engine == "npresnet":
        model.train()
        opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=1e-4)

        def step():
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            model.backward(F.cross_entropy_backward(1.0, logits, y))
            opt.step()
            opt.zero_grad()
            return float(loss)

        return step, model
    import torch
    import torchvision

    tmodel = torchvision.models.resnet18()
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    tmodel.train()
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def tstep():
        loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
        topt.zero_grad(set_to_none=True)
        loss.backward()
        topt.step()
        return loss.item()

    return tstep, tmodel


def _memory_child(engine, batch, size):
    """Run in a subprocess: print the transient RSS of two steps (and tracemalloc's peak for npresnet)."""
    import resource
    import tracemalloc

    step, _ = _setup(engine, batch, size)
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        rss_before = int(f.read().split()[1]) * page
    try:  # reset the kernel's peak-RSS mark (VmHWM), so setup and warm-up do not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    for _ in range(3):
        step()
    if reset:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    traced = ""
    if engine == "npresnet":
        tracemalloc.start()
        step()
        traced = f" {tracemalloc.get_traced_memory()[1]}"
        tracemalloc.stop()
    print(f"MEMORY {max(peak - rss_before, 0)}{traced}")


def _memory(engine, args):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        engine,
        "--batch",
        str(args.batch),
        "--size",
        str(args.size),
    ] + (["--threads", str(args.threads)] if args.threads else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    fields = [line for line in out.splitlines() if line.startswith("MEMORY")][0].split()[1:]
    return [int(v) for v in fields]


def _profile(model, step, steps=3):
    """Wall time of every leaf module's backward, summed over ``steps`` steps, by type and by stage."""
    import time
    from collections import defaultdict

    by_type, by_stage = defaultdict(float), defaultdict(float)

    def stage_of(name):
        stage = name.split(".")[0]
        if stage.startswith("layer"):
            return stage
        return "stem" if stage in ("conv1", "bn1", "relu", "maxpool") else "head"

    def timed(original, kind, stage):
        def backward(grad):
            t = time.perf_counter()
            out = original(grad)
            dt = time.perf_counter() - t
            by_type[kind] += dt
            by_stage[stage] += dt
            return out

        return backward

    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        timed_backward = timed(module.backward, type(module).__name__, stage_of(name))
        object.__setattr__(module, "backward", timed_backward)
    for _ in range(steps):
        step()
    for _, module in model.named_modules():
        module.__dict__.pop("backward", None)
    return by_type, by_stage, steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP and torch intra-op threads")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    if args.memory_child:
        _memory_child(args.memory_child, args.batch, args.size)
        return 0

    import time

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ours, model = _setup("npresnet", args.batch, args.size)
    theirs, _ = _setup("torch", args.batch, args.size)
    first_ours, first_theirs = ours(), theirs()
    if abs(first_ours - first_theirs) > 1e-3 * abs(first_theirs):
        print(f"REFUSED: first losses differ: npresnet {first_ours} vs torch {first_theirs}", file=sys.stderr)
        return 1
    times = {"npresnet": [], "torch": []}
    for _ in range(args.rounds):
        for engine, step in (("npresnet", ours), ("torch", theirs)):
            t = time.perf_counter()
            step()
            times[engine].append(time.perf_counter() - t)
    print(
        f"ResNet-18 training step, batch {args.batch}, {args.size}x{args.size}, float32, "
        f"threads={args.threads or 'default'}, {args.rounds} rounds (round robin)"
    )
    print(f"first loss: npresnet {first_ours:.6f}, torch {first_theirs:.6f}")
    med = {}
    for engine, ts in times.items():
        med[engine] = float(np.median(ts))
        print(f"  {engine:9s} median {1e3 * med[engine]:8.1f} ms   min {1e3 * min(ts):8.1f}   max {1e3 * max(ts):8.1f}")
    print(f"  time ratio npresnet / torch: {med['npresnet'] / med['torch']:.2f}x")

    if not args.no_memory:
        mem_ours, mem_torch = _memory("npresnet", args), _memory("torch", args)
        print("memory added by training, 3 steps (peak RSS - RSS after building the model, fresh process each):")
        print(
            f"  npresnet {mem_ours[0] / 2**20:8.1f} MiB (tracemalloc peak of NumPy allocations: "
            f"{mem_ours[1] / 2**20:.1f} MiB)"
        )
        print(f"  torch    {mem_torch[0] / 2**20:8.1f} MiB")
        print(f"  memory ratio npresnet / torch: {mem_ours[0] / max(mem_torch[0], 1):.2f}x")

    by_type, by_stage, steps = _profile(model, ours)
    total = sum(by_type.values())
    print(f"npresnet backward, per step (mean of {steps}): {1e3 * total / steps:.1f} ms")
    for title, table in (("by layer type", by_type), ("by stage", by_stage)):
        print(f"  {title}:")
        for key, value in sorted(table.items(), key=lambda kv: -kv[1]):
            print(f"    {key:20s} {1e3 * value / steps:8.1f} ms  {100 * value / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
