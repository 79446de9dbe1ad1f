"""One FRNet recurrent step: ONNX Runtime (the file `prunekit export` writes) vs PyTorch's fast path.

Models: the dense FRNet (nf 64, nb 10, random init, seed 0) and the same model pruned to 5 blocks and
half of SRNet's feature channels (magnitude scores). Each is exported with `prunekit.export.export_onnx`
(which also checks parity) and timed on one LR frame size with three inputs (lr_curr, lr_prev, hr_prev)
in float32: PyTorch `make_fast` (channels_last, in-place activations) under inference_mode, and an ONNX
Runtime session (all graph optimisations), each at 1 and 2 intra-op threads. All configurations are
timed round-robin, one step each per round (round 0 dropped as warm-up), so load on a shared machine
hits them alike; reported: median wall time per step, its spread (min..max), median process CPU time.
CUDA and TensorRT execution providers are timed when onnxruntime offers them and a GPU is present.

    .venv/bin/python benchmarks/export_speed.py --out docs/results/export_speed.md
    .venv/bin/python benchmarks/export_speed.py --size 48x40 --rounds 2            # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import onnxruntime as ort
import torch

import prunekit as pk
from prunekit.commands.analyze import resolve_layout
from prunekit.export import export_onnx
from prunekit.fileio import atomic_write
from prunekit.models import build_model
from tecogan_plugin.fast import make_fast

from _common import machine_text, parse_size


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    dense = build_model("tecogan.frnet").eval()
    spec = pk.spec_of(dense)
    inputs = spec.example_inputs()
    graph = pk.analyze(dense, inputs, resolve_layout("tecogan.frnet"))
    plan = pk.plan(dense, graph, strategy="magnitude", target=[pk.KeepBlocks(n=5), pk.ChannelRatio(prune=0.5)])
    return {"dense nb10 nf64": dense, "pruned nb5, SRNet width 1/2": pk.apply(dense, plan, inputs).eval()}


def providers() -> list[str]:
    found = ["CPUExecutionProvider"]
    if torch.cuda.is_available():
        found += [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in ort.get_available_providers()]
    return found


def session(path: Path, threads: int, provider: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=[provider])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="320x134", help="LR frame WxH (default 320x134)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds (+1 warm-up round)")
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    args = ap.parse_args()
    h, w = parse_size(args.size, "WxH")
    threads = [int(t) for t in args.threads.split(",")]
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen),
         torch.rand(1, 3, 4 * h, 4 * w, generator=gen))
    feed = {n: t.numpy() for n, t in zip(["lr_curr", "lr_prev", "hr_prev"], x)}

    runs: dict[tuple[str, str, int], Callable[[], object]] = {}
    parity: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="export_speed."))
    for name, model in models().items():
        path = tmp / f"{len(parity)}.onnx"
        parity[name] = export_onnx(model, pk.spec_of(model), path).max_abs_diff
        params = sum(p.numel() for p in model.parameters())
        srnet = sum(p.numel() for p in model.srnet.parameters())
        name = f"{name} ({params:,} params, SRNet {srnet:,})"
        fast = make_fast(model)
        for t in threads:
            def torch_step(fast=fast, t=t) -> object:
                torch.set_num_threads(t)
                with torch.inference_mode():
                    return fast(*x)

            runs[(name, "PyTorch make_fast", t)] = torch_step
            for provider in providers():
                sess = session(path, t, provider)
                runs[(name, f"ONNX Runtime {provider.replace('ExecutionProvider', '')}", t)] = (
                    lambda sess=sess: sess.run(None, feed))

    wall: dict[tuple, list[float]] = {k: [] for k in runs}
    cpu: dict[tuple, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds + 1):
        for key, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            if r:
                wall[key].append(time.perf_counter() - w0)
                cpu[key].append(time.process_time() - c0)

    lines = [
        "# Export speed: one FRNet step, ONNX Runtime vs PyTorch fast path",
        "",
        f"Measured {datetime.date.today()} by `benchmarks/export_speed.py --size {args.size} --threads {args.threads} "
        f"--rounds {args.rounds}`.",
        f"Machine: {machine_text()}; onnxruntime {ort.__version__}.",
        f"LR {w}x{h} -> HR {4 * w}x{4 * h}, batch 1, float32, random-init weights (speed does not depend on them). "
        f"{args.rounds} interleaved rounds after one warm-up round.",
        "Parity of each exported file (largest |ONNX Runtime - PyTorch| over three input sizes): "
        + ", ".join(f"{k}: {v:.2g}" for k, v in parity.items()) + ".",
        "",
        "| model | backend | threads | median ms/step | spread (min..max) | median CPU ms/step |",
        "|---|---|---:|---:|---|---:|",
    ]
    for (name, backend, t), values in wall.items():
        lines.append(f"| {name} | {backend} | {t} | {1e3 * statistics.median(values):.0f} | "
                     f"{1e3 * min(values):.0f}..{1e3 * max(values):.0f} | "
                     f"{1e3 * statistics.median(cpu[(name, backend, t)]):.0f} |")
    if len(providers()) == 1:
        lines += ["", "CUDA / TensorRT execution providers: not measured (no GPU or no onnxruntime-gpu here)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        atomic_write(args.out, text)


if __name__ == "__main__":
    main()
