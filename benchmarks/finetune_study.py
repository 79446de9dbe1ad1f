"""Does fine-tuning heal a pruned FRNet, and does distillation heal it better? (cpu-quick scale)

1. dense: FRNet nf 64 / nb 10 trained with the FRVSR objective on the built-in videos;
2. prune it to 5 blocks (block_influence on calibration clips), evaluated right away (no fine-tuning);
3. fine-tune that pruned model for the same number of iterations, plain vs distilled from the dense one;
4. control: the dense model trained for those iterations more (does pruning + healing lose anything?).

Every run goes through `prunekit.schedule.run`; metrics are the official-protocol PSNR/SSIM (frame
averages) on the built-in test set. Writes `<out>/study.json` and prints a markdown table.

    .venv/bin/python benchmarks/finetune_study.py --out runs/finetune_study
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from prunekit.schedule import run

from _common import machine_info

TASK = {"objective": "frvsr", "nf": 64, "nb": 10, "gt_crop": 32, "tempo_extent": 3, "calibration_lr_size": 16}


def _stage(kind: str, iterations: int, lr: float, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "iterations": iterations, "batch": 2, "optimizer": {"lr": lr},
            "lr_schedule": {"kind": "cosine", "min_factor": 0.1}, **extra}


def _run(out: Path, name: str, stages: list[dict[str, Any]], seed: int, threads: int, init: Path | None = None
         ) -> tuple[Any, float]:
    cfg = {"task": {"name": "tecogan.frvsr", "options": TASK}, "seed": seed, "stages": stages,
           "out_dir": str(out / name), "ckpt_every": 250, "log_every": 10, "threads": threads,
           "init_checkpoint": str(init) if init else None}
    start = time.perf_counter()
    resume = (out / name / "checkpoints").is_dir()
    result = run(cfg, resume=resume, progress=True)
    return result, time.perf_counter() - start


def _after_prune(history: list[dict[str, Any]]) -> dict[str, float]:
    row = next(h for h in history if h["phase"] == "prune" and "eval_psnr" in h)
    return {k: v for k, v in row.items() if k.startswith("eval_")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/finetune_study"))
    ap.add_argument("--train-iters", type=int, default=1500)
    ap.add_argument("--finetune-iters", type=int, default=400)
    ap.add_argument("--keep", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()

    dense, t_dense = _run(args.out, "dense", [_stage("train", args.train_iters, 1e-3)], args.seed, args.threads)
    prune = {"kind": "prune", "strategy": "block_influence", "calibration": 8,
             "target": {"kind": "keep_blocks", "n": args.keep}}
    init = args.out / "dense" / "final"
    plain, t_plain = _run(args.out, "finetune_plain", [prune, _stage("finetune", args.finetune_iters, 5e-4)],
                          args.seed, args.threads, init)
    distill, t_distill = _run(args.out, "finetune_distill",
                              [prune, _stage("finetune", args.finetune_iters, 5e-4, distill={"weight": 1.0})],
                              args.seed, args.threads, init)
    more, t_more = _run(args.out, "dense_more", [_stage("train", args.finetune_iters, 5e-4)], args.seed, args.threads,
                        init)
    params = sum(p.numel() for p in dense.model.parameters())
    rows = [
        {"model": f"dense nb={TASK['nb']}", "finetune": "-", "params": params, **dense.metrics, "wall_s": t_dense},
        {"model": f"dense nb={TASK['nb']}", "finetune": f"trained {args.finetune_iters} it more (same budget)",
         "params": params, **more.metrics, "wall_s": t_more},
        {"model": f"pruned nb={args.keep}", "finetune": "none", "params": plain.plan.stats.params_after,
         **_after_prune(plain.history), "wall_s": None},
        {"model": f"pruned nb={args.keep}", "finetune": f"plain {args.finetune_iters} it",
         "params": plain.plan.stats.params_after, **plain.metrics, "wall_s": t_plain},
        {"model": f"pruned nb={args.keep}", "finetune": f"distill {args.finetune_iters} it",
         "params": distill.plan.stats.params_after, **distill.metrics, "wall_s": t_distill},
    ]
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info("cpu"),
        "torch": torch.__version__, "seed": args.seed, "task": TASK, "train_iters": args.train_iters,
        "finetune_iters": args.finetune_iters, "removed": plain.plan.removed,
        "same_plan": plain.plan.removed == distill.plan.removed, "rows": rows,
        "total_wall_s": time.perf_counter() - t0,
    }
    (args.out / "study.json").write_text(json.dumps(report, indent=2))
    print("| model | fine-tuning | params | PSNR-Y | SSIM | wall s |\n|---|---|---|---|---|---|")
    for r in rows:
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] is not None else "-"
        print(f"| {r['model']} | {r['finetune']} | {r['params']:,} | {r['eval_psnr']:.3f} | {r['eval_ssim']:.4f} | {wall} |")
    print(f"removed: {report['removed']}; total wall {report['total_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
