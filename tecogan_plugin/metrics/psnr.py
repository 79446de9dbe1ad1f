"""PSNR on the BT.601 Y channel (official protocol): float64 Y, not rounded, peak 255, no special
case for identical frames (they give +inf, as in the official script). The batched device version
is `device_ops.psnr_y_torch`."""

from __future__ import annotations

import numpy as np

from tecogan_plugin.metrics.protocol import rgb_to_y


def psnr_y(gt: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB between two cropped (H,W,3) uint8 RGB frames."""
    return psnr_from_y(rgb_to_y(gt), rgb_to_y(pred))


def psnr_from_y(y_gt: np.ndarray, y_pred: np.ndarray) -> float:
    """PSNR in dB from float64 Y planes (lets PSNR and SSIM share one Y conversion)."""
    diff = y_gt - y_pred
    with np.errstate(divide="ignore"):
        return float(20 * np.log10(255.0 / np.sqrt(np.mean(np.power(diff, 2)))))
