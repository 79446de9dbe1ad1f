"""Prune an EDSR that *you* trained with your own loop, then heal it with prunekit's schedule engine.

No plugin is involved: the model, data and loss are plain Python objects wrapped in `ModelTask`.
Runs in about a minute on a CPU:

    .venv/bin/python examples/edsr_user_loop.py --out runs/edsr_example
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from skimage import data as photos
from torch import nn

from prunekit.schedule import ModelTask, run

SCALE = 2


# ---------------------------------------------------------------- your model (EDSR-baseline shape)
class ResBlock(nn.Module):
    def __init__(self, nf: int, res_scale: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.ReLU(True), nn.Conv2d(nf, nf, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class EDSR(nn.Module):
    def __init__(self, nf: int = 32, nb: int = 8, scale: int = SCALE) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, nf, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(nf) for _ in range(nb)])
        self.body_end = nn.Conv2d(nf, nf, 3, padding=1)
        self.tail = nn.Sequential(nn.Conv2d(nf, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(lr)
        x = x + self.body_end(self.body(x))
        return self.tail(x) + F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)


# ---------------------------------------------------------------- your data
def make_pairs(n: int, crop: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(LR, HR) crops of photographs shipped with scikit-image (no download)."""
    images = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket()]
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        img = images[int(rng.integers(len(images)))]
        y, x = int(rng.integers(img.shape[0] - crop)), int(rng.integers(img.shape[1] - crop))
        hr = torch.from_numpy(img[y:y + crop, x:x + crop].copy()).permute(2, 0, 1).float()[None] / 255
        lr = F.interpolate(hr, scale_factor=1 / SCALE, mode="bicubic", antialias=True, align_corners=False)
        pairs.append((lr.clamp(0, 1), hr))
    return [(torch.cat([p[0] for p in pairs[i:i + 4]]), torch.cat([p[1] for p in pairs[i:i + 4]]))
            for i in range(0, n, 4)]


def psnr(out: torch.Tensor, hr: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((out.clamp(0, 1) - hr) ** 2).mean()))


# ---------------------------------------------------------------- your own training loop
def train_yourself(model: nn.Module, batches: list, iterations: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(iterations):
        lr, hr = batches[i % len(batches)]
        loss = (model(lr) - hr).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/edsr_example"))
    ap.add_argument("--iterations", type=int, default=150)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train, test = make_pairs(64, 48, seed=1), make_pairs(16, 96, seed=2)

    model = EDSR()
    train_yourself(model, train, args.iterations)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "edsr_trained.safetensors"
    save_file(model.state_dict(), str(weights))
    with torch.no_grad():
        print(f"your trained EDSR: PSNR {sum(psnr(model(l), h) for l, h in test) / len(test):.2f} dB")

    # Hand it to prunekit: how to build it, its weights, data and loss. Prune 8 -> 4 residual blocks
    # (block influence on 4 calibration batches), then fine-tune 60 iterations distilling from the
    # unpruned model.
    task = ModelTask(build=EDSR, weights=weights, data=train, eval_data=test,
                     loss_fn=lambda out, hr: (out - hr).abs().mean(), metric=psnr)
    config = {
        "seed": 0, "out_dir": str(args.out / "run"), "threads": 1,
        "stages": [
            {"kind": "prune", "strategy": "block_influence", "calibration": 4, "target": {"kind": "keep_blocks", "n": 4}},
            {"kind": "finetune", "iterations": 60, "optimizer": {"lr": 5e-4}, "distill": {"weight": 1.0}},
        ],
    }
    resume = (args.out / "run" / "checkpoints").is_dir()
    result = run(config, task=task, resume=resume)
    pruned = next(h for h in result.history if h["phase"] == "prune" and "eval_metric" in h)
    print(f"removed {result.plan.removed}")
    print(f"pruned, before fine-tuning: PSNR {pruned['eval_metric']:.2f} dB")
    print(f"pruned + fine-tuned:        PSNR {result.metrics['eval_metric']:.2f} dB "
          f"({result.plan.stats.params_after:,} of {result.plan.stats.params_before:,} parameters)")
    print(f"checkpoint: {result.run_dir / 'final'} (load with prunekit.load(dir, build=EDSR))")


if __name__ == "__main__":
    main()
