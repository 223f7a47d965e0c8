"""Reference and fast paths of two versions of npresnet, side by side: single-thread CPU time per forward pass.

    python benchmarks/compare_commits.py                                   # 283ec7c against the working tree
    python benchmarks/compare_commits.py --old HEAD~3 --new HEAD --arch resnet50 --rounds 9
    python benchmarks/compare_commits.py --smoke                           # seconds; what CI runs

"No slower than before" is a claim about two versions of the library on one machine at one time.
This harness answers it in one run:

1. it materialises each version that is a commit (``--old``, and ``--new`` when given; the default
   ``--new`` is this working tree) with ``git archive COMMIT npresnet`` into a temporary directory,
   removed afterwards, also on failure (an archive, not ``git worktree add``: nothing is written to
   the repository, so an interrupted run leaves nothing to prune);
2. it starts one fresh worker process per version and architecture, ``PYTHONPATH`` pointing at that
   version and the same BLAS environment for both (one thread: ``OPENBLAS_NUM_THREADS``,
   ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``); each worker checks that it imported the npresnet it
   was given, builds the model with this harness's :func:`_engines.build_model` (seeded weights,
   batch norms randomised) and the seeded input, and reports digests of both: the harness refuses to
   time two versions that did not get the same weights and the same input;
3. it checks that the two versions' logits agree (:data:`AGREEMENT`) before timing anything;
4. it times rounds: in each round every engine runs once in each version, old and new interleaved
   engine by engine, the version that goes first alternating from round to round; each call's
   process CPU time (``time.process_time``) and wall time (``time.perf_counter``) are recorded;
5. it reports, per (arch, engine), the medians with their min–max, the new/old ratio of the
   medians with the min–max of the per-round ratios (new and old from the same round), and the
   machine (``_machine.py``) and the exact command.

Why single-thread CPU time: the machine this was written on has 2 cores shared with other jobs, so
wall time measures the neighbours as much as the code (2-thread wall-clock runs of ``bench.py``
spread by up to ±20 %). One BLAS thread and the process's CPU time take out the time spent waiting
for a core; what remains (cache and memory-bandwidth contention) still moves both versions alike,
which is what the interleaving is for. The wall times are reported beside them.

The fast path: the old commit's ``fuse(model)`` is Winograd F(2×2,3×3) (its only Winograd; ``fuse``
took a bool then), the new default is F(4×4,3×3); ``--winograd F4 F2`` (the default) times the new
version's fast path with each, F2 being the like-for-like comparison. The worker adapts the call to
the version it runs (:func:`_fused`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:  # the harness's own modules beside it; npresnet itself comes from PYTHONPATH
    sys.path.insert(0, HERE)

from _machine import machine_description, sgemm_rate  # noqa: E402
from _memory import _thread_env  # noqa: E402
from _report import write_atomically  # noqa: E402

DEFAULT_OLD = "283ec7c"
"""The commit before issue #19's refactor (``functional`` becomes a package, d537c73)."""

AGREEMENT = 1e-4
"""Largest ``max|new - old| / max|old|`` between the two versions' logits before the harness refuses to time them.

A sanity check that both versions compute the same network on the same weights and input, not an accuracy
test (the float32 bounds are derived and tested in ``tests/``): the fast paths' logits sit within ~1e-6 of
their scale from PyTorch's (``RESULTS.md``), F(4×4) against F(2×2) included, so 1e-4 leaves a margin of
~100× for rounding, while a wrong weight, layer or input moves the logits by O(1) of their scale."""

SEED = 0
"""Model weights: ``build_model(arch, "float32", SEED)``; the input: ``default_rng(batch)``, as ``bench.py``."""


# ---------------------------------------------------------------------------- the worker (runs in each version)
def _fused(model, winograd: str | None):
    """``fuse(model)`` (``winograd=None``) or ``fuse(model, winograd="F4" | "F2")``, in the version imported.

    Before Winograd F(4×4) (``npresnet.fast.winograd.DEFAULT_WINOGRAD`` absent) ``fuse`` took a bool and its
    only Winograd was F(2×2): there ``"F2"`` is ``winograd=True`` and ``"F4"`` does not exist. Passing the
    string there would not fail: ``"F4"`` is truthy, and the old ``fuse`` would silently run F(2×2).
    """
    from npresnet.fast import fuse
    from npresnet.fast import winograd as module

    default = getattr(module, "DEFAULT_WINOGRAD", "F2")
    if winograd is None:
        return fuse(model), f"fuse(model): {default}"
    if hasattr(module, "DEFAULT_WINOGRAD"):
        return fuse(model, winograd=winograd), f"fuse(model, winograd={winograd!r})"
    if winograd == "F2":
        return fuse(model, winograd=True), "fuse(model): F2 (its only Winograd)"
    raise SystemExit(f"this version's fuse has no Winograd {winograd}: its only Winograd is F(2×2)")


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for name, a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def worker(args) -> int:
    """Build the model, the engines and the input in the npresnet on ``PYTHONPATH``; then answer the
    harness's requests on stdin, one JSON line each, with one JSON line on stdout."""
    import npresnet
    from _engines import build_model

    tree = os.path.realpath(args.tree)
    if not os.path.realpath(npresnet.__file__).startswith(tree + os.sep):
        raise SystemExit(f"imported npresnet from {npresnet.__file__}, not from {tree}: check PYTHONPATH")
    if args.arch not in npresnet.ARCHITECTURES:
        raise SystemExit(f"{args.arch} is not an architecture of {tree}: {', '.join(sorted(npresnet.ARCHITECTURES))}")
    model = build_model(args.arch, "float32", SEED)
    x = np.random.default_rng(args.batch).standard_normal((args.batch, 3, args.size, args.size)).astype("float32")
    engines, described = {}, {}
    for name in args.worker_engines:
        if name == "reference":
            engines[name], described[name] = model, "model(x)"
        else:  # "fast" (the version's default), "fast-F4", "fast-F2"
            engines[name], described[name] = _fused(model, name[5:] or None)
    logits = {}
    for name, run in engines.items():  # the first call of each also warms its buffers
        logits[name] = os.path.join(args.out, f"{args.label}-{name}.npy")
        np.save(logits[name], npresnet.to_numpy(run(x)))
    weights = _digest(sorted((k, npresnet.to_numpy(v)) for k, v in model.state_dict().items()))
    try:
        import threadpoolctl

        blas = ", ".join(f"{p['internal_api']}={p['num_threads']}" for p in threadpoolctl.threadpool_info())
    except ImportError:
        blas = f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    hello = {"npresnet": npresnet.__file__, "weights": weights, "input": _digest([("x", x)]), "blas": blas}
    print(json.dumps({**hello, "engines": described, "logits": logits}), flush=True)
    for line in sys.stdin:
        run = engines[json.loads(line)["engine"]]
        cpu, wall = time.process_time(), time.perf_counter()
        run(x)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(json.dumps({"cpu": cpu, "wall": wall}), flush=True)
    return 0


class Worker:
    """One worker process: one version, one architecture, kept until the harness closes it."""

    def __init__(self, label, tree, args, engines, out):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--tree", tree, "--label", label, "--out", out]
        cmd += ["--arch", args.arch_now, "--batch", str(args.batch), "--size", str(args.size)]
        cmd += ["--worker-engines", *engines]
        env = {**os.environ, **_thread_env(1), "PYTHONPATH": tree, "PYTHONWARNINGS": "ignore"}
        self.label = label
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.hello = self._answer()

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.label} worker stopped (exit {self.proc.wait()}); its error is above")
        return json.loads(line)

    def time(self, engine: str) -> dict:
        self.proc.stdin.write(json.dumps({"engine": engine}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------- the harness
def resolve(commit: str) -> str:
    """The full hash of ``commit``, or a one-line exit saying it is not in this repository."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").strip()
    except subprocess.CalledProcessError:
        raise SystemExit(
            f"commit {commit} is not in this repository ({ROOT}); if it is a shallow clone, fetch the history first"
        ) from None


def materialise(sha: str, directory: str) -> str:
    """``npresnet/`` as it was at commit ``sha``, extracted into ``directory`` (new); returns ``directory``."""
    os.makedirs(directory)
    archive = subprocess.run(["git", "-C", ROOT, "archive", sha, "npresnet"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
    return directory


def _git(*args) -> str:
    return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, check=True).stdout


def describe_version(sha: str | None) -> str:
    """``<short hash> (<subject>)`` of a commit; for ``None``, the working tree, and whether its npresnet/ is dirty."""
    if sha is not None:
        return f"{sha[:7]} ({_git('log', '-1', '--format=%s', sha).strip()[:70]})"
    head = _git("rev-parse", "--short", "HEAD").strip()
    dirty = _git("status", "--porcelain", "--", "npresnet").strip()
    return f"working tree at {head}" + (" with uncommitted changes to npresnet/" if dirty else "")


def plan(args) -> list[tuple[str, str, str]]:
    """``(row label, old engine, new engine)``: what is timed against what."""
    rows = [("reference", "reference", "reference")] if "reference" in args.engines else []
    if "fast" in args.engines:
        rows += [(f"fast, new {w}", "fast", f"fast-{w}") for w in args.winograd]
    return rows


def compare(args, trees: dict, out: str) -> list[dict]:
    """Check and time one architecture in both versions; returns one row per (old engine, new engine)."""
    pairs = plan(args)
    wanted = {"old": list(dict.fromkeys(o for _, o, _ in pairs)), "new": list(dict.fromkeys(n for _, _, n in pairs))}
    workers = {}
    try:
        for label in ("old", "new"):
            workers[label] = Worker(label, trees[label], args, wanted[label], out)
        old, new = workers["old"].hello, workers["new"].hello
        for what in ("weights", "input"):
            if old[what] != new[what]:
                raise SystemExit(f"REFUSED: the two versions built different {what} ({old[what]} vs {new[what]})")
        errors = {}
        for label, o, n in pairs:
            a, b = np.load(old["logits"][o]), np.load(new["logits"][n])
            errors[label] = float(np.abs(b.astype(np.float64) - a).max() / np.abs(a).max())
            if args.corrupt == label.split(",")[0]:  # the harness's own test: disagreeing versions are refused
                errors[label] = 1.0
            if not errors[label] <= AGREEMENT:
                why = f"new logits disagree with old ({errors[label]:.1e} > {AGREEMENT:.0e})"
                raise SystemExit(f"REFUSED: {label}: {why}; not timing a different computation")
        times = {(label, e): [] for label in wanted for e in wanted[label]}
        for r in range(args.warmup + args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for kind in ("reference", "fast"):
                for label in order:
                    for e in wanted[label]:
                        if e.split("-")[0] == kind:
                            t = workers[label].time(e)
                            if r >= args.warmup:
                                times[label, e].append(t)
    finally:
        for w in workers.values():
            w.close()
    rows = []
    for label, o, n in pairs:
        row = {"arch": args.arch_now, "batch": args.batch, "size": args.size, "engine": label}
        row.update(old=workers["old"].hello["engines"][o], new=workers["new"].hello["engines"][n])
        for clock in ("cpu", "wall"):
            a = np.array([t[clock] for t in times["old", o]]) * 1e3
            b = np.array([t[clock] for t in times["new", n]]) * 1e3
            row[clock] = {"old": a.tolist(), "new": b.tolist(), "ratio": float(np.median(b) / np.median(a))}
            row[clock]["paired"] = (float((b / a).min()), float((b / a).max()))
        row["relative_difference"] = errors[label]
        row["blas"] = {v: workers[v].hello["blas"] for v in ("old", "new")}
        rows.append(row)
    return rows


HEADER = (
    "| model | batch | engine | old | new | CPU ms old | CPU ms new | new/old CPU | "
    "wall ms old | wall ms new | new/old wall | logits rel. diff |"
)


def _spread(ms) -> str:
    return f"{np.median(ms):.1f} ({min(ms):.1f}–{max(ms):.1f})"


def format_row(r: dict) -> str:
    cells = [r["arch"], str(r["batch"]), r["engine"], f"`{r['old']}`", f"`{r['new']}`"]
    for clock in ("cpu", "wall"):
        c = r[clock]
        cells += [_spread(c["old"]), _spread(c["new"]), f"{c['ratio']:.2f} ({c['paired'][0]:.2f}–{c['paired'][1]:.2f})"]
    cells.append(f"{r['relative_difference']:.1e}")
    return "| " + " | ".join(cells) + " |"


def format_markdown(info: dict, gemm: float, command: str, versions: dict, rows: list[dict], args) -> str:
    lines = ["## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        f"- measured float32 matrix product (1024² NumPy `@`, 1 thread, this run): {gemm:.0f} GFLOP/s",
        f"- BLAS environment, the same for both versions: {blas_environment()}",
        f"- BLAS threads in the workers: old {rows[0]['blas']['old']}, new {rows[0]['blas']['new']}" if rows else "",
        f"- load average at start: {args.load_start}, at end: {os.getloadavg()[0]:.2f}",
        "",
        "## Command",
        "",
        f"    {command}",
        "",
        f"old: {versions['old']}; new: {versions['new']}.",
        f"{args.size}×{args.size}, float32, 1 BLAS thread per worker, {args.warmup} warm-up rounds, "
        f"{args.rounds} timed rounds (old and new interleaved, the first alternating); medians with (min–max); "
        f"new/old: ratio of the medians with (min–max of the per-round ratios).",
        "",
        HEADER,
        "|" + "---|" * 12,
    ]
    lines += [format_row(r) for r in rows]
    return "\n".join(lines) + "\n"


def blas_environment() -> str:
    """The BLAS and OpenMP variables the workers inherit (the kernels OpenBLAS picks depend on them)."""
    names = sorted(k for k in os.environ if k.startswith(("OPENBLAS_", "OMP_", "MKL_")))
    return ", ".join(f"{k}={os.environ[k]}" for k in names)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", default=DEFAULT_OLD, help=f"the commit to compare against (default {DEFAULT_OLD})")
    p.add_argument("--new", default=None, help="a commit; default: this working tree")
    p.add_argument("--arch", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--engines", nargs="+", default=["reference", "fast"], choices=["reference", "fast"])
    p.add_argument(
        "--winograd",
        nargs="+",
        default=["F4", "F2"],
        choices=["F4", "F2"],
        help="the new version's fast path with each choice, against the old fuse(model) (F2 before F4 existed)",
    )
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds after each engine's first (checked) call")
    p.add_argument("--markdown", metavar="PATH", help="also write the machine, command and table to PATH")
    p.add_argument("--smoke", action="store_true", help="resnet18, batch 1, 64×64, 1 round: seconds")
    p.add_argument("--corrupt", choices=["reference", "fast"], help=argparse.SUPPRESS)  # test the refusal
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal: one version's process
    p.add_argument("--tree", help=argparse.SUPPRESS)
    p.add_argument("--label", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--worker-engines", nargs="+", help=argparse.SUPPRESS)  # reference, fast, fast-F4, fast-F2
    args = p.parse_args(argv)
    if args.worker:
        args.arch = args.arch[0]
        return args
    if args.smoke:
        args.arch, args.batch, args.size, args.rounds, args.warmup = ["resnet18"], 1, 64, 1, 0
    for name in ("rounds", "batch", "size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    missing = {k: v for k, v in _thread_env(1).items() if os.environ.get(k) != v}
    if missing:  # BLAS reads its thread count at import: the harness's own sgemm at one thread too
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], {**os.environ, **missing})
    shas = {"old": resolve(args.old), "new": None if args.new is None else resolve(args.new)}
    versions = {label: describe_version(sha) for label, sha in shas.items()}
    args.load_start = f"{os.getloadavg()[0]:.2f}"
    info = machine_description(1)
    gemm = sgemm_rate(n=256 if args.smoke else 1024)
    command = "python benchmarks/compare_commits.py " + shlex.join(sys.argv[1:])
    print(
        f"# npresnet, two versions: {info.get('Model name', '?')}, 1 thread, numpy {np.__version__} "
        f"({info['numpy BLAS']}), sgemm {gemm:.0f} GFLOP/s, load {args.load_start}\n"
        f"# old: {versions['old']}\n# new: {versions['new']}",
        flush=True,
    )
    print(HEADER, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="npresnet-compare-") as directory:
        trees = {label: materialise(sha, os.path.join(directory, label)) for label, sha in shas.items() if sha}
        trees.setdefault("new", ROOT)
        for arch in args.arch:
            args.arch_now = arch
            for row in compare(args, trees, directory):
                rows.append(row)
                print(format_row(row), flush=True)
    if args.markdown:
        write_atomically(args.markdown, format_markdown(info, gemm, command, versions, rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
