"""CPU work for a run of consecutive frames, in a form a worker process can run.

The parent process cuts a sequence into chunks and sends each to a process pool, so Farneback flow
(tOF), PSNR and SSIM of different chunks run on different cores while the parent runs LPIPS."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor

import cv2
import numpy as np

from tecogan_plugin.metrics.catalog import Metric
from tecogan_plugin.metrics.protocol import crop_8x8, rgb_to_y
from tecogan_plugin.metrics.tof import cropped_flow, grey


def chunk_metrics(
    gt: np.ndarray, pred: np.ndarray, metrics: tuple[Metric, ...], with_prev: bool,
    gt_flows: list[np.ndarray] | None = None, keep_gt_flows: bool = False,
) -> tuple[dict[str, list[float]], list[np.ndarray] | None]:
    """Metrics of the frames of (K,H,W,3) uint8 chunks, and the target's cropped flows if asked.

    With `with_prev`, frame 0 is the previous evaluated frame and serves only as the start of the
    first flow; otherwise the first frame gets spatial metrics and no temporal ones (it opens the
    sequence). `metrics` are descriptors of source `flow` or `y` (catalog). `gt_flows` (K-1 cropped
    target flows from an earlier evaluation against the same target) replace computing them;
    `keep_gt_flows` returns them."""
    out: dict[str, list[float]] = {m.name: [] for m in metrics}
    first = 1 if with_prev else 0
    on_flows = [(m.name, m.frame_fn()) for m in metrics if m.source == "flow"]
    on_y = [(m.name, m.frame_fn()) for m in metrics if m.source == "y"]
    if on_flows:
        if gt_flows is None:
            greys_gt = [grey(f) for f in gt]
            gt_flows = [cropped_flow(greys_gt[j - 1], greys_gt[j]) for j in range(1, len(gt))]
        greys_pred = [grey(f) for f in pred]
        for j in range(1, len(gt)):
            pred_flow = cropped_flow(greys_pred[j - 1], greys_pred[j])
            for name, fn in on_flows:
                out[name].append(fn(gt_flows[j - 1], pred_flow))
    if on_y:
        for j in range(first, len(gt)):
            y_gt, y_pred = rgb_to_y(crop_8x8(gt[j])), rgb_to_y(crop_8x8(pred[j]))
            for name, fn in on_y:
                out[name].append(fn(y_gt, y_pred))
    return out, (gt_flows if keep_gt_flows and on_flows else None)


def _init_worker() -> None:
    # One OpenCV thread per worker: the pool itself provides the parallelism.
    cv2.setNumThreads(1)


def warm_up() -> None:
    """A no-op task: submitting one per worker makes the pool start all workers early."""


def make_pool(workers: int) -> Executor:
    """A process pool for `chunk_metrics`.

    Workers are spawned, never forked: a forked child inherits OpenCV's thread pool in whatever
    state the parent left it (and torch's), and deadlocks in its first OpenCV call if the parent had
    used OpenCV before (seen with cv2.resize before the fork). Spawning re-imports the caller's
    `__main__`, so scripts need the usual `if __name__ == "__main__":` guard. The worker modules
    avoid importing torch, so a spawned worker starts in about a second."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)


class InlineExecutor(Executor):
    """Runs submitted work immediately in this process (tof_workers=0)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future, like a pool would
            fut.set_exception(exc)
        return fut
