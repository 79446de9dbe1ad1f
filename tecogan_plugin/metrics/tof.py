"""tOF: the temporal optical-flow difference of the official protocol.

For each evaluated frame after the first, Farneback flow from the previous to the current frame is
computed on the full (uncropped) grey frames of the target and of the output; both flows get the
border crop and the frame's value is the mean Euclidean norm of their difference (float32)."""

from __future__ import annotations

import cv2
import numpy as np

from tecogan_plugin.metrics.protocol import crop_8x8

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
"""cv2.calcOpticalFlowFarneback parameters of the official script."""


def grey(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB -> (H,W) uint8 grey with OpenCV's fixed-point RGB2GRAY."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def flow(prev_grey: np.ndarray, cur_grey: np.ndarray) -> np.ndarray:
    """Farneback flow prev -> cur, float32 (H,W,2)."""
    return cv2.calcOpticalFlowFarneback(prev_grey, cur_grey, None, **FARNEBACK)


def cropped_flow(prev_grey: np.ndarray, cur_grey: np.ndarray) -> np.ndarray:
    """The border-cropped flow prev -> cur: the per-frame quantity tOF compares (and that a target cache keeps)."""
    return crop_8x8(flow(prev_grey, cur_grey))


def tof_from_flows(flow_gt: np.ndarray, flow_pred: np.ndarray) -> np.float32:
    """tOF of one frame from the cropped flows of target and output."""
    d = flow_gt - flow_pred
    return np.sqrt(np.sum(d * d, axis=-1)).mean()
