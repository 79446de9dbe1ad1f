"""Does `pk.LatencyRatio(keep)` hold when checked independently, at sizes it was not planned at?

Plans FRNet (nf 64, nb 10, x4, random weights, layout `tecogan.frnet.open_fnet`) with
`pk.plan(..., target=pk.LatencyRatio(keep))` at one LR size with the plain runner and one thread,
builds the plain model with `pk.apply`, then times dense and pruned models with a timing loop of
its own (not prunekit's): one `FRNet.step` per call in `torch.inference_mode`, dense and pruned
alternating call by call, wall clock (perf_counter) and thread CPU time per call, medians, at the
planning size and at other LR sizes. Writes docs/results/latency_target.md.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/latency_target.py
    .venv/bin/python benchmarks/latency_target.py --plan-size 32x48 --check-sizes 48x64 --rounds 3 --out /tmp/x.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import prunekit as pk
from prunekit.fileio import atomic_write
from prunekit.profile import input_shapes
from prunekit.latency import device_name
from prunekit.models import build_model
from prunekit.registry import LAYOUTS

from _common import machine_text, parse_size


def frames(h: int, w: int, scale: int = 4) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    return (torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen),
            torch.rand(1, 3, scale * h, scale * w, generator=gen))


def interleaved(models: dict[str, torch.nn.Module], inputs: tuple, rounds: int) -> dict[str, dict[str, float]]:
    """Median wall and thread-CPU ms per model, calls alternating model by model."""
    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():
            m.eval()(*inputs)  # warm-up
        for _ in range(rounds):
            for k, m in models.items():
                w0, c0 = time.perf_counter(), time.thread_time()
                m(*inputs)
                wall[k].append((time.perf_counter() - w0) * 1e3)
                cpu[k].append((time.thread_time() - c0) * 1e3)
    return {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k]),
                "wall_pair": statistics.median(a / b for a, b in zip(wall[k], wall["dense"])),
                "cpu_pair": statistics.median(a / b for a, b in zip(cpu[k], cpu["dense"]))} for k in models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan-size", default="96x160")
    ap.add_argument("--check-sizes", default="64x96,96x160,134x320")
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--importance", default="l2,taylor", help="channel importances to plan with (comma list)")
    ap.add_argument("--strategy", default="block_influence")
    ap.add_argument("--move-cost", default="importance", choices=["importance", "sensitivity"],
                    help="how the planner prices its moves (pk.plan's move_cost)")
    ap.add_argument("--uniform", action="store_true",
                    help="keep every block, cut all channel groups by one fraction (pk.plan's uniform)")
    ap.add_argument("--also-at", default="",
                    help="more LR sizes the plan must hold its ratio at (comma list; LatencyRatio's also_at)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--cache", default=None, help="latency table cache dir (default: prunekit's)")
    ap.add_argument("--out", default="docs/results/latency_target.md")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense = build_model("tecogan.frnet").eval()
    layout = LAYOUTS.get("tecogan.frnet.open_fnet")
    ph, pw = parse_size(args.plan_size)
    graph = pk.analyze(dense, frames(ph, pw), layout)
    also_at = [input_shapes(frames(*parse_size(size))) for size in args.also_at.split(",") if size]
    target = pk.LatencyRatio(args.keep, also_at=also_at or None)
    rows, plans = [], []
    for importance in args.importance.split(","):
        t0 = time.perf_counter()
        plan = pk.plan(dense, graph, strategy=args.strategy, target=target, layout=layout,
                       runner="plain", channel_importance=importance, latency_cache=args.cache,
                       move_cost=args.move_cost, uniform=args.uniform)
        planner_s = time.perf_counter() - t0
        pruned = pk.apply(dense, plan)
        rec = plan.latency
        plans.append((importance, plan, planner_s))
        also = "".join(f", {c.ratio:.3f} at {c.shapes['arg0'][2]}x{c.shapes['arg0'][3]}" for c in rec.also_at)
        print(f"[{importance}] planned in {planner_s:.0f} s: measured {rec.kept:.3f} at plan size{also}, "
              f"{len(plan.removed)} blocks removed, {len(plan.channels)} channel steps", flush=True)
        for size in args.check_sizes.split(","):
            h, w = parse_size(size)
            r = interleaved({"dense": dense, "pruned": pruned}, frames(h, w), args.rounds)
            rows.append((importance, size, r))
            print(f"  {size}: wall {r['pruned']['wall']:.0f}/{r['dense']['wall']:.0f} ms = "
                  f"{r['pruned']['wall'] / r['dense']['wall']:.3f}, paired wall {r['pruned']['wall_pair']:.3f}, "
                  f"cpu {r['pruned']['cpu_pair']:.3f}", flush=True)

    lines = [
        "# Latency target: planned at one size, checked at others",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `benchmarks/latency_target.py "
        f"--plan-size {args.plan_size} --check-sizes {args.check_sizes} --keep {args.keep} --rounds {args.rounds} "
        f"--move-cost {args.move_cost}{' --uniform' if args.uniform else ''}"
        f"{' --also-at ' + args.also_at if args.also_at else ''}` "
        f"on {device_name(torch.device('cpu'))}, shared with other jobs ({machine_text(threads=1)} at the end), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}.",
        "",
        f"Model: FRNet nf 64, nb 10, x4, random weights (seed 0), layout `tecogan.frnet.open_fnet`. Plan: "
        f"`pk.plan(frnet, graph, strategy='{args.strategy}', target=pk.LatencyRatio({args.keep}"
        f"{', also_at=[' + args.also_at + ']' if args.also_at else ''}), "
        f"runner='plain', channel_importance=..., move_cost='{args.move_cost}'"
        f"{', uniform=True' if args.uniform else ''})` at LR {args.plan_size}; "
        "`pk.apply` gives the plain "
        "model that is checked. Check: this script's own loop, one `FRNet.step` per call in "
        f"`torch.inference_mode`, dense and pruned alternating, {args.rounds} rounds after one warm-up, "
        "medians. `wall ratio (of medians)` = pruned median / dense median; `(paired)` = median over rounds "
        "of pruned / dense in the same round (wall clock, or thread CPU time, which does not count time "
        "the core spent on other processes).",
        "",
        "| importance | blocks removed | channel steps | params (total / SRNet) | planner s | planner measured |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for importance, plan, planner_s in plans:
        pruned = pk.apply(dense, plan)
        srnet = sum(p.numel() for p in pruned.srnet.parameters())
        srnet0 = sum(p.numel() for p in dense.srnet.parameters())
        lines.append(f"| {importance} | {len(plan.removed)} | {len(plan.channels)} | "
                     f"{plan.stats.params_after:,} of {plan.stats.params_before:,} / {srnet:,} of {srnet0:,} | "
                     f"{planner_s:.0f} | {plan.latency.kept:.3f} ({plan.latency.iterations} builds) |")
    lines += ["", "| importance | LR size | dense wall ms | pruned wall ms | wall ratio (of medians) | "
              "wall ratio (paired) | cpu ratio (paired) |", "|---|---|---:|---:|---:|---:|---:|"]
    for importance, size, r in rows:
        tag = " (plan size)" if size == args.plan_size else ""
        lines.append(f"| {importance} | {size}{tag} | {r['dense']['wall']:.0f} | {r['pruned']['wall']:.0f} | "
                     f"{r['pruned']['wall'] / r['dense']['wall']:.3f} | {r['pruned']['wall_pair']:.3f} | "
                     f"{r['pruned']['cpu_pair']:.3f} |")
    lines += ["", "Widths chosen (kept / full channels of each cut group, by its first layer):", ""]
    for importance, plan, _ in plans:
        widths = ", ".join(f"`{k}` {v[0]}/{v[1]}" for k, v in plan.latency.widths.items())
        lines.append(f"- {importance}: removed {plan.removed or 'no blocks'}; {widths or 'no width cuts'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
