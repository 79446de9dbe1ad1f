"""Run the TecoGAN pruning grid: train (or load) the dense FRNet, then for every series
(strategy + healing) and block count prune it through the schedule engine, evaluate every model
under the official protocol, and write the report. Every finished step is kept on disk, so an
interrupted run continues where it stopped."""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit import profile
from prunekit.checkpoint import load
from prunekit.errors import ConfigError
from prunekit.fileio import atomic_write
from prunekit.registry import DATASETS, STRATEGIES
from prunekit.schedule import run as run_schedule
from tecogan_plugin.bench.presets import BenchPreset, Series
from tecogan_plugin.bench.report import crop_montage, markdown_tables, series_label, write_results
from tecogan_plugin.data.frames import read_frame, write_frame
from tecogan_plugin.metrics.video_metrics import VideoMetrics
from tecogan_plugin.nets import FRNet, frnet_example_inputs

CROP = 64  # side of the HR crop shown in the side-by-side figure


def _say(msg: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    """One benchmark run in `out_dir` (see `run_bench`)."""

    def __init__(self, preset: BenchPreset, out_dir: Path, data_root: Path | None, checkpoint: Path | None,
                 lpips_weights: str | None, progress: bool) -> None:
        self.preset, self.out_dir, self.progress = preset, out_dir, progress
        self.data_root, self.checkpoint, self.lpips_weights = data_root, checkpoint, lpips_weights
        self.device = torch.device("cuda" if preset.device == "cuda" or (
            preset.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.task_options = self._task_options()
        self.unavailable: dict[str, str] = {}
        self._described: dict[tuple[int, int], dict[str, Any]] = {}
        self._metrics: dict[str, VideoMetrics] = {}  # per test set, kept across models: targets cached

    # ------------------------------------------------------------ settings
    def _root(self, folder: str | None) -> str | None:
        if folder is None:
            return None
        if self.data_root is None:
            raise ConfigError(f"preset {self.preset.name!r} needs --data-root (a folder holding {folder}/)")
        path = self.data_root / folder
        if not path.is_dir():
            raise ConfigError(f"--data-root: {path} does not exist (preset {self.preset.name!r} reads {folder}/ there)")
        return str(path)

    def _task_options(self) -> dict[str, Any]:
        options = dict(self.preset.task)
        if self.preset.train_folder:
            options["train_root"] = self._root(self.preset.train_folder)
        first = self.preset.eval_sets[0]
        options.update(eval_data=first.dataset, eval_root=self._root(first.folder))
        if self.lpips_weights:
            options["lpips_weights"] = self.lpips_weights
        return options

    def settings(self) -> dict[str, Any]:
        """Everything that determines the numbers; a resumed run must have the same."""
        return {
            "preset": self.preset.model_dump(mode="json"),
            "data_root": str(self.data_root) if self.data_root else None,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
        }

    def check_settings(self) -> None:
        path = self.out_dir / "settings.json"
        current = self.settings()
        if path.exists():
            saved = json.loads(path.read_text())
            if saved != current:
                raise ConfigError(f"--out: {self.out_dir} holds a benchmark run with other settings "
                                  f"(see {path}); choose another --out or pass --fresh")
        else:
            atomic_write(path, json.dumps(current, indent=2))

    def build_dense(self) -> FRNet:
        o = self.task_options
        return FRNet(nf=o["nf"], nb=o["nb"], scale=o.get("scale", 4), degradation=o.get("degradation", "BD"))

    # ------------------------------------------------------------ schedule
    def _schedule(self, name: str, stages: list[dict[str, Any]], init: Path | None,
                  extra_options: dict[str, Any] | None = None) -> tuple[nn.Module, float]:
        """Run (or resume, or just load) the schedule run `name` with the task options plus `extra_options`;
        returns the final model and its wall time."""
        run_dir = self.out_dir / "runs" / name
        final, timing = run_dir / "final", run_dir / "bench_wall.json"
        if final.is_dir() and timing.exists():
            return load(final, build=self.build_dense), json.loads(timing.read_text())["wall_s"]
        config = {
            "task": {"name": f"tecogan.{self.task_options['objective']}",
                     "options": {**self.task_options, **(extra_options or {})}},
            "seed": self.preset.seed, "stages": stages, "out_dir": str(run_dir),
            "device": self.device.type, "progress": self.progress, "threads": self.preset.threads,
            "init_checkpoint": str(init) if init else None,
            "ckpt_every": max(1, max((s.get("iterations", 0) for s in stages), default=0) // 4),
        }
        resume = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
        start = time.perf_counter()
        result = run_schedule(config, resume=resume, progress=self.progress)
        wall = time.perf_counter() - start
        atomic_write(timing, json.dumps({"wall_s": wall, "resumed": resume}))
        return result.model.cpu(), wall

    def dense(self) -> tuple[nn.Module, float]:
        if self.checkpoint is not None:
            _say(f"dense model: published generator {self.checkpoint} (no training)")
            return self._schedule("dense", [{"kind": "train", "iterations": 0}], self.checkpoint)
        _say(f"dense model: training nb={self.task_options['nb']} for {self.preset.train['iterations']} iterations")
        return self._schedule("dense", [{"kind": "train", **self.preset.train}], None)

    def pruned(self, series: Series, blocks: int, dense_dir: Path) -> tuple[nn.Module, float]:
        target: dict[str, Any] | list[dict[str, Any]] = {"kind": "keep_blocks", "n": blocks}
        # a width series also narrows every coupled channel group, FNet's included (open_fnet layout)
        extra = {"open_fnet": True} if series.width else {}
        if series.width:
            target = [target, {"kind": "channel_ratio", "prune": series.width}]
        stages: list[dict[str, Any]] = [{
            "kind": "prune", "strategy": series.strategy, "calibration": self.preset.calibration, "target": target,
        }]
        if series.finetune != "none":
            stage = {"kind": "finetune", **self.preset.finetune}
            if series.finetune == "distill":
                stage["distill"] = self.preset.distill
            stages.append(stage)
        return self._schedule(f"{series.key}-nb{blocks}", stages, dense_dir, extra)

    # ---------------------------------------------------------- evaluation
    def test_sets(self) -> list[tuple[str, list[Any], int | None]]:
        if not hasattr(self, "_test_sets"):
            o = self.task_options
            self._test_sets = [
                (e.label, DATASETS.get(e.dataset)(root=self._root(e.folder), split="test",
                                                  degradation=o.get("degradation", "BD"), scale=o.get("scale", 4)),
                 e.max_frames)
                for e in self.preset.eval_sets
            ]
        return self._test_sets

    @torch.no_grad()
    def evaluate(self, model: FRNet, key: str) -> dict[str, dict[str, float | None]]:
        """Official-protocol frame averages per test set; saves this model's crop for the figure."""
        model = model.to(self.device).eval()
        results: dict[str, dict[str, float | None]] = {}
        for label, sequences, max_frames in self.test_sets():
            if label not in self._metrics:
                self._metrics[label] = VideoMetrics(metrics=tuple(self.preset.metrics), device=self.device,
                                                    lpips_weights=self.lpips_weights, cache_targets=True)
            metrics = self._metrics[label]
            metrics.reset()
            for i, seq in enumerate(sequences):
                lr, gt = seq.lr_tensor(), seq.gt
                if max_frames is not None:
                    lr, gt = lr[:max_frames], gt[:max_frames]
                pred = np.stack(list(model.infer_sequence(list(lr))))
                metrics.update(seq.name, pred, gt)
                if i == 0 and label == self.test_sets()[0][0]:
                    self._save_crop(key, pred[len(pred) // 2], gt[len(gt) // 2], lr[len(lr) // 2])
            report = metrics.compute()
            results[label] = {m: report.frame_avg(m) if m in report.available else None for m in self.preset.metrics}
            self.unavailable.update(report.unavailable)
        return results

    def _crop_box(self, gt: np.ndarray) -> tuple[int, int]:
        h, w = gt.shape[:2]
        return max(0, h // 2 - CROP // 2), max(0, w // 2 - CROP // 2)

    def _save_crop(self, key: str, pred: np.ndarray, gt: np.ndarray, lr: torch.Tensor) -> None:
        import cv2

        y, x = self._crop_box(gt)
        crops = self.out_dir / "crops"
        write_frame(crops / f"{key}.png", pred[y:y + CROP, x:x + CROP])
        if not (crops / "gt.png").exists():
            write_frame(crops / "gt.png", gt[y:y + CROP, x:x + CROP])
            lr_img = (lr.permute(1, 2, 0).numpy() * 255).clip(0, 255).round().astype(np.uint8)
            up = cv2.resize(lr_img, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC)
            write_frame(crops / "bicubic.png", up[y:y + CROP, x:x + CROP])

    def describe(self, model: FRNet) -> dict[str, Any]:
        """Size and cost of a model: parameters (total, SRNet), MACs and latency at the preset LR sizes.
        They depend on the architecture only, so models of the same architecture share one measurement."""
        arch = (len(model.srnet.resblocks), profile.count_params(model))
        if arch not in self._described:
            self._described[arch] = self._measure(model)
        return self._described[arch]

    def _measure(self, model: FRNet) -> dict[str, Any]:
        model = model.cpu().eval()
        flops_inputs = frnet_example_inputs(self.preset.flops_lr_size, scale=model.scale)
        latency_inputs = [t.to(self.device) for t in frnet_example_inputs(self.preset.latency_lr_size,
                                                                           scale=model.scale)]
        lat = profile.latency(model.to(self.device), tuple(latency_inputs), warmup=1,
                              repeats=self.preset.latency_repeats, device=self.device)
        return {
            "blocks": len(model.srnet.resblocks),
            "params_total": profile.count_params(model),
            "params_srnet": profile.count_params(model.srnet),
            "gmacs": profile.flops(model.cpu(), flops_inputs) / 1e9,
            "latency_ms": lat["median_ms"],
        }

    # -------------------------------------------------------------- driver
    def row(self, key: str, strategy: str, finetune: str, width: float, model: FRNet, wall: float
            ) -> dict[str, Any]:
        path = self.out_dir / "rows" / f"{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        _say(f"{key}: measuring size, latency and quality")
        row = {"key": key, "strategy": strategy, "finetune": finetune, "width": width, **self.describe(model),
               "train_wall_s": round(wall, 1), "metrics": self.evaluate(model, key)}
        atomic_write(path, json.dumps(row, indent=2))
        return row

    def run(self) -> list[dict[str, Any]]:
        for series in self.preset.series:  # an unknown strategy fails now, not after the dense training
            STRATEGIES.get(series.strategy)
        self.check_settings()
        if self.preset.threads is not None:  # CPU float results depend on the thread count
            torch.set_num_threads(self.preset.threads)
        try:
            return self._run_grid()
        finally:
            for metrics in self._metrics.values():
                metrics.close()

    def _run_grid(self) -> list[dict[str, Any]]:
        grid = [(s, b) for s in self.preset.series for b in self.preset.blocks]
        _say(f"preset {self.preset.name}: dense + {len(grid)} pruned models on {self.device}; output in {self.out_dir}")
        dense_model, dense_wall = self.dense()
        rows = [self.row("dense", "dense", "-", 0.0, dense_model, dense_wall)]
        if any(s.finetune != "none" for s in self.preset.series):
            # healed models train `finetune.iterations` more than the dense one; the control gives the
            # dense model the same extra training, so what healing recovers is not confused with it
            _say(f"dense-control: training the dense model {self.preset.finetune['iterations']} iterations more")
            control, wall = self._schedule("dense-control", [{"kind": "train", **self.preset.finetune}],
                                           self.out_dir / "runs" / "dense" / "final")
            rows.append(self.row("dense-control", "dense", "control", 0.0, control, wall))
        for i, (series, blocks) in enumerate(grid, 1):
            key = f"{series.key}-nb{blocks}"
            _say(f"[{i}/{len(grid)}] {key}: prune with {series.strategy}, heal: {series.finetune}")
            model, wall = self.pruned(series, blocks, self.out_dir / "runs" / "dense" / "final")
            rows.append(self.row(key, series.strategy, series.finetune, series.width, model, wall))
        dense = rows[0]
        for r in rows:
            r.setdefault("width", 0.0)  # rows saved before the width option
            r["params_fnet"] = r["params_total"] - r["params_srnet"]  # FRNet = FNet + SRNet
            r["params_removed_fnet_pct"] = 100 * (1 - r["params_fnet"] / dense["params_fnet"])
            r["params_removed_total_pct"] = 100 * (1 - r["params_total"] / dense["params_total"])
            r["params_removed_srnet_pct"] = 100 * (1 - r["params_srnet"] / dense["params_srnet"])
            r["flops_removed_pct"] = 100 * (1 - r["gmacs"] / dense["gmacs"])
        return rows

    def montage(self, rows: list[dict[str, Any]]) -> None:
        crops = self.out_dir / "crops"
        items = [("GT", crops / "gt.png"), ("bicubic", crops / "bicubic.png")]
        items += [(series_label(r) + f" nb={r['blocks']}", crops / f"{r['key']}.png") for r in rows]
        crop_montage([(label, read_frame(p)) for label, p in items if p.exists()], self.out_dir / "crops.png")


def machine_info(device: torch.device) -> dict[str, Any]:
    import importlib.metadata as md
    import os

    info = {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
    }
    for pkg in ("prunekit", "torch", "torch-pruning", "fvcore", "lpips", "opencv-python-headless", "scikit-image"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    return info


def run_bench(preset: BenchPreset, out_dir: str | Path, *, data_root: str | Path | None = None,
              checkpoint: str | Path | None = None, lpips_weights: str | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run (or continue) the grid of `preset` in `out_dir` and write the report there; returns results."""
    out = Path(out_dir)
    bench = Bench(preset, out, Path(data_root) if data_root else None, Path(checkpoint) if checkpoint else None,
                  lpips_weights, progress)
    start = time.perf_counter()
    rows = bench.run()
    meta = {
        "preset": preset.name, "description": preset.description, "seed": preset.seed,
        "settings": bench.settings(), "machine": machine_info(bench.device),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s_this_invocation": round(time.perf_counter() - start, 1),
        "wall_s_training_total": round(sum(r["train_wall_s"] for r in rows), 1),
        "flops_convention": (f"MACs (one multiply-add = 1) per frame at LR {preset.flops_lr_size[0]}x"
                             f"{preset.flops_lr_size[1]}, ConvTranspose counted at input resolution, bicubic/"
                             "bilinear/grid_sample and element-wise ops included (prunekit.profile)"),
        "latency": (f"median of {preset.latency_repeats} single-frame steps at LR {preset.latency_lr_size[0]}x"
                    f"{preset.latency_lr_size[1]} on {bench.device} (plain PyTorch path)"),
        "unavailable_metrics": bench.unavailable,
    }
    write_results(rows, meta, out)
    bench.montage(rows)
    size = f"{preset.flops_lr_size[0]}x{preset.flops_lr_size[1]}"
    atomic_write(out / "report.md", report_markdown(rows, meta, size))
    _say(f"done: {out / 'report.md'}")
    return {"rows": rows, "meta": meta}


def report_markdown(rows: list[dict[str, Any]], meta: dict[str, Any], flops_size: str) -> str:
    m = meta["machine"]
    lines = [
        f"# TecoGAN pruning benchmark — preset `{meta['preset']}`",
        "",
        meta["description"],
        "",
        f"- machine: {m['platform']}, {m['cpu_count']} CPU cores, device {m['device']}"
        + (f" ({m['gpu']})" if m.get("gpu") else ""),
        f"- software: prunekit {m['prunekit']}, torch {m['torch']}, torch-pruning {m['torch-pruning']}, "
        f"fvcore {m['fvcore']}, opencv {m['opencv-python-headless']}, scikit-image {m['scikit-image']}",
        f"- seed {meta['seed']}; training/fine-tuning wall time {meta['wall_s_training_total']} s in total; "
        f"finished {meta['finished']}",
        f"- FLOPs: {meta['flops_convention']}",
        f"- latency: {meta['latency']}",
        "- quality: official TecoGAN protocol (2 frames cut at each end, crop_8x8 border), frame averages",
        "- `dense / control`: the dense model trained for the healing budget more, i.e. the same total training "
        "as the healed rows; compare healed models with it, not only with `dense`",
    ]
    reasons: dict[str, list[str]] = {}
    for metric, why in meta.get("unavailable_metrics", {}).items():
        reasons.setdefault(why, []).append(metric)
    for why, metrics in reasons.items():
        lines.append(f"- {', '.join(metrics)}: unavailable — {why}")
    lines += ["", markdown_tables(rows, flops_size), "", "![Pareto](pareto_" +
              next(iter(rows[0]["metrics"])) + ".png)", "", "![crops](crops.png)", ""]
    return "\n".join(lines)
