"""Training-loader throughput for TecoGAN: batches/s of BD training clips (batch 4, tempo_extent 10,
crop 128, LR made by BD on the fly) from PNG folders and from LMDB, with 0 and 2 DataLoader
workers, compared with the time of one FRVSR generator training step, to show whether the loader
can keep up. Uses the built-in synthetic set, so it runs anywhere.

    python benchmarks/data_throughput.py [--batches 20] [--out docs/results/data_throughput.md]
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tecogan_plugin.data.degrade import bd_train_pair
from tecogan_plugin.data.lmdb_store import build_lmdb
from tecogan_plugin.data.sampler import TrainingClips
from tecogan_plugin.data.synthetic import ensure_builtin

from _common import machine_text

BATCH, TEMPO, CROP = 4, 10, 128


def loader_rate(source: Path, workers: int, batches: int, device: torch.device) -> float:
    """Batches per second, LR made on `device` as in training; the first batch (worker start-up)
    is not timed."""
    ds = TrainingClips(source, tempo_extent=TEMPO, gt_crop=CROP, seed=0)
    g = torch.Generator().manual_seed(0)
    dl = DataLoader(ds, batch_size=BATCH, shuffle=True, generator=g, num_workers=workers, drop_last=True)
    it = iter(dl)
    bd_train_pair(next(it).to(device))
    done = 0
    t0 = time.perf_counter()
    while done < batches:
        try:
            clip = next(it)
        except StopIteration:
            it = iter(dl)
            continue
        lr, gt = bd_train_pair(clip.to(device))
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - t0)


def clip_cpu_ms(source: Path, clips: int) -> float:
    """CPU milliseconds to produce one clip in this process (unaffected by other jobs' load)."""
    ds = TrainingClips(source, tempo_extent=TEMPO, gt_crop=CROP, seed=0)
    ds[0]
    t0 = time.process_time()
    for i in range(clips):
        ds[(i * 7) % len(ds)]
    return (time.process_time() - t0) / clips * 1000


def bd_cpu_ms(device: torch.device, reps: int = 5) -> float:
    """Milliseconds of `bd_train_pair` on one batch on `device`."""
    clip = torch.randint(0, 256, (BATCH, TEMPO, 3, CROP + 8, CROP + 8), dtype=torch.uint8, device=device)
    bd_train_pair(clip)
    t0 = time.perf_counter()
    for _ in range(reps):
        bd_train_pair(clip)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps * 1000


def train_step_seconds(device: torch.device, steps: int) -> float | None:
    """Seconds per FRVSR generator step (pixel + warping L1, Adam) on one batch; None without nets."""
    try:
        from tecogan_plugin.nets import FRNet
        from tecogan_plugin.ops import backward_warp
    except ImportError:
        return None
    net = FRNet().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    clip = torch.rand(BATCH, TEMPO, 3, CROP + 8, CROP + 8, device=device)
    lr, gt = bd_train_pair(clip)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        out = net.forward_sequence(lr)
        loss = F.l1_loss(out["hr"], gt)
        warped = backward_warp(out["lr_prev"], out["lr_flow"])
        loss = loss + F.l1_loss(warped, out["lr_curr"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20, help="timed batches per configuration")
    ap.add_argument("--train-steps", type=int, default=2, help="timed FRNet steps (0 to skip)")
    ap.add_argument("--root", default=None, help="built-in set folder (default: the cache)")
    ap.add_argument("--out", default=None, help="write a markdown report here")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = ensure_builtin(args.root) / "train"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build_lmdb(train, Path(tmp) / "GT.lmdb")
        build_s = time.perf_counter() - t0
        cpu = {}
        for name, src in (("PNG folders", train), ("LMDB", store)):
            cpu[name] = clip_cpu_ms(src, 40)
            print(f"{name:12s} {cpu[name]:.1f} CPU ms per clip")
            for workers in (0, 2):
                rate = loader_rate(src, workers, args.batches, device)
                rows.append((name, workers, rate))
                print(f"{name:12s} workers={workers}: {rate:6.2f} batches/s")
    bd_ms = bd_cpu_ms(device)
    print(f"bd_train_pair: {bd_ms:.1f} ms per batch on {device}")
    step = train_step_seconds(device, args.train_steps) if args.train_steps else None
    if step is not None:
        print(f"FRNet training step: {step:.2f} s ({1 / step:.2f} steps/s)")

    if args.out:
        lines = [
            "# TecoGAN training-loader throughput",
            "",
            f"Measured {datetime.date.today().isoformat()} with `python benchmarks/data_throughput.py "
            f"--batches {args.batches} --train-steps {args.train_steps}`.",
            "",
            f"Machine (shared with other jobs while measuring): {machine_text(device)}.",
            f"Settings: built-in synthetic train set (8 sequences x 20 frames, 192x192), batch {BATCH}, "
            f"tempo_extent {TEMPO}, GT crop {CROP} (+2x4 px BD border = 136), reference augmentations, "
            "LR made by `bd_train_pair` on the device in the loop (as in training). "
            f"Building the LMDB took {build_s:.1f} s.",
            "",
            "| source | workers | batches/s (wall clock) |",
            "|---|---|---|",
            *[f"| {n} | {w} | {r:.2f} |" for n, w, r in rows],
            "",
            "Because the machine was shared, the wall-clock rates above understate what the loader does "
            "on an idle machine. The CPU cost per clip (one process, unaffected by other jobs) is:",
            "",
            "| source | CPU ms per clip | CPU ms per batch of 4 |",
            "|---|---|---|",
            *[f"| {n} | {c:.1f} | {4 * c:.1f} |" for n, c in cpu.items()],
            "",
            f"`bd_train_pair` (the on-the-fly BD LR, run by the training step on its device) takes "
            f"{bd_ms:.1f} ms per batch on {device}.",
            "",
        ]
        if step is not None:
            lines += [
                f"One FRVSR generator training step (FRNet nf=64 nb=10, pixel + warping L1, Adam, same batch) "
                f"takes **{step:.2f} s** on this device ({1 / step:.2f} steps/s).",
                "",
            ]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines))


if __name__ == "__main__":
    main()
