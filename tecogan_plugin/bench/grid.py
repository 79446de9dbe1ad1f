"""Run the TecoGAN pruning grid: train (or load) the dense FRNet, then for every series
(strategy + healing, and optionally a width cut, a latency target, the sub-pixel tail, or the
Torch-Pruning baseline) and block count prune it through the schedule engine, evaluate every model
under the official protocol, time all of them interleaved on the fast path, and write the report.
Every finished step is kept on disk, so an interrupted run continues where it stopped (and says
what it skips)."""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit import profile
from prunekit.checkpoint import load
from prunekit.config import validate_config
from prunekit.errors import ConfigError, NoUnitsError, UnreachableTargetError
from prunekit.fileio import atomic_write
from prunekit.latency import paired_ratio
from prunekit.registry import STRATEGIES
from prunekit.schedule import run as run_schedule
from prunekit.schedule.logging import progress_bar
from tecogan_plugin.bench.baselines import TP_PATHS, TP_REPLACEMENT, BicubicModel, match_latency
from tecogan_plugin.bench.presets import TP, BenchPreset, Series
from tecogan_plugin.bench.report import (BenchRow, crop_figure, detail_box, machine_info, report_markdown,
                                         series_label, write_results)
from tecogan_plugin.data.frames import read_frame, write_frame
from tecogan_plugin.layout import RUNNER
from tecogan_plugin.metrics.video_metrics import VideoMetrics
from tecogan_plugin.nets import FRNet, frnet_example_inputs
from tecogan_plugin.train import TecoGANOptions, build_frnet, load_test_set, score_sequences
from tecogan_plugin.upsampler import REPLACEMENT_NAME, TAIL_PATHS, has_subpixel_head

CROP = 64  # side of the HR crop shown (zoomed) in the side-by-side figure


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
        self.options = validate_config(TecoGANOptions, self.task_options, prefix="task.options")
        self.unavailable: dict[str, str] = {}
        self.failed: dict[str, str] = {}  # model key -> why it could not be built (e.g. an unreachable target)
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
        return build_frnet(self.options)

    # ------------------------------------------------------------ schedule
    def _schedule(self, name: str, stages: list[dict[str, Any]], init: Path | None,
                  extra_options: dict[str, Any] | None = None) -> tuple[nn.Module, float]:
        """Run (or resume, or just load) the schedule run `name` with the task options plus `extra_options`;
        returns the final model and its wall time."""
        run_dir = self.out_dir / "runs" / name
        final, timing = run_dir / "final", run_dir / "bench_wall.json"
        if final.is_dir() and timing.exists():
            _say(f"{name}: trained earlier, loading {final} (skipped)")
            return load(final, build=self.build_dense), json.loads(timing.read_text())["wall_s"]
        config = {
            "task": {"name": f"tecogan.{self.options.objective}",
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

    def finished(self, name: str) -> bool:
        """True when the schedule run `name` completed earlier (it is then loaded, not run)."""
        run_dir = self.out_dir / "runs" / name
        return (run_dir / "final").is_dir() and (run_dir / "bench_wall.json").exists()

    def dense(self) -> tuple[nn.Module, float]:
        if self.checkpoint is not None:
            _say(f"dense model: published generator {self.checkpoint} (no training)")
            return self._schedule("dense", [{"kind": "train", "iterations": 0}], self.checkpoint)
        if not self.finished("dense"):
            _say(f"dense model: training nb={self.options.nb} for {self.preset.train['iterations']} "
                 "iterations")
        return self._schedule("dense", [{"kind": "train", **self.preset.train}], None)

    def latency_shape(self) -> dict[str, list[int]]:
        """The input shapes latency is measured at (FRNet step inputs at the preset's LR size)."""
        h, w = self.preset.latency_lr_size
        s = self.options.scale
        return {"arg0": [1, 3, h, w], "arg1": [1, 3, h, w], "arg2": [1, 3, s * h, s * w]}

    def pruned(self, series: Series, blocks: int | None, dense_dir: Path) -> tuple[nn.Module, float]:
        """The series' pruned + healed model; `blocks` is the block count (None for latency series)."""
        extra: dict[str, Any] = {}
        stage: dict[str, Any] = {"kind": "prune", "strategy": series.strategy, "calibration": self.preset.calibration}
        replace: list[dict[str, Any]] = []
        if series.strategy == TP:
            # Torch-Pruning's own pruner at the uniform ratio that meets the same measured latency; a
            # replacement step of the whole FNet + SRNet, so the schedule heals it like the others
            stage.update(strategy="positional", target={"kind": "keep_blocks", "n": self.options.nb})
            replace.append({"name": TP_REPLACEMENT, "paths": list(TP_PATHS),
                            "kwargs": {"ratio": self.tp_ratio(series.latency, dense_dir)}})
        elif series.latency is not None:
            extra["open_fnet"] = True  # the planner chooses per-group widths, FNet's included
            extra["calibration_gt_crop"] = self.preset.surgery_gt_crop  # damage measured on frames, not 8 px
            stage.update(target={"kind": "latency_ratio", "keep": series.latency, "shape": self.latency_shape()},
                         runner=RUNNER, latency_cache=str(self.out_dir / "latency_cache"),
                         move_cost=series.move_cost, min_keep=series.min_keep, uniform=series.uniform)
        else:
            target: Any = {"kind": "keep_blocks", "n": blocks}
            if series.width:  # also narrow every coupled channel group, FNet's included (open_fnet layout)
                extra["open_fnet"] = True
                target = [target, {"kind": "channel_ratio", "prune": series.width}]
            stage["target"] = target
        if series.subpixel is not None:
            replace.append({"name": REPLACEMENT_NAME, "paths": list(TAIL_PATHS), "kwargs": {"kernel": series.subpixel}})
            extra["calibration_gt_crop"] = self.preset.surgery_gt_crop  # enough LR pixels for the fit
        if replace:
            stage["replace"] = replace
        if series.refit:
            stage["refit"] = self.preset.refit_calibration
            extra["calibration_gt_crop"] = self.preset.surgery_gt_crop  # LR 32 px: samples for deep FNet layers
        stages: list[dict[str, Any]] = [stage]
        if series.finetune != "none":
            tune = {"kind": "finetune", **self.preset.finetune}
            if series.finetune == "distill":
                tune["distill"] = self.preset.distill
            stages.append(tune)
        name = series.key if blocks is None else f"{series.key}-nb{blocks}"
        return self._schedule(name, stages, dense_dir, extra)

    def tp_ratio(self, keep: float, dense_dir: Path) -> float:
        """The Torch-Pruning baseline's uniform ratio for `keep` x the dense fast-path latency, found by
        bisection on measured latency (kept in tp/lat{keep}.json)."""
        path = self.out_dir / "tp" / f"lat{keep:g}.json"
        if path.exists():
            found = json.loads(path.read_text())
            _say(f"tp lat{keep:g}: ratio {found['ratio']:.4f} found earlier ({path}, skipped)")
            return found["ratio"]
        dense = load(dense_dir, build=self.build_dense)
        steps = self.preset.tp_bisection_steps
        _say(f"tp lat{keep:g}: bisecting Torch-Pruning's uniform ratio on measured latency ({steps + 1} timings)")

        def measure(candidate: nn.Module) -> float:
            stats = self.measure_latency({"dense": dense, "candidate": candidate}, progress=False)
            return paired_ratio(stats, "candidate", "dense")

        ratio, trace = match_latency(dense, keep, measure, steps=steps,
                                     on_step=lambda r, v: _say(f"  tp ratio {r:.4f}: {v:.3f} x dense latency"))
        atomic_write(path, json.dumps({"keep": keep, "ratio": ratio, "trace": trace}, indent=2))
        return ratio

    # ------------------------------------------------------------- latency
    def measure_latency(self, models: dict[str, nn.Module], rounds: int | None = None, progress: bool = True
                        ) -> dict[str, dict[str, float]]:
        """One step of each model on the fast path (runner `tecogan.fast`), timed in interleaved rounds
        (a, b, c, a, b, c, ...) after one warm-up call each, so load changes hit every model alike.
        Median, quartiles, extremes and every time per model (ratios between models are taken per
        round: prunekit.latency.paired_ratio); the clock is prunekit.latency's (CPU time of the
        thread for one-thread CPU runs: stable on a shared machine)."""
        from prunekit.latency import Timer, num_threads, pick_clock, resolve_runner

        rounds = rounds or self.preset.latency_repeats
        _, make = resolve_runner(RUNNER)
        inputs = tuple(t.to(self.device) for t in frnet_example_inputs(self.preset.latency_lr_size,
                                                                      scale=self.options.scale))
        with num_threads(self.preset.threads) as threads:
            clock = pick_clock("auto", self.device, threads)
            timer = Timer(clock, self.device)
            steps = {k: make(m.to(self.device).eval()) for k, m in models.items()}
            for step in steps.values():
                step(inputs)
            times: dict[str, list[float]] = {k: [] for k in steps}
            bar = progress_bar(rounds * len(steps), "latency", self.progress and progress)
            try:
                for _ in range(rounds):
                    for k, step in steps.items():
                        times[k].append(timer(step, inputs))
                        bar.update(1)
            finally:
                bar.close()
        out = {}
        for k, v in times.items():
            q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
            out[k] = {"median_ms": statistics.median(v), "p25_ms": q[0], "p75_ms": q[2], "min_ms": min(v),
                      "max_ms": max(v), "rounds": len(v), "clock": clock, "threads": threads, "times_ms": v}
        return out

    def latencies(self, models: dict[str, nn.Module]) -> dict[str, dict[str, float]]:
        """Interleaved fast-path latency of every model of the grid, measured once for this set of
        rows (latency.json); a grid with other rows is measured again, all together."""
        path = self.out_dir / "latency.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if sorted(saved) == sorted(models):
                _say(f"latency: measured earlier for these {len(models)} models ({path}, skipped)")
                return saved
        size = "x".join(map(str, self.preset.latency_lr_size))
        _say(f"latency: {len(models)} models x {self.preset.latency_repeats} interleaved rounds at LR {size} "
             f"on the fast path ({self.device})")
        stats = self.measure_latency(models)
        atomic_write(path, json.dumps(stats, indent=2))
        return stats

    # ---------------------------------------------------------- evaluation
    def test_sets(self) -> list[tuple[str, list[Any], int | None]]:
        if not hasattr(self, "_test_sets"):
            self._test_sets = [(e.label, load_test_set(self.options, e.dataset, self._root(e.folder)), e.max_frames)
                               for e in self.preset.eval_sets]
        return self._test_sets

    def evaluate(self, model: FRNet, key: str) -> dict[str, dict[str, float | None]]:
        """Official-protocol frame averages per test set (the task's scoring, with each set's targets
        cached across models); saves this model's crop for the figure."""
        model = model.to(self.device).eval()
        results: dict[str, dict[str, float | None]] = {}
        for label, sequences, max_frames in self.test_sets():
            if label not in self._metrics:
                self._metrics[label] = VideoMetrics(metrics=tuple(self.preset.metrics), device=self.device,
                                                    lpips_weights=self.lpips_weights, cache_targets=True)
            bar = progress_bar(len(sequences), f"evaluate {key} on {label}", self.progress)
            first_set = label == self.test_sets()[0][0]

            def seen(i: int, seq: Any, pred: np.ndarray, gt: np.ndarray) -> None:
                if i == 0 and first_set:
                    self._save_crop(key, pred[len(pred) // 2], gt[len(gt) // 2])
                bar.update(1)

            try:
                report = score_sequences(model, sequences, self._metrics[label], max_frames, seen)
            finally:
                bar.close()
            results[label] = {m: report.frame_avg(m) if m in report.available else None for m in self.preset.metrics}
            self.unavailable.update(report.unavailable)
        return results

    def _save_crop(self, key: str, pred: np.ndarray, gt: np.ndarray) -> None:
        """This model's crop of the figure frame; the box (the most detailed CROP x CROP area of the
        GT frame, where models differ most) is chosen once and kept in crops/box.json."""
        crops = self.out_dir / "crops"
        box_file = crops / "box.json"
        if box_file.exists():
            y, x = json.loads(box_file.read_text())
        else:
            y, x = detail_box(gt, CROP)
            write_frame(crops / "gt.png", gt[y:y + CROP, x:x + CROP])
            atomic_write(box_file, json.dumps([y, x]))
        write_frame(crops / f"{key}.png", pred[y:y + CROP, x:x + CROP])

    def describe(self, model: FRNet) -> dict[str, Any]:
        """Size and cost of a model: parameters (total, SRNet), MACs and latency at the preset LR sizes.
        They depend on the architecture only, so models of the same architecture share one measurement."""
        srnet = getattr(model, "srnet", None)
        arch = (len(srnet.resblocks) if srnet is not None else 0, profile.count_params(model), has_subpixel_head(model))
        if arch not in self._described:
            self._described[arch] = self._measure(model)
        return self._described[arch]

    def _measure(self, model: nn.Module) -> dict[str, Any]:
        model = model.cpu().eval()
        srnet = getattr(model, "srnet", None)
        flops_inputs = frnet_example_inputs(self.preset.flops_lr_size, scale=model.scale)
        return {
            "blocks": len(srnet.resblocks) if srnet is not None else 0,
            "params_total": profile.count_params(model),
            "params_srnet": profile.count_params(srnet) if srnet is not None else 0,
            "gmacs": profile.flops(model, flops_inputs) / 1e9,
            "tail": (f"subpixel k{srnet.conv_up.kernel}" if has_subpixel_head(model) else "convT")
            if srnet is not None else "-",
        }

    # -------------------------------------------------------------- driver
    def row(self, key: str, series: Series | None, label: tuple[str, str], model: nn.Module, wall: float,
            tp_ratio: float | None = None) -> BenchRow:
        path = self.out_dir / "rows" / f"{key}.json"
        if path.exists():
            _say(f"{key}: evaluated earlier ({path}, skipped)")
            return BenchRow.model_validate_json(path.read_text())
        _say(f"{key}: measuring size and quality")
        settings = {"width": series.width, "latency_target": series.latency, "subpixel": series.subpixel,
                    "move_cost": series.move_cost, "min_keep": series.min_keep, "uniform": series.uniform,
                    "refit": series.refit} \
            if series is not None else {}
        row = BenchRow(key=key, strategy=label[0], finetune=label[1], **settings, **self.describe(model),
                       train_wall_s=round(wall, 1), tp_ratio=tp_ratio, metrics=self.evaluate(model, key))
        atomic_write(path, json.dumps(row.measured(), indent=2))
        return row

    def grid(self) -> list[tuple[Series, int | None]]:
        """(series, block count) items; latency and Torch-Pruning series make one model each (None)."""
        return [(s, b) for s in self.preset.series
                for b in ([None] if s.latency is not None else self.preset.blocks)]

    def run(self) -> list[BenchRow]:
        for series in self.preset.series:  # an unknown strategy fails now, not after the dense training
            if series.strategy != TP:
                STRATEGIES.get(series.strategy)
        self.check_settings()
        if self.preset.threads is not None:  # CPU float results depend on the thread count
            torch.set_num_threads(self.preset.threads)
        try:
            return self._run_grid()
        finally:
            for metrics in self._metrics.values():
                metrics.close()

    def _run_grid(self) -> list[BenchRow]:
        grid = self.grid()
        _say(f"preset {self.preset.name}: dense + {len(grid)} pruned models on {self.device}; output in {self.out_dir}")
        dense_model, dense_wall = self.dense()
        dense_dir = self.out_dir / "runs" / "dense" / "final"
        models: dict[str, nn.Module] = {"dense": dense_model}
        rows = [self.row("dense", None, ("dense", "-"), dense_model, dense_wall)]
        if any(s.finetune != "none" for s in self.preset.series):
            # healed models train `finetune.iterations` more than the dense one; the control gives the
            # dense model the same extra training, so what healing recovers is not confused with it
            if not self.finished("dense-control"):
                _say(f"dense-control: training the dense model {self.preset.finetune['iterations']} iterations more")
            control, wall = self._schedule("dense-control", [{"kind": "train", **self.preset.finetune}], dense_dir)
            models["dense-control"] = control
            rows.append(self.row("dense-control", None, ("dense", "control"), control, wall))
        bicubic = BicubicModel(self.options.scale)
        models["bicubic"] = bicubic
        rows.append(self.row("bicubic", None, ("bicubic", "-"), bicubic, 0.0))
        spent: list[float] = []
        for i, (series, blocks) in enumerate(grid, 1):
            key = series.key if blocks is None else f"{series.key}-nb{blocks}"
            done = (self.out_dir / "rows" / f"{key}.json").exists()
            if not done:
                eta = f", about {_clock(statistics.mean(spent) * (len(grid) - i + 1))} left" if spent else ""
                what = f"keep {blocks} blocks" if blocks is not None else f"keep {series.latency:g} x the latency"
                _say(f"[{i}/{len(grid)}] {key}: {what} ({series.strategy}), heal: {series.finetune}{eta}")
            start = time.perf_counter()
            try:
                model, wall = self.pruned(series, blocks, dense_dir)
            except (UnreachableTargetError, NoUnitsError) as exc:  # one model's target: the others still run
                self.failed[key] = str(exc)
                _say(f"{key}: not built, the run goes on without it: {exc}")
                continue
            tp_ratio = None
            if series.strategy == TP:
                tp_ratio = json.loads((self.out_dir / "tp" / f"lat{series.latency:g}.json").read_text())["ratio"]
            models[key] = model
            rows.append(self.row(key, series, (series.strategy, series.finetune), model, wall, tp_ratio))
            if not done:
                spent.append(time.perf_counter() - start)
        computed = len(spent)
        _say(f"grid: {computed} of {len(grid)} pruned models computed now, {len(grid) - computed} reused from "
             f"{self.out_dir}")
        latency = self.latencies(models)
        return [r.timed(latency[r.key], paired_ratio(latency, r.key, "dense"), rows[0]) for r in rows]

    def montage(self, rows: list[BenchRow]) -> None:
        crops = self.out_dir / "crops"
        if not (crops / "gt.png").exists():
            return
        items = [(series_label(r), read_frame(crops / f"{r.key}.png")) for r in rows
                 if (crops / f"{r.key}.png").exists()]
        crop_figure(read_frame(crops / "gt.png"), items, self.out_dir / "crops.png")


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes else f"{sec} s"


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
        "wall_s_training_total": round(sum(r.train_wall_s for r in rows), 1),
        "flops_convention": (f"MACs (one multiply-add = 1) per frame at LR {preset.flops_lr_size[0]}x"
                             f"{preset.flops_lr_size[1]}, ConvTranspose counted at input resolution, bicubic/"
                             "bilinear/grid_sample and element-wise ops included (prunekit.profile)"),
        "latency": (f"one recurrent FRNet step at LR {preset.latency_lr_size[0]}x{preset.latency_lr_size[1]} on "
                    f"{bench.device} ({preset.threads or torch.get_num_threads()} thread(s)), fast path (runner "
                    f"{RUNNER}: make_fast), all models interleaved over {preset.latency_repeats} rounds after one "
                    "warm-up each; median, with the quartiles (IQR) and extremes in results.json; `latency vs dense` is "
                    "the median of the per-round ratios to the dense model"),
        "unavailable_metrics": bench.unavailable,
        "failed_models": bench.failed,
    }
    write_results(rows, meta, out)
    bench.montage(rows)
    size = f"{preset.flops_lr_size[0]}x{preset.flops_lr_size[1]}"
    atomic_write(out / "report.md", report_markdown(rows, meta, size))
    _say(f"done: {out / 'report.md'}")
    return {"rows": [r.record() for r in rows], "meta": meta}
