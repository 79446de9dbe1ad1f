"""Frames/s of one FRNet recurrent step: dense vs block-pruned, plain vs fast path.

For each LR size and each nb in {10, 9, 7, 5, 3, 1}, the pruned model is the dense nb=10 FRNet with
the last 10-nb SRNet blocks removed by `prunekit.remove_units` (the speed does not depend on which
blocks go). FLOPs are `prunekit.profile.flops` (MACs: one multiply-add = 1, ConvT counted at its input
resolution, adds/interpolation/warp included). A frame costs one `FRNet.step` in `torch.inference_mode`.

Timing is built for a shared machine: all (nb, path) combinations of one size are timed round-robin,
one call each per round, so background load hits them alike; per call both wall-clock time and the
process's CPU time are recorded. On CPU the table uses the median CPU time (with --threads 1 this is
the single-core compute time, insensitive to other processes taking the core); on CUDA, wall time.

    .venv/bin/python benchmarks/inference_speed.py --threads 1       # CPU (and CUDA if present)
    .venv/bin/python benchmarks/inference_speed.py --sizes 64x64 --nbs 10,1 --repeats 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Callable

import torch

from prunekit.profile import flops
from prunekit.surgery import remove_units
from tecogan_plugin.fast import make_fast
from tecogan_plugin.nets import FRNet

from _common import machine_text, parse_size


def time_call(run: Callable[..., Any], inputs: tuple, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one `run(*inputs)`; CUDA is synchronised around it."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        run(*inputs)
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu


def variants(model: FRNet, device: torch.device) -> dict[str, Callable[..., Any]]:
    """The paths compared: plain PyTorch; fast = `make_fast` defaults (channels_last, in-place
    activations, and on CUDA graph replay); fast with the sub-pixel rewrite; on CUDA also the fast
    path without graphs (eager) and in fp16."""
    out: dict[str, Callable[..., Any]] = {
        "plain": model,
        "fast": make_fast(model),
        "fast_subpixel": make_fast(model, subpixel=True),
    }
    if device.type == "cuda":
        out["fast_eager"] = make_fast(model, cuda_graph=False)
        out["fast_fp16"] = make_fast(model, half=True)
    return out


def run(sizes: list[tuple[int, int]], nbs: list[int], devices: list[str], warmup: int, repeats: int,
        seed: int = 0) -> list[dict[str, Any]]:
    rows = []
    torch.manual_seed(seed)
    dense = FRNet(nb=10).eval()
    nbs = sorted(set(nbs) | {10}, reverse=True)
    for dev in devices:
        device = torch.device(dev)
        for h, w in sizes:
            gen = torch.Generator().manual_seed(seed)
            inputs_cpu = (torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen),
                          torch.rand(1, 3, 4 * h, 4 * w, generator=gen))
            inputs = tuple(x.to(device) for x in inputs_cpu)
            runners: dict[tuple[int, str], Callable[..., Any]] = {}
            size_rows: dict[int, dict[str, Any]] = {}
            for nb in nbs:
                model = remove_units(dense, [f"srnet.resblocks.{i}" for i in range(nb, 10)]).eval()
                size_rows[nb] = {"device": dev, "lr_size": f"{h}x{w}", "nb": nb, "gmacs": flops(model, inputs_cpu) / 1e9}
                for name, runner in variants(model.to(device), device).items():
                    runners[(nb, name)] = runner
            samples: dict[tuple[int, str], list[tuple[float, float]]] = {key: [] for key in runners}
            for i in range(warmup + repeats):
                for key, runner in runners.items():
                    t = time_call(runner, inputs, device)
                    if i >= warmup:
                        samples[key].append(t)
            for (nb, name), times in samples.items():
                row = size_rows[nb]
                row[f"{name}_wall_s"] = statistics.median(t[0] for t in times)
                row[f"{name}_wall_min_s"] = min(t[0] for t in times)
                row[f"{name}_cpu_s"] = statistics.median(t[1] for t in times)
                row[f"{name}_s"] = row[f"{name}_cpu_s"] if device.type == "cpu" else row[f"{name}_wall_s"]
            base = size_rows[10]
            for nb in nbs:
                row = size_rows[nb]
                row["flops_ratio"] = row["gmacs"] / base["gmacs"]
                for name in dict.fromkeys(key[1] for key in runners):
                    row[f"{name}_ratio"] = row[f"{name}_s"] / base[f"{name}_s"]
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


HEADER = ("| device | LR | nb | GMACs | FLOPs ratio | plain fps | fast fps | fast+subpixel fps "
          "| plain latency ratio | fast latency ratio | fast speed-up |")


def format_row(r: dict[str, Any]) -> str:
    return (f"| {r['device']} | {r['lr_size']} | {r['nb']} | {r['gmacs']:.2f} | {r['flops_ratio']:.3f} "
            f"| {1 / r['plain_s']:.2f} | {1 / r['fast_s']:.2f} | {1 / r['fast_subpixel_s']:.2f} "
            f"| {r['plain_ratio']:.3f} | {r['fast_ratio']:.3f} | {r['plain_s'] / r['fast_s']:.2f}x |"
            + "".join(f" {k} {1 / r[k + '_s']:.2f} fps, ratio {r[k + '_ratio']:.3f} |"
                      for k in ("fast_eager", "fast_fp16") if k + "_s" in r))


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
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    settings = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "machine": machine_text(), "warmup": args.warmup, "repeats": args.repeats,
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
