"""Tables of the compression study from its bench runs (see benchmarks/compression_study.sh).

Reads `<root>/<preset>-seed<N>/results.json` for every seed found and prints markdown: one row per
model (key) with its measured fast-path latency ratio per seed, PSNR per seed and its difference to
the dense control of the same seed, sizes, and the goal check: the best model at <= `--keep` of the
dense latency (in every seed) and whether it stays within `--tolerance` dB of the control in every
seed. Nothing is computed here that the bench did not measure.

    .venv/bin/python benchmarks/compression_study.py runs/compression-study --preset quick --keep 0.33
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any


def load_runs(root: Path, preset: str) -> dict[int, dict[str, Any]]:
    runs = {}
    for path in sorted(root.glob(f"{preset}-seed*/results.json")):
        seed = int(re.search(r"seed(\d+)$", path.parent.name).group(1))
        runs[seed] = json.loads(path.read_text())
    if not runs:
        raise SystemExit(f"no {preset}-seed*/results.json under {root}: run benchmarks/compression_study.sh first")
    return runs


def psnr(row: dict[str, Any]) -> float:
    return next(iter(row["metrics"].values()))["psnr"]


def tables(runs: dict[int, dict[str, Any]], keep: float, tolerance: float) -> str:
    seeds = sorted(runs)
    rows = {s: {r["key"]: r for r in runs[s]["rows"]} for s in seeds}
    keys = [r["key"] for r in runs[seeds[0]]["rows"] if all(r["key"] in rows[s] for s in seeds)]
    head = ("| model | blocks | params total | SRNet params | GMACs | "
            + " | ".join(f"latency ratio s{s} | PSNR s{s} | vs control s{s}" for s in seeds) + " |")
    lines = [head, "|" + "---|" * (5 + 3 * len(seeds))]
    delta: dict[str, dict[int, float]] = {}
    for key in keys:
        first = rows[seeds[0]][key]
        cells = [key, str(first["blocks"]), f"{first['params_total']:,}", f"{first['params_srnet']:,}",
                 f"{first['gmacs']:.2f}"]
        for s in seeds:
            r, control = rows[s][key], rows[s]["dense-control"]
            delta.setdefault(key, {})[s] = psnr(r) - psnr(control)
            cells += [f"{r['latency_ratio']:.3f}", f"{psnr(r):.3f}", f"{delta[key][s]:+.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    fast = [k for k in keys if k not in ("dense", "dense-control", "bicubic")
            and all(rows[s][k]["latency_ratio"] <= keep for s in seeds)]
    lines.append("")
    if not fast:
        lines.append(f"Goal: no pruned model measured <= {keep} x the dense latency in every seed.")
    else:
        best = max(fast, key=lambda k: min(delta[k].values()))
        worst = min(delta[best].values())
        verdict = "met" if worst >= -tolerance else "NOT met"
        lines.append(f"Goal ({keep} x latency, within {tolerance} dB of the control in every seed): {verdict}. "
                     f"Best model at <= {keep} x latency: `{best}`, PSNR vs control "
                     + ", ".join(f"seed {s}: {delta[best][s]:+.3f} dB" for s in seeds) + ".")
    for s in seeds:
        meta = runs[s]["meta"]
        lines.append(f"- seed {s}: {meta['machine']['platform']}, {meta['machine']['cpu_count']} cores, "
                     f"finished {meta['finished']}; latency: {meta['latency']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--keep", type=float, default=0.33)
    ap.add_argument("--tolerance", type=float, default=0.1)
    args = ap.parse_args()
    print(tables(load_runs(args.root, args.preset), args.keep, args.tolerance))


if __name__ == "__main__":
    main()
