"""How closely does the least-squares sub-pixel head imitate SRNet's ConvTranspose tail, before healing?

1. dense: FRNet (quick-preset settings: nf 64, nb 10, FRVSR on the built-in videos) trained here, or
   loaded from `--dense` (a prunekit checkpoint folder such as a quick bench's runs/dense/final, or a
   published TecoGAN-PyTorch .pth);
2. for each kernel: replace `srnet.conv_up` + `srnet.conv_out` by the sub-pixel head fitted on
   `--calibration` training-clip steps (GT crop `--crop`) with `tecogan_plugin.upsampler.replace_tail`;
3. on the built-in TEST sequences (held out: other photographs than training): PSNR of the head
   model's output against the original model's, (a) per step with the same inputs (the original's
   recurrent state fed to both) and (b) over whole recurrent runs (uint8 frames, each model its own
   state); and both models' official-protocol PSNR against the GT.

    .venv/bin/python benchmarks/subpixel_fit.py --out runs/subpixel_fit
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from prunekit.checkpoint import load
from prunekit.schedule import run
from tecogan_plugin.metrics.video_metrics import VideoMetrics
from tecogan_plugin.nets import FRNet
from tecogan_plugin.train import TecoGANTask
from tecogan_plugin.upsampler import replace_tail

from _common import machine_info

TASK = {"objective": "frvsr", "nf": 64, "nb": 10, "gt_crop": 32, "tempo_extent": 3, "calibration_lr_size": 16}


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(peak**2 / max(mse, 1e-20))


def dense_model(args: argparse.Namespace) -> FRNet:
    if args.dense is not None:
        if args.dense.is_dir():
            return load(args.dense, build=lambda: FRNet(nf=64, nb=10))
        return TecoGANTask(**TASK).load_init(FRNet(nf=64, nb=10), args.dense)
    cfg = {"task": {"name": "tecogan.frvsr", "options": TASK}, "seed": args.seed, "threads": args.threads,
           "out_dir": str(args.out / "dense"), "ckpt_every": 250, "log_every": 50,
           "stages": [{"kind": "train", "iterations": args.train_iters, "batch": 2, "optimizer": {"lr": 1e-3},
                       "lr_schedule": {"kind": "cosine", "min_factor": 0.1}}]}
    return run(cfg, resume=(args.out / "dense" / "checkpoints").is_dir(), progress=True).model


@torch.no_grad()
def compare(dense: FRNet, head: FRNet, sequences) -> dict[str, float]:
    step_psnr, run_psnr = [], []
    for seq in sequences:
        lr = seq.lr_tensor()
        lr_prev, hr_prev = torch.zeros_like(lr[:1]), torch.zeros(1, 3, 4 * lr.shape[2], 4 * lr.shape[3])
        for t in range(lr.shape[0]):  # same inputs for both: the dense model's recurrent state
            cur = lr[t:t + 1]
            a, b = dense(cur, lr_prev, hr_prev), head(cur, lr_prev, hr_prev)
            step_psnr.append(_psnr(a.clamp(0, 1).numpy(), b.clamp(0, 1).numpy(), 1.0))
            lr_prev, hr_prev = cur, a
        frames = list(lr)
        a = np.stack(list(dense.infer_sequence(frames)))
        b = np.stack(list(head.infer_sequence(frames)))
        run_psnr.append(_psnr(a, b, 255.0))
    return {"step_psnr_vs_original": float(np.mean(step_psnr)), "run_psnr_vs_original": float(np.mean(run_psnr))}


@torch.no_grad()
def gt_psnr(model: FRNet, sequences) -> float:
    vm = VideoMetrics(metrics=("psnr",), tof_workers=0)
    try:
        for seq in sequences:
            vm.update(seq.name, np.stack(list(model.infer_sequence(list(seq.lr_tensor())))), seq.gt)
        return float(vm.compute().frame_avg("psnr"))
    finally:
        vm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/subpixel_fit"))
    ap.add_argument("--dense", type=Path, default=None, help="prunekit checkpoint folder or published .pth")
    ap.add_argument("--train-iters", type=int, default=1500)
    ap.add_argument("--kernels", default="3,5")
    ap.add_argument("--calibration", type=int, default=16, help="calibration steps (training clips)")
    ap.add_argument("--crop", type=int, default=128, help="GT crop of the calibration clips")
    ap.add_argument("--ridge", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dense = dense_model(args).cpu().eval()
    task = TecoGANTask(**TASK, calibration_gt_crop=args.crop)
    calib = task.calibration(args.calibration).inputs
    test = task._test_set()
    results = {"dense_gt_psnr": gt_psnr(dense, test), "heads": {}}
    for kernel in (int(k) for k in args.kernels.split(",")):
        head = copy.deepcopy(dense)
        start = time.perf_counter()
        fit = replace_tail(head, kernel=kernel, calibration=calib, ridge=args.ridge)
        fit_s = time.perf_counter() - start
        results["heads"][kernel] = {"fit": fit, "fit_s": fit_s, **compare(dense, head.eval(), test),
                                    "gt_psnr": gt_psnr(head, test)}
        print(kernel, json.dumps(results["heads"][kernel]), flush=True)
    results["meta"] = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine_info("cpu"), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "subpixel_fit.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
