"""Frames/s of `prunekit upscale`'s streaming pipeline, and how closely tiled runs match untiled ones.

Speed: for each LR size, dense FRNet (nb 10) vs the same model block-pruned to nb 5 (the last five SRNet
blocks removed by `prunekit.surgery.apply`; speed does not depend on which blocks go), each through the
plain and the fast path (`make_fast`). A frame costs one `next()` on `upscale_frames` (uint8 in, one
recurrent step, uint8 out), untiled, without temporal warm-up. All configurations of one size are timed
round-robin, one frame each per round (the first round is dropped), recording wall-clock and process CPU
time, so background load on a shared machine hits them alike. On CPU the headline is frames/s from the
median CPU time per frame (with --threads 1: single-core compute, insensitive to other processes); on
CUDA, from the median wall time.

Agreement: a 48 x 320 LR strip (so tile seams are the only difference) upscaled untiled and with tile 64
at several overlaps, for the random-init dense model and for a "stress" copy whose FNet output layer is
scaled x50 so flows saturate near the +-24 px limit. Reported: max and mean |tiled - untiled| in uint8
levels over all frames, and the share of differing values.

    .venv/bin/python benchmarks/upscale_speed.py --threads 1 --out docs/results/upscale_speed.md
    .venv/bin/python benchmarks/upscale_speed.py --sizes 36x44 --rounds 2 --agreement-frames 2   # smoke run
"""

from __future__ import annotations

import argparse
import copy
import datetime
import statistics
import time
from typing import Iterator

import numpy as np
import torch

import prunekit as pk
from prunekit.fileio import atomic_write
from prunekit.surgery import apply
from tecogan_plugin.nets import FRNet
from tecogan_plugin.upscale import upscale_frames

from _common import machine_text, parse_size


def drifting(h: int, w: int, n: int | None = None, seed: int = 0) -> Iterator[np.ndarray]:
    """A random texture panning one pixel right and down per frame (so FNet sees real motion)."""
    rng = np.random.default_rng(seed)
    span = 64
    base = rng.integers(0, 256, (h + span, w + span, 3), dtype=np.uint8)
    i = 0
    while n is None or i < n:
        k = i % span
        yield np.ascontiguousarray(base[k : k + h, k : k + w])
        i += 1


def models() -> dict[str, FRNet]:
    torch.manual_seed(0)
    dense = FRNet(nb=10).eval()
    plan = pk.Plan.identity(dense).model_copy(update={"removed": [f"srnet.resblocks.{i}" for i in range(5, 10)]})
    return {"dense nb10": dense, "pruned nb5": apply(dense, plan).eval()}


def time_size(h: int, w: int, rounds: int, device: torch.device) -> list[dict]:
    """Round-robin timing of every (model, path) configuration at one LR size."""
    streams = {
        (name, path): upscale_frames(model, drifting(h, w), tile=0, device=device, fast=path == "fast", warmup=0)
        for name, model in models().items()
        for path in ("plain", "fast")
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in streams}
    for r in range(rounds + 1):
        for key, stream in streams.items():
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            next(stream)
            sync()
            if r:  # round 0 pays for first-call setup
                times[key].append((time.perf_counter() - wall, time.process_time() - cpu))
    rows = []
    for (name, path), t in times.items():
        wall = statistics.median(x[0] for x in t)
        cpu = statistics.median(x[1] for x in t)
        rows.append({"size": f"{w}x{h}", "model": name, "path": path, "wall_fps": 1 / wall, "cpu_fps": 1 / cpu,
                     "wall_s": wall, "cpu_s": cpu, "frames": len(t)})
    return rows


def stress(model: FRNet) -> FRNet:
    """A copy whose flows saturate: FNet's last conv scaled x50 before the tanh."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.fnet.flow[2].weight.mul_(50)
        out.fnet.flow[2].bias.mul_(50)
    return out


def agreement(frames: int, overlaps: list[int], device: torch.device) -> list[dict]:
    h, w, tile = 48, 320, 64
    dense = models()["dense nb10"]
    rows = []
    for label, model in (("random init", dense), ("stress (flows ~ +-24 px)", stress(dense))):
        clip = list(drifting(h, w, frames, seed=1))
        whole = list(upscale_frames(model, clip, tile=0, device=device, warmup=0))
        for overlap in overlaps:
            tiled = list(upscale_frames(model, clip, tile=tile, overlap=overlap, device=device, warmup=0))
            diff = np.stack([np.abs(a.astype(np.int16) - b) for a, b in zip(whole, tiled)])
            rows.append({"model": label, "overlap": overlap, "max": int(diff.max()), "mean": float(diff.mean()),
                         "differ": float((diff > 0).mean()), "last_max": int(diff[-1].max())})
    return rows


def speed_table(rows: list[dict], device: torch.device) -> str:
    head = "| LR size | model | path | frames/s (CPU time) | frames/s (wall) | s/frame (CPU) | speed-up vs dense plain |"
    if device.type == "cuda":
        head = "| LR size | model | path | frames/s (wall) | frames/s (CPU time) | s/frame (wall) | speed-up vs dense plain |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|"]
    key = "wall_fps" if device.type == "cuda" else "cpu_fps"
    for r in rows:
        base = next(b for b in rows if b["size"] == r["size"] and b["model"] == "dense nb10" and b["path"] == "plain")
        first, second = (r["wall_fps"], r["cpu_fps"]) if device.type == "cuda" else (r["cpu_fps"], r["wall_fps"])
        per = r["wall_s"] if device.type == "cuda" else r["cpu_s"]
        lines.append(f"| {r['size']} | {r['model']} | {r['path']} | {first:.3f} | {second:.3f} | {per:.2f} "
                     f"| {r[key] / base[key]:.2f}x |")
    return "\n".join(lines)


def agreement_table(rows: list[dict]) -> str:
    lines = ["| model | overlap (LR px) | max diff (levels) | max diff, last frame | mean diff | values differing |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['overlap']} | {r['max']} | {r['last_max']} | {r['mean']:.4f} "
                     f"| {100 * r['differ']:.3f}% |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="180x144,480x270", help="LR sizes WxH, comma-separated")
    p.add_argument("--rounds", type=int, default=3, help="timed frames per configuration (after one untimed)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--agreement-frames", type=int, default=6, help="frames in the tiled-vs-untiled check (0: skip)")
    p.add_argument("--overlaps", default="0,16,32,64", help="tile overlaps to compare, LR px")
    p.add_argument("--out", default=None, help="write the markdown results here (atomically)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    started = time.perf_counter()
    rows = [r for size in args.sizes.split(",") for r in time_size(*parse_size(size, "WxH"), args.rounds, device)]
    text = [f"## Speed ({device.type})", "", speed_table(rows, device)]
    print("\n".join(text), flush=True)
    if args.agreement_frames:
        agree = agreement(args.agreement_frames, [int(x) for x in args.overlaps.split(",")], device)
        block = ["", f"## Tiled vs untiled ({args.agreement_frames} frames, 48x320 LR strip, tile 64)", "",
                 agreement_table(agree)]
        print("\n".join(block))
        text += block
    settings = (f"Run {datetime.date.today()} in {time.perf_counter() - started:.0f} s: "
                f"`benchmarks/upscale_speed.py --sizes {args.sizes} --rounds {args.rounds} "
                f"--threads {torch.get_num_threads()} --agreement-frames {args.agreement_frames} "
                f"--overlaps {args.overlaps}`  \nMachine: {machine_text(device)}")
    print("\n" + settings)
    if args.out:
        atomic_write(args.out, "\n".join(["<!-- generated by benchmarks/upscale_speed.py -->", settings, "", *text, ""]))


if __name__ == "__main__":
    main()
