"""What prunekit's core costs on a large model: analyze, plan and apply on a 64-block EDSR-like
network (nf 64, x2 PixelShuffle tail, 48x48 LR input), with wall time and peak memory per phase.

    .venv/bin/python benchmarks/core_overhead.py --out docs/results/core_overhead.md

Peak memory is reported two ways: the process's peak resident set size during the phase (Linux
`VmHWM`, reset before each phase through /proc/self/clear_refs; falls back to the whole-run
`ru_maxrss` elsewhere) and the peak of Python-level allocations (tracemalloc; tensor storage is not
included there).
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import prunekit as pk
from prunekit.fileio import atomic_write

from _common import machine_text


class Block(nn.Module):
    def __init__(self, nf: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(nf, nf, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.body(x)


class EDSRLike(nn.Module):
    def __init__(self, nf: int = 64, nb: int = 64) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, nf, 3, padding=1)
        self.body = nn.Sequential(*[Block(nf) for _ in range(nb)], nn.Conv2d(nf, nf, 3, padding=1))
        self.tail = nn.Sequential(nn.Conv2d(nf, 4 * nf, 3, padding=1), nn.PixelShuffle(2), nn.Conv2d(nf, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.tail(self.body(x) + x)


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fn: Callable[[], Any], repeats: int) -> tuple[Any, dict[str, float]]:
    times, rss, py = [], [], []
    result = None
    for _ in range(repeats):
        _reset_peak_rss()
        tracemalloc.start()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        py.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
        rss.append(_peak_rss_mib())
    return result, {"median_s": statistics.median(times), "min_s": min(times), "peak_rss_mib": max(rss), "peak_py_mib": max(py)}


def run(args: argparse.Namespace, threads: int) -> tuple[list[str], str]:
    """Measure every phase with `threads` intra-op threads; returns table rows and a model summary."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = EDSRLike(args.nf, args.blocks).eval()
    x = torch.rand(1, 3, args.lr, args.lr)

    with torch.no_grad():
        _, forward = measure(lambda: model(x), args.repeats)
    graph, analyze = measure(lambda: pk.analyze(model, x), args.repeats)
    plan, planning = measure(
        lambda: pk.plan(model, graph, strategy=args.strategy, target=pk.KeepBlocks(n=args.keep)), args.repeats
    )
    small, applying = measure(lambda: pk.apply(model, plan), args.repeats)
    assert len(small.body) == args.keep + 1

    phases = [("one dense forward (reference)", forward), ("analyze", analyze),
              (f"plan ({args.strategy}, KeepBlocks({args.keep}))", planning), ("apply", applying)]
    rows = [
        f"| {threads} | {name} | {m['median_s']:.3f} | {m['min_s']:.3f} | {m['median_s'] / forward['median_s']:.1f} "
        f"| {m['peak_rss_mib']:.0f} | {m['peak_py_mib']:.1f} |"
        for name, m in phases
    ]
    s = plan.stats
    summary = (
        f"{graph.total_params:,} params, {graph.total_flops:,} FLOPs (fvcore MACs). Discovery found {len(graph.units)} "
        f"units. Plan: {len(plan.removed)} blocks removed, params {s.params_before:,} -> {s.params_after:,}, "
        f"FLOPs {s.flops_before:,} -> {s.flops_after:,}."
    )
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=64)
    parser.add_argument("--nf", type=int, default=64)
    parser.add_argument("--lr", type=int, default=48, help="LR input side")
    parser.add_argument("--keep", type=int, default=32, help="blocks to keep")
    parser.add_argument("--strategy", default="magnitude")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--out", type=Path, help="write a markdown report here")
    args = parser.parse_args()

    per_phase_rss = _reset_peak_rss()
    baseline_rss = _peak_rss_mib()
    load_before = os.getloadavg()
    rows, summary = [], ""
    for threads in args.threads:
        more, summary = run(args, threads)
        rows += more
    load_after = os.getloadavg()

    lines = [
        "# Core overhead: analyze / plan / apply",
        "",
        f"Measured {datetime.date.today().isoformat()} with `benchmarks/core_overhead.py` on a shared CPU "
        f"machine without GPU: {machine_text()}. Median of {args.repeats} runs per phase. The machine was "
        f"shared with other jobs (1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, "
        f"on {os.cpu_count()} cores), so absolute times "
        "are inflated and noisy; the ratio to one dense forward pass, measured alongside, is the more portable number.",
        "",
        f"Model: EDSR-like, {args.blocks} residual blocks (nf {args.nf}, residual scale 0.1), x2 PixelShuffle tail; "
        f"input 1x3x{args.lr}x{args.lr}. {summary}",
        "",
        "| threads | phase | median wall (s) | min wall (s) | median / forward | peak RSS (MiB) | peak Python allocations (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Process RSS before the first phase: {baseline_rss:.0f} MiB (torch, prunekit, the model). "
        + ("Peak RSS is per phase (VmHWM reset before each run)." if per_phase_rss else
           "Peak RSS is the whole run's maximum (this system cannot reset it per phase)."),
        "",
        "Where the time goes: `analyze` runs one forward with hooks, replays each parameterised module whose output "
        "keeps its input's shape with zeroed parameters (plain conv/linear/norm layers are skipped, verified inner "
        "units count as identity, and a second, random probe runs only when the first passes), and one fvcore "
        "trace for FLOPs. `plan` scores, selects, then applies the plan to a copy and profiles it, so the stats "
        "are measured, not estimated. `apply` is a deep copy plus re-indexing.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:

        atomic_write(args.out, text)


if __name__ == "__main__":
    main()
