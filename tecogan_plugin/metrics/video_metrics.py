"""`VideoMetrics`: the update / compute / reset object that scores whole sequences under the official
TecoGAN protocol.

Work split: the CPU metrics (tOF always; PSNR and SSIM unless the device is CUDA) run per chunk of
frames in a process pool while this process computes LPIPS/tLP (and, on CUDA, PSNR/SSIM) batched on
the device. Each frame's AlexNet features are computed once and serve LPIPS and both tLP terms."""

from __future__ import annotations

import math
import os
from concurrent.futures import Executor, Future

import numpy as np
import torch

from prunekit.device import resolve_device
from prunekit.errors import ConfigError, DataError, MissingWeightsError
from tecogan_plugin.metrics import catalog
from tecogan_plugin.metrics.device_ops import quantize
from tecogan_plugin.metrics.frame_jobs import InlineExecutor, chunk_metrics, make_pool, warm_up
from tecogan_plugin.metrics.lpips_metric import LpipsScorer, find_alexnet
from tecogan_plugin.metrics.protocol import (
    CUT_FRAMES,
    check_length,
    common_size,
    evaluated_frames,
    crop_8x8_box,
    crop_8x8_nchw,
)
from tecogan_plugin.metrics.report import MetricsReport, SequenceScores
from tecogan_plugin.metrics.target_cache import TargetCache, fingerprint


def __getattr__(name: str):
    if name == "ALL_METRICS":  # every registered metric (catalog), read when asked: plugins may add some
        return catalog.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_uint8(x, what: str, name: str) -> tuple[np.ndarray, torch.Tensor]:
    """A sequence as (host (T,H,W,3) uint8 array, (T,3,H,W) uint8 tensor on its own device).

    Accepts uint8 arrays (T,H,W,3) RGB, or float tensors (T,3,H,W) in [0,1], which are quantised
    the way saving PNGs does, so in-memory evaluation equals evaluating the saved files."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point() or x.dim() != 4 or x.shape[1] != 3:
            raise DataError(
                f"sequence {name!r}: {what} tensor must be float (T,3,H,W) in [0,1], got {x.dtype} {tuple(x.shape)}"
            )
        q = quantize(x.detach())
        return q.permute(0, 2, 3, 1).cpu().numpy(), q
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
            raise DataError(
                f"sequence {name!r}: {what} array must be uint8 (T,H,W,3) RGB, got {x.dtype} {x.shape}"
            )
        return x, torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    raise DataError(f"sequence {name!r}: {what} must be a numpy uint8 array or a float tensor, got {type(x).__name__}")


class VideoMetrics:
    """Official-protocol video metrics over many sequences.

    >>> vm = VideoMetrics(metrics=("psnr", "ssim", "tof"))
    >>> vm.update("calendar", pred_frames, gt_frames)   # doctest: +SKIP
    >>> report = vm.compute()                           # doctest: +SKIP

    LPIPS and tLP need torchvision's ImageNet AlexNet file (`lpips_weights` = file or folder, else
    the torch hub cache). Without it they are reported as unavailable (reason in the report) and the
    other metrics still run, unless `require_lpips` makes that a MissingWeightsError.

    `cache_targets=True` keeps each target sequence's flows and LPIPS features (kept on `device`; about
    18 MB per 720x576 frame) across `reset()`, so scoring further outputs against the same target
    (recognised by content, per sequence name) skips that half of the work with unchanged values.
    """

    def __init__(
        self,
        metrics: tuple[str, ...] | None = None,
        lpips_weights: str | os.PathLike | None = None,
        require_lpips: bool = False,
        device: str | torch.device | None = None,
        tof_workers: int = 2,
        cut_frames: int = CUT_FRAMES,
        max_crop: int = 16,
        chunk_frames: int | None = None,
        cache_targets: bool = False,
    ) -> None:
        self.metrics = catalog.names() if metrics is None else catalog.check_names(metrics)
        self._specs = [catalog.get(m) for m in self.metrics]
        if tof_workers < 0 or cut_frames < 0 or max_crop < 0:
            raise ConfigError(f"tof_workers, cut_frames and max_crop must be >= 0, got {tof_workers}, {cut_frames}, {max_crop}")
        self.device = resolve_device(device)
        self.cut_frames = cut_frames
        self.max_crop = max_crop
        self.tof_workers = tof_workers
        self.chunk_frames = chunk_frames or (16 if self.device.type == "cuda" else 4)
        self.unavailable: dict[str, str] = {}
        self.cache_targets = cache_targets
        self._targets: dict[str, TargetCache] = {}
        self._lpips: LpipsScorer | None = None
        wants_lpips = [m.name for m in self._specs if m.source == "lpips"]
        if wants_lpips:
            try:
                backbone = find_alexnet(lpips_weights)
            except MissingWeightsError as exc:
                if require_lpips:
                    raise
                self.unavailable = {m: str(exc) for m in wants_lpips}
            else:
                self._lpips = LpipsScorer(backbone, self.device)
        self._pool: Executor | None = None
        self._sequences: list[SequenceScores] = []
        if self.tof_workers > 0 and any(m.runs_on == "cpu" for m in self._specs):
            # Start the workers now, while this process is small, so the first update does not wait.
            self._pool = make_pool(self.tof_workers)
            for _ in range(self.tof_workers):
                self._pool.submit(warm_up)

    # -- public API -------------------------------------------------------------------------------

    def update(self, name: str, pred, gt) -> SequenceScores:
        """Score one whole sequence (output `pred`, target `gt`) and keep its per-frame values."""
        if any(s.name == name for s in self._sequences):
            raise DataError(f"sequence {name!r} was already added; names must be unique")
        pred_np, pred_t = _as_uint8(pred, "output", name)
        gt_np, gt_t = _as_uint8(gt, "target", name)
        if len(pred_np) != len(gt_np):
            raise DataError(f"sequence {name!r}: output has {len(pred_np)} frames but target has {len(gt_np)}")
        n_frames = len(gt_np)
        check_length(name, n_frames, self.cut_frames)
        h, w = common_size(name, pred_np.shape[1:3], gt_np.shape[1:3], self.max_crop)
        crop_8x8_box(h, w)  # refuses frames too small for the border crop before any work starts
        idx = evaluated_frames(n_frames, self.cut_frames)
        sl = slice(idx.start, idx.stop)
        pred_np, gt_np = pred_np[sl, :h, :w], gt_np[sl, :h, :w]
        pred_t, gt_t = pred_t[sl, :, :h, :w], gt_t[sl, :, :h, :w]

        on_device = self.device.type == "cuda"
        cpu_metrics = tuple(m for m in self._specs if m.runs_on == "cpu" and not (on_device and m.batched))
        target = self._target(name, gt_np)
        futures = self._submit(cpu_metrics, gt_np, pred_np, target)
        values: dict[str, list] = {m: [] for m in self.metrics if m not in self.unavailable}
        device_values = self._device_metrics(gt_t, pred_t, on_device, target)
        for m, v in device_values.items():
            values[m] = v
        for fut in futures:
            chunk_values, gt_flows = fut.result()
            for m, v in chunk_values.items():
                values[m].extend(v)
            if target is not None and not target.complete and gt_flows is not None:
                target.flows.extend(gt_flows)
        if target is not None:
            target.complete = True

        frames = list(idx)
        scores = SequenceScores(
            name=name,
            n_frames=n_frames,
            values={m: np.asarray(v, dtype=np.float32) for m, v in values.items()},
            frames={m: frames[1:] if catalog.get(m).temporal else frames for m in values},
        )
        self._sequences.append(scores)
        return scores

    def compute(self) -> MetricsReport:
        """The report over every sequence added since the last reset."""
        notes = []
        short = [s.name for s in self._sequences if s.n_frames == 2 * self.cut_frames + 1]
        temporal = [m.label for m in self._specs if m.temporal]
        if short and temporal:
            notes.append(
                f"{', '.join(short)}: {2 * self.cut_frames + 1} frames leave one evaluated frame, so no "
                f"{'/'.join(temporal)} value; left out of those averages"
            )
        return MetricsReport(self.metrics, list(self._sequences), dict(self.unavailable), notes)

    def reset(self) -> None:
        """Forget all sequences (the LPIPS model, the worker pool and cached targets are kept)."""
        self._sequences = []

    def cached_target_bytes(self) -> int:
        """Memory held by cached target work (`cache_targets=True`)."""
        return sum(t.nbytes() for t in self._targets.values())

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "VideoMetrics":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    # -- internals --------------------------------------------------------------------------------

    def _target(self, name: str, gt: np.ndarray) -> TargetCache | None:
        """The cache entry for this target (a fresh one to fill if its content is new); None without caching."""
        if not self.cache_targets:
            return None
        key = fingerprint(gt)
        cached = self._targets.get(name)
        if cached is None or cached.fingerprint != key or not cached.complete:
            cached = self._targets[name] = TargetCache(key)
        return cached

    def _submit(self, cpu_metrics: tuple[catalog.Metric, ...], gt: np.ndarray, pred: np.ndarray,
                target: TargetCache | None) -> list[Future]:
        """Send chunks of frames to the pool; chunk k > 0 carries the frame before it for tOF."""
        if not cpu_metrics:
            return []
        reuse = target is not None and target.complete and any(m.source == "flow" for m in cpu_metrics)
        if self._pool is None:
            self._pool = make_pool(self.tof_workers) if self.tof_workers > 0 else InlineExecutor()
        n = len(gt)
        # Enough chunks to keep every worker busy, but not so small that pickling dominates.
        size = max(2, math.ceil(n / max(1, 2 * self.tof_workers)))
        futures = []
        for start in range(0, n, size):
            lo = max(0, start - 1)
            stop = min(n, start + size)
            flows = target.flows[lo : stop - 1] if reuse else None
            futures.append(self._pool.submit(chunk_metrics, gt[lo:stop], pred[lo:stop], cpu_metrics, start > 0,
                                             gt_flows=flows, keep_gt_flows=target is not None and not reuse))
        return futures

    def _device_metrics(self, gt: torch.Tensor, pred: torch.Tensor, on_device: bool,
                        target: TargetCache | None) -> dict[str, list]:
        """The LPIPS-feature metrics (and the Y-plane ones with a batched version, on CUDA), in chunks of
        frames on the device; the target's features and consecutive-frame distances come from `target`
        when it holds them."""
        batched = [(m.name, m.batched_fn()) for m in self._specs if on_device and m.batched]
        on_features = [m for m in self._specs if m.source == "lpips" and self._lpips is not None]
        spatial = [(m.name, m.frame_fn()) for m in on_features if not m.temporal]
        temporal = [(m.name, m.frame_fn()) for m in on_features if m.temporal]
        out: dict[str, list] = {name: [] for name, _ in batched + spatial + temporal}
        if not out:
            return out
        reuse = target is not None and target.complete
        prev: tuple | None = None
        for k, start in enumerate(range(0, len(gt), self.chunk_frames)):
            g = gt[start : start + self.chunk_frames].to(self.device)
            p = pred[start : start + self.chunk_frames].to(self.device)
            if batched:
                gc, pc = crop_8x8_nchw(g), crop_8x8_nchw(p)
                for name, fn in batched:
                    out[name].extend(fn(gc, pc).cpu().tolist())
            if not on_features:
                continue
            # Target and output go through AlexNet as separate batches, so cached target features are
            # bit-identical to fresh ones (a kernel's blocking, and so its rounding, depends on the batch).
            fp = self._lpips.features(crop_8x8_nchw(p))
            if reuse:
                fg = target.features[k]
            else:
                fg = self._lpips.features(crop_8x8_nchw(g))
                if target is not None:
                    target.features[k] = fg
            if spatial:
                d = self._lpips.distance(fg, fp)
                for name, fn in spatial:
                    out[name].append(fn(d).cpu())
            if temporal:
                if prev is not None:
                    fg = [torch.cat([a, b]) for a, b in zip(prev[0], fg)]
                    fp = [torch.cat([a, b]) for a, b in zip(prev[1], fp)]
                if len(fg[0]) > 1:
                    if reuse:
                        d_gt = target.tlp_distances[k]
                    else:
                        d_gt = self._lpips.distance([f[:-1] for f in fg], [f[1:] for f in fg])
                        if target is not None:
                            target.tlp_distances[k] = d_gt
                    d_pred = self._lpips.distance([f[:-1] for f in fp], [f[1:] for f in fp])
                    for name, fn in temporal:
                        out[name].append(fn(d_gt, d_pred).cpu())
                prev = ([f[-1:] for f in fg], [f[-1:] for f in fp])
        for name, _ in spatial + temporal:
            out[name] = torch.cat(out[name]).tolist() if out[name] else []
        return out
