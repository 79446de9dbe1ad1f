"""Throughput of the full TecoGAN metric suite (PSNR, SSIM, LPIPS, tOF, tLP100) at 720x576.

Compares `VideoMetrics` (chunked worker processes for tOF/PSNR/SSIM, AlexNet features computed once per
frame and batched, PSNR/SSIM on the GPU when present) with a straightforward frame-by-frame loop
written here the way the official script works: read both frames of a step, then compute each metric
for that frame in turn (two LPIPS calls per tLP value, one per LPIPS value). Both read the same PNGs;
the values must agree (exactly for PSNR/SSIM/tOF, float rounding for LPIPS/tLP).

`--models K` scores K different outputs against the same targets, as a pruning study does. The loop
scores each output from scratch; the library (`cache_targets=True`) computes the targets' flows and
AlexNet features for the first output and reuses them for the others. Reported: the first output
(a single evaluation) and the later ones separately.

    python benchmarks/eval_throughput.py [--seqs 2 --frames 12 --models 3 --device cpu --out result.json]

Without torchvision's ImageNet AlexNet file (`--lpips-weights` or the torch hub cache) a randomly
initialised AlexNet stands in: the cost is identical, the LPIPS values are not meaningful.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import lpips
import numpy as np
import torch
import torchvision
from skimage.metrics import structural_similarity

from prunekit.errors import MissingWeightsError
from prunekit.weights import load_weights_only
from tecogan_plugin.data.frames import list_frames, read_frame
from tecogan_plugin.metrics import VideoMetrics
from tecogan_plugin.metrics.lpips_metric import ALEXNET_FILE, find_alexnet

from _common import machine_text

H, W, CUT = 576, 720, 2
Y_ROW = np.array([0.256788235294118, 0.504129411764706, 0.097905882352941])


# --- synthetic data --------------------------------------------------------------------------------


def make_sequences(root: Path, n_seqs: int, n_frames: int, n_models: int) -> None:
    """Camera pans over smooth random textures; each 'output' (pred0, pred1, ...) adds its own noise
    and a slight blur."""
    rng = np.random.default_rng(0)
    for s in range(n_seqs):
        base = rng.random((H // 16 + 4, (W + 4 * n_frames) // 16 + 4, 3)).astype(np.float32)
        tex = cv2.resize(base, (base.shape[1] * 16, base.shape[0] * 16), interpolation=cv2.INTER_CUBIC)
        tex = np.clip(tex * 255, 0, 255).astype(np.uint8)
        kinds = ["gt"] + [f"pred{k}" for k in range(n_models)]
        for kind in kinds:
            (root / kind / f"seq{s}").mkdir(parents=True)
        for i in range(n_frames):
            gt = tex[8 : 8 + H, 3 * i : 3 * i + W]
            cv2.imwrite(str(root / "gt" / f"seq{s}" / f"{i:04d}.png"), gt[:, :, ::-1])
            for kind in kinds[1:]:
                pred = cv2.GaussianBlur(gt, (3, 3), 0.8).astype(np.int16) + rng.integers(-6, 7, gt.shape)
                pred = np.clip(pred, 0, 255).astype(np.uint8)
                cv2.imwrite(str(root / kind / f"seq{s}" / f"{i:04d}.png"), pred[:, :, ::-1])


# --- the straightforward loop ----------------------------------------------------------------------


def border_crop(img: np.ndarray) -> np.ndarray:
    """Centred multiple-of-32 crop keeping >= 8 px of border (same rule, written independently)."""
    hh, ww = img.shape[:2]
    h = next(k for k in range((hh // 32) * 32, -1, -32) if k <= hh - 16)
    w = next(k for k in range((ww // 32) * 32, -1, -32) if k <= ww - 16)
    return img[(hh - h) // 2 : (hh - h) // 2 + h, (ww - w) // 2 : (ww - w) // 2 + w]


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.reshape(-1, 3).astype(np.float32) @ Y_ROW + 16


def baseline(root: Path, pred_dir: str, names: list[str], model: lpips.LPIPS) -> dict[str, dict[str, list]]:
    """One frame at a time, each metric in turn, as the official loop does."""
    device = next(model.parameters()).device
    out = {}
    for name in names:
        gts, preds = list_frames(root / "gt" / name), list_frames(root / pred_dir / name)
        vals: dict[str, list] = {m: [] for m in ("psnr", "ssim", "lpips", "tof", "tlp")}
        prev = None
        for i in range(CUT, len(gts) - CUT):
            g = cv2.cvtColor(cv2.imread(str(gts[i])), cv2.COLOR_BGR2RGB)
            p = cv2.cvtColor(cv2.imread(str(preds[i])), cv2.COLOR_BGR2RGB)
            gg, pg = cv2.cvtColor(g, cv2.COLOR_RGB2GRAY), cv2.cvtColor(p, cv2.COLOR_RGB2GRAY)
            if prev is not None:
                fg = cv2.calcOpticalFlowFarneback(prev[0], gg, None, 0.5, 3, 15, 3, 5, 1.2, 0)
                fp = cv2.calcOpticalFlowFarneback(prev[1], pg, None, 0.5, 3, 15, 3, 5, 1.2, 0)
                d = border_crop(fg) - border_crop(fp)
                vals["tof"].append(np.sqrt(np.sum(d * d, axis=-1)).mean())
            gc, pc = border_crop(g), border_crop(p)
            yg, yp = luma(gc), luma(pc)
            vals["psnr"].append(20 * math.log10(255 / math.sqrt(np.mean((yg - yp) ** 2))))
            yg2, yp2 = yg.reshape(gc.shape[:2]), yp.reshape(pc.shape[:2])
            vals["ssim"].append(structural_similarity(yg2, yp2, data_range=yp2.max() - yp2.min()))
            tg, tp = lpips.im2tensor(gc).to(device), lpips.im2tensor(pc).to(device)
            with torch.no_grad():
                vals["lpips"].append(model(tg, tp).item())
                if prev is not None:
                    vals["tlp"].append(abs(model(prev[2], tg).item() - model(prev[3], tp).item()) * 100)
            prev = (gg, pg, tg, tp)
        out[name] = {m: np.float32(v) for m, v in vals.items()}
    return out


def load_reference(backbone: Path, device: torch.device) -> lpips.LPIPS:
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    tv = torchvision.models.alexnet(weights=None)
    tv.load_state_dict(load_weights_only(backbone))
    for sl in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for idx, child in sl.named_children():
            child.load_state_dict(tv.features[int(idx)].state_dict())
    return model.eval().to(device)


# --- the library -----------------------------------------------------------------------------------


def library(root: Path, pred_dir: str, names: list[str], vm: VideoMetrics):
    vm.reset()
    for name in names:
        pred = np.stack([read_frame(p) for p in list_frames(root / pred_dir / name)])
        gt = np.stack([read_frame(p) for p in list_frames(root / "gt" / name)])
        vm.update(name, pred, gt)
    return vm.compute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqs", type=int, default=2)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--models", type=int, default=3, help="outputs scored against the same targets")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timed runs of each; the best counts")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--lpips-weights")
    ap.add_argument("--out", help="write the measurements as JSON here")
    args = ap.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        sync()
        return out, time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_sequences(root, args.seqs, args.frames, args.models)
        names = [f"seq{s}" for s in range(args.seqs)]
        preds = [f"pred{k}" for k in range(args.models)]
        try:
            backbone, stand_in = find_alexnet(args.lpips_weights), False
        except MissingWeightsError:
            torch.manual_seed(0)
            backbone, stand_in = root / ALEXNET_FILE, True
            torch.save(torchvision.models.alexnet(weights=None).state_dict(), backbone)

        model = None if args.skip_baseline else load_reference(backbone, device)
        load_before = os.getloadavg()[0]
        # Interleaved runs, so both sides see the same (shared, noisy) machine; the best of each counts.
        # Each repeat starts with an empty target cache: its first output is a cold, single evaluation.
        first, later, loop, startup = [], [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            vm = VideoMetrics(lpips_weights=backbone, device=device, tof_workers=args.workers, cache_targets=True)
            warm = np.stack([read_frame(p) for p in list_frames(root / "pred0" / names[0])])
            vm.update("warm-up", warm, warm)  # workers started, kernels chosen; caches nothing used below
            startup.append(time.perf_counter() - t0)
            for k, pred_dir in enumerate(preds):
                report, t = timed(library, root, pred_dir, names, vm)
                (first if k == 0 else later).append(t)
                if model is not None:
                    ref, t = timed(baseline, root, pred_dir, names, model)
                    loop.append(t)
                    if k == 0:
                        reports, refs = report, ref
            vm.close()
        n_scored = report.count("psnr")
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine_text(device),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
            "frames": f"{args.seqs} sequences x {args.frames} frames of {W}x{H} ({n_scored} scored) per output",
            "outputs": args.models,
            "lpips_backbone": "random stand-in (ImageNet file absent)" if stand_in else str(backbone),
            "workers": args.workers,
            "library_startup_s": min(startup),
            "library_first_output_runs_s": first,
            "library_later_output_runs_s": later,
            "library_first_output_fps": n_scored / min(first),
            "frame_avg": {m: report.frame_avg(m) for m in report.available},
        }
        if later:
            result["library_later_output_fps"] = n_scored / min(later)
        if model is not None:
            result["loop_runs_s"] = loop
            result["loop_fps"] = n_scored / min(loop)
            result["speedup_single_evaluation"] = min(loop) / min(first)
            if later:
                result["speedup_later_outputs"] = min(loop) / min(later)
            diffs = {}
            for m in ("psnr", "ssim", "tof", "lpips", "tlp"):
                ours = np.concatenate([reports.sequence(n).values[m] for n in names])
                theirs = np.concatenate([refs[n][m] for n in names])
                diffs[m] = float(np.max(np.abs(ours.astype(np.float64) - theirs)))
            result["max_abs_diff_first_output"] = diffs
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
