"""Frames/s of one FRNet recurrent step: dense vs block-pruned, plain vs fast path.

For each LR size and each nb in {10, 9, 7, 5, 3, 1}, the pruned model is the dense nb=10 FRNet with
the last 10-nb SRNet blocks removed by `prunekit.remove_units` (the speed does not depend on which
blocks go). FLOPs are `prunekit.profile.flops` (MACs: one multiply-add = 1, ConvT counted at its input
resolution, adds/interpolation/warp included). Times are per frame (one `FRNet.step`), median over
repeats after warm-up, in `torch.inference_mode`.

    .venv/bin/python benchmarks/inference_speed.py                 # CPU (and CUDA if present)
    .venv/bin/python benchmarks/inference_speed.py --sizes 64x64 --nbs 10,1 --repeats 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any, Callable

import torch

from prunekit.profile import flops
from prunekit.surgery import remove_units
from tecogan_plugin.fast import make_fast
from tecogan_plugin.nets import FRNet


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def time_step(run: Callable[..., Any], inputs: tuple, warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds per call of `run(*inputs)`; CUDA is synchronised around each call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            run(*inputs)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def variants(model: FRNet, device: torch.device) -> dict[str, Callable[..., Any]]:
    """The paths compared: plain PyTorch, fast (channels_last, ConvT kept), fast with the sub-pixel rewrite."""
    out: dict[str, Callable[..., Any]] = {
        "plain": model,
        "fast": make_fast(model, subpixel=False),
        "fast_subpixel": make_fast(model, subpixel=True),
    }
    if device.type == "cuda":
        out["fast_fp16"] = make_fast(model, half=True, subpixel=True)
    return out


def run(sizes: list[tuple[int, int]], nbs: list[int], devices: list[str], warmup: int, repeats: int,
        seed: int = 0) -> list[dict[str, Any]]:
    rows = []
    torch.manual_seed(seed)
    dense = FRNet(nb=10).eval()
    for dev in devices:
        device = torch.device(dev)
        for h, w in sizes:
            gen = torch.Generator().manual_seed(seed)
            inputs_cpu = (torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen),
                          torch.rand(1, 3, 4 * h, 4 * w, generator=gen))
            inputs = tuple(x.to(device) for x in inputs_cpu)
            base: dict[str, float] = {}
            for nb in sorted(nbs, reverse=True):
                model = remove_units(dense, [f"srnet.resblocks.{i}" for i in range(nb, 10)]).eval()
                macs = flops(model, inputs_cpu)
                model = model.to(device)
                row: dict[str, Any] = {"device": dev, "lr_size": f"{h}x{w}", "nb": nb, "gmacs": macs / 1e9}
                for name, runner in variants(model, device).items():
                    times = time_step(runner, inputs, warmup, repeats, device)
                    row[f"{name}_s"] = statistics.median(times)
                    row[f"{name}_min_s"] = min(times)
                if nb == 10:
                    base = {k: v for k, v in row.items() if k.endswith("_s") or k == "gmacs"}
                row["flops_ratio"] = macs / 1e9 / base["gmacs"] if base else float("nan")
                for key in [k for k in row if k.endswith("_s") and not k.endswith("_min_s")]:
                    row[key.replace("_s", "_ratio")] = row[key] / base[key] if base else float("nan")
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


HEADER = ("| device | LR | nb | GMACs | FLOPs ratio | plain fps | fast fps | fast+subpixel fps "
          "| plain latency ratio | fast latency ratio | fast speed-up |")


def format_row(r: dict[str, Any]) -> str:
    return (f"| {r['device']} | {r['lr_size']} | {r['nb']} | {r['gmacs']:.2f} | {r['flops_ratio']:.3f} "
            f"| {1 / r['plain_s']:.2f} | {1 / r['fast_s']:.2f} | {1 / r['fast_subpixel_s']:.2f} "
            f"| {r['plain_ratio']:.3f} | {r['fast_ratio']:.3f} | {r['plain_s'] / r['fast_s']:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="134x320,144x180", help="LR sizes HxW, comma-separated")
    parser.add_argument("--nbs", default="10,9,7,5,3,1", help="SRNet block counts (10 = dense baseline)")
    parser.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, plus cuda when available)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the rows and settings to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    nbs = [int(n) for n in args.nbs.split(",")]
    if 10 not in nbs:
        nbs.append(10)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    settings = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "warmup": args.warmup, "repeats": args.repeats,
        "load_avg_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if torch.cuda.is_available():
        settings["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(settings))
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    rows = run([parse_size(s) for s in args.sizes.split(",")], nbs, devices, args.warmup, args.repeats)
    settings["load_avg_end"] = os.getloadavg()
    print(json.dumps({"load_avg_end": settings["load_avg_end"]}))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"settings": settings, "rows": rows}, f, indent=2)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
