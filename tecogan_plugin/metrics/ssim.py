"""SSIM on the float Y channel, as the official protocol computes it: scikit-image's
structural_similarity with its defaults (7x7 uniform window, K1=0.01, K2=0.03, sample covariance)
and data_range = max(Y_out) - min(Y_out).

This CPU path calls scikit-image itself, so it is exact by construction; the batched device version
is `device_ops.ssim_y_torch`, tested against this one."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from tecogan_plugin.metrics.protocol import rgb_to_y

WIN = 7
K1, K2 = 0.01, 0.03


def ssim_y(gt: np.ndarray, pred: np.ndarray) -> float:
    """SSIM between two cropped (H,W,3) uint8 RGB frames."""
    return ssim_from_y(rgb_to_y(gt), rgb_to_y(pred))


def ssim_from_y(y_gt: np.ndarray, y_pred: np.ndarray) -> float:
    """SSIM from float64 Y planes."""
    return float(structural_similarity(y_gt, y_pred, data_range=y_pred.max() - y_pred.min()))
