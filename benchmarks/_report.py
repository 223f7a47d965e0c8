"""The benchmark's output: one table row per engine, the markdown file, written atomically."""

from __future__ import annotations

import os
import tempfile

HEADER = (
    "| model | batch | engine | median ms | IQR ms | min ms | img/s | × PyTorch | GFLOP/s | % sgemm "
    "| peak RSS MB | NumPy traced MB | peak device MB | rel. error |"
)


def format_row(r: dict) -> str:
    if "skipped" in r:
        return f"| {r['arch']} | {r['batch']} | {r['engine']} | skipped: {r['skipped']} |" + " |" * 11
    return (
        f"| {r['arch']} | {r['batch']} | {r['engine']} | {r['median_ms']:.1f} | "
        f"{r['iqr_ms'][0]:.1f}–{r['iqr_ms'][1]:.1f} | {r['min_ms']:.1f} | {r['images_per_s']:.1f} | "
        f"{r['ratio_to_torch']:.2f} | {r['gflops']:.0f} | {100 * r['gemm_fraction']:.0f} | "
        f"{r['peak_rss_mb']:.0f} | {r['traced_mb']:.0f} | {r.get('peak_device_mb', float('nan')):.0f} | "
        f"{r['relative_error']:.1e} |"
    )


def format_markdown(info: dict, gemm: float, command: str, rows: list[dict], args) -> str:
    lines = ["## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        f"- measured float32 matrix product (2048² NumPy `@`, this run): {gemm:.0f} GFLOP/s",
        f"- load average at start: {args.load_start}, at end: {os.getloadavg()[0]:.2f}",
        "",
        "## Command",
        "",
        f"    {command}",
        "",
        f"{args.size}×{args.size}, {args.dtype}, backend {args.backend}, {args.threads} threads, "
        f"{args.warmup} warm-up rounds, {args.repeats} timed rounds "
        f"(round-robin, {args.gap} s idle before each call); "
        f"peak memory: median of {args.memory_repeats} fresh processes per engine.",
        "",
        HEADER,
        "|" + "---|" * 14,
    ]
    lines += [format_row(r) for r in rows]
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
