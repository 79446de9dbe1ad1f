"""The torch side of the protocol: PNG-equivalent quantisation and batched Y, PSNR and SSIM for
(N,3,H,W) frames on any device (used on CUDA; tested against the numpy/scikit-image path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tecogan_plugin.metrics.protocol import Y_OFFSET, Y_WEIGHTS
from tecogan_plugin.metrics.ssim import K1, K2, WIN


def quantize(frames: torch.Tensor) -> torch.Tensor:
    """Float frames in [0,1] -> uint8 exactly as saving to PNG does: clip(round(255 x), 0, 255)
    (round half to even, like numpy)."""
    return torch.clamp(torch.round(frames * 255), 0, 255).to(torch.uint8)


def rgb_to_y_torch(rgb: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) RGB on the 0-255 scale -> float64 (N,H,W) luma, not rounded."""
    x = rgb.to(torch.float64)
    return x[:, 0] * Y_WEIGHTS[0] + x[:, 1] * Y_WEIGHTS[1] + x[:, 2] * Y_WEIGHTS[2] + Y_OFFSET


def psnr_y_torch(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Batched PSNR (dB, float64 (N,)) of cropped (N,3,H,W) frames."""
    diff = rgb_to_y_torch(gt) - rgb_to_y_torch(pred)
    return 20 * torch.log10(255.0 / torch.sqrt(torch.mean(diff * diff, dim=(1, 2))))


def ssim_y_torch(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Batched SSIM (float64 (N,)) of cropped (N,3,H,W) frames, as scikit-image computes it.

    scikit-image filters the whole image (reflect padding) and then averages only the pixels at
    least (WIN-1)/2 from the border; those windows never touch the padding, so an unpadded
    ("valid") box filter covers exactly the averaged pixels."""
    x = rgb_to_y_torch(gt)[:, None]
    y = rgb_to_y_torch(pred)[:, None]
    data_range = (y.amax(dim=(1, 2, 3)) - y.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)

    def box(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, WIN, stride=1)

    n = WIN * WIN
    cov_norm = n / (n - 1)
    ux, uy = box(x), box(y)
    vx = cov_norm * (box(x * x) - ux * ux)
    vy = cov_norm * (box(y * y) - uy * uy)
    vxy = cov_norm * (box(x * y) - ux * uy)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))
