"""The train -> prune -> fine-tune engine.

A run walks the config's stages with a cursor (stage, prune step, iteration, global step). Training
phases (train, finetune, the fine-tune inside an iterative prune step) run optimiser steps on the
task's loss (+ distillation); prune steps score, select and remove units through prunekit's core API.
The cursor, model (+ plan), optimiser, task state and every rank's RNG go into atomic checkpoints, so
`resume=True` continues exactly where the last checkpoint left off."""

from __future__ import annotations

import copy
import json
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from prunekit import profile
from prunekit.budget import FlopsRatio, ParamsRatio
from prunekit.config import load_config
from prunekit.device import resolve_device
from prunekit.errors import CheckpointError, ConfigError, TrainingDivergedError, UnknownNameError
from prunekit.fileio import atomic_write, check_output
from prunekit.graph import analyze
from prunekit.plan import plan as make_plan
from prunekit.plan_record import Plan
from prunekit.weight_refit import refit
from prunekit.registry import TASKS
from prunekit.schedule import checkpoint as ckpt
from prunekit.schedule import distributed as dd
from prunekit.schedule.config import FinetuneStage, PruneStage, RunConfig, TaskConfig, _Training
from prunekit.schedule.distill import Distiller
from prunekit.schedule.logging import MetricsLog, progress_bar, read_history
from prunekit.schedule.preflight import preflight
from prunekit.schedule.runlock import LOCK_FILE, RunLock
from prunekit.schedule.task import StepContext, Task, TaskHooks, call_train_batches, to_device
from prunekit.surgery import apply


@dataclass
class StepInfo:
    """Given to the `on_step` callback after every optimiser step."""

    stage_index: int
    stage: str
    phase: str
    iteration: int
    global_step: int
    loss: float
    logs: dict[str, float]


@dataclass
class RunResult:
    model: nn.Module
    plan: Plan | None
    history: list[dict[str, Any]]
    run_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class _Cursor:
    stage: int = 0
    prune_step: int = 0  # removals done in the current (iterative) prune stage
    iteration: int = 0  # optimiser steps done in the current training phase
    global_step: int = 0
    target_met: bool = False  # the last removal of an iterative prune stage reached its target

    def name(self) -> str:
        """Checkpoint folder name; sorts in run order."""
        return f"{self.global_step:09d}-{self.stage:03d}-{self.prune_step:03d}-{self.iteration:09d}"


def build_task(cfg: TaskConfig) -> Task:
    """Instantiate the task named in the config (registered name or `package.module:factory`)."""
    try:
        factory = TASKS.resolve(cfg.name)
    except UnknownNameError as exc:
        raise ConfigError(f"task.name: {exc}") from None
    try:
        return factory(**cfg.options)
    except TypeError as exc:
        raise ConfigError(f"task.options: {exc}") from None


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class _Engine:
    def __init__(self, cfg: RunConfig, task: Task, run_dir: Path, progress: bool,
                 on_step: Callable[[StepInfo], None] | None) -> None:
        self.cfg, self.task, self.run_dir = cfg, task, run_dir
        self.hooks = TaskHooks.of(task)
        self.progress = progress and cfg.progress
        self.on_step = on_step
        if cfg.device == "cuda" and not torch.cuda.is_available():  # before joining a process group
            raise ConfigError("device: 'cuda' was asked for but no CUDA device is available")
        wants_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.dist, self._owns_group = dd.init("cuda" if wants_cuda else "cpu")
        self.device = resolve_device(cfg.device, index=self.dist.local_rank)
        self.ckpt_dir = run_dir / "checkpoints"
        self.model: nn.Module | None = None
        self.plan: Plan | None = None
        self.teacher: nn.Module | None = None
        self.teacher_plan: Plan | None = None
        self.cursor = _Cursor()
        self.last_eval: dict[str, float] = {}
        self.last_eval_step = -1
        self._reference: nn.Module | None = None
        self._resume_opt: dict | None = None
        self._resume_rows = 0
        self.finished = False
        self._lock: RunLock | None = None

    # ----------------------------------------------------------------- setup
    def reference(self) -> nn.Module:
        """A freshly built dense model: the structure plan paths refer to."""
        if self._reference is None:
            with torch.random.fork_rng(devices=[]):
                self._reference = self.task.build_model()
        return self._reference

    def initial_model(self) -> tuple[nn.Module, Plan | None]:
        model, plan = self.task.build_model(), None
        init = self.cfg.init_checkpoint
        if init is not None:
            path = Path(init).expanduser()
            if path.is_dir():
                model, plan = ckpt.read_model(path, self.task.build_model)
            else:
                model = self.hooks.load_init(model, path)
        return model, plan

    def start(self, resume: bool) -> None:
        if self.cfg.threads is not None:
            torch.set_num_threads(self.cfg.threads)
        _seed_everything(self.cfg.seed + self.dist.rank)
        self._claim_run_dir(resume)
        self.hooks.setup(self._context())
        if resume and self._config_file().is_file():
            self._check_same_schedule()
        found = ckpt.newest_valid(self.ckpt_dir, self.task.build_model, self.dist.is_main) if resume else None
        if found is not None:
            folder, state, model, plan = found
            ckpt.check_identity(state.get("run"), self._identity(), folder)
            self._load(folder, state, model, plan)
            if self.cursor.stage >= len(self.cfg.stages) and (self.run_dir / "final").is_dir() \
                    and (self.run_dir / "result.json").is_file():
                self.finished = True  # nothing left to do: run() returns the recorded result untouched
                return
            self.log = MetricsLog(self.run_dir, self.dist.is_main, resume_rows=self._resume_rows)
            return
        done = [n for n in ("final", "result.json") if (self.run_dir / n).exists()]
        if not resume and (ckpt.list_checkpoints(self.ckpt_dir) or done):
            held = f"checkpoints in {self.ckpt_dir}" if not done else f"a finished run: {', '.join(done)}"
            raise ConfigError(f"out_dir: {self.run_dir} already holds a run ({held}); "
                              "pass --resume to continue it or choose another out_dir")
        if resume:  # config.json but no checkpoint yet: the run stopped before its first one
            warnings.warn(f"out_dir {self.run_dir}: the run stopped before its first checkpoint; starting it "
                          "from the beginning", stacklevel=2)
        model, plan = self.initial_model()
        preflight(self.cfg, self.task, self.hooks, model, plan)
        self.model, self.plan = model.to(self.device), plan
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self._config_file(), self.cfg.model_dump_json(indent=2))
        self.log = MetricsLog(self.run_dir, self.dist.is_main, resume_rows=None)
        dd.barrier(self.dist)

    def _config_file(self) -> Path:
        return self.run_dir / "config.json"

    def _claim_run_dir(self, resume: bool) -> None:
        """Before anything is read or written: the run folder may not be (or hold) an input, must be
        new, empty or a run of ours, holds a run when resuming, and is locked against a second run.
        Then what killed writes left behind is removed."""
        run_dir = self.run_dir
        check_output(run_dir, [self.cfg.init_checkpoint], kind="folder", allow_existing=True, what="out_dir", flag="",
                     marker=lambda p: any((p / m).exists() for m in ("config.json", "checkpoints", LOCK_FILE)))
        if resume:
            has_config, has_ckpt = self._config_file().is_file(), bool(ckpt.list_checkpoints(self.ckpt_dir))
            if not has_config and not has_ckpt:
                raise ConfigError(f"--resume: {run_dir} holds no run to resume (no config.json, no checkpoints); "
                                  "check --out / out_dir, or drop --resume to start a new run")
            if not has_config:
                raise ConfigError(f"--resume: {self._config_file()} is missing, so the checkpoints in "
                                  f"{self.ckpt_dir} cannot be checked against this config; restore it or start "
                                  "a new run in another out_dir")
        if self.dist.is_main:
            self._lock = RunLock(run_dir).acquire()
            ckpt.clean_leftovers(run_dir)

    def _identity(self) -> dict[str, Any]:
        return ckpt.run_identity(json.loads(self.cfg.model_dump_json()), self.device, self.dist.world_size)

    def _check_same_schedule(self) -> None:
        """Resuming under a different schedule would silently mix two runs: refuse, naming the fields."""
        saved_file = self._config_file()
        try:
            saved = json.loads(saved_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--resume: cannot read {saved_file} ({exc}); it records the run being resumed") from None
        now = json.loads(self.cfg.model_dump_json())
        changed = [k for k in ckpt.RESULT_FIELDS if saved.get(k) != now.get(k)]
        if changed:
            raise ConfigError(f"{', '.join(changed)}: differ from the run being resumed ({saved_file}); resume with "
                              "the same config or start a new run in another out_dir")

    def _context(self) -> StepContext:
        return StepContext(device=self.device, rank=self.dist.rank, world_size=self.dist.world_size,
                           wrap=lambda m: dd.wrap(m, self.dist, self.device),
                           all_reduce_mean=lambda t: dd.all_reduce_mean(t, self.dist))

    def _load(self, folder: Path, state: dict[str, Any], model: nn.Module, plan: Plan | None) -> None:
        self.plan = plan
        self.model = model.to(self.device)
        teacher_dir = self.run_dir / "teacher"
        if state.get("teacher"):
            if not teacher_dir.is_dir():
                raise CheckpointError(f"--resume: {teacher_dir} is missing; the checkpoint {folder.name} needs the "
                                      "dense teacher saved there (it cannot be rebuilt from the pruned model). "
                                      "Restore it or start a new run")
            teacher, self.teacher_plan = ckpt.read_model(teacher_dir, self.task.build_model)
            self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.cursor = _Cursor(**state["cursor"])
        self._resume_rows = int(state.get("log_rows", 0))
        self._resume_opt = state.get("optimizer")
        self.last_eval = dict(state.get("last_eval") or {})
        self.last_eval_step = int(state.get("last_eval_step", -1))
        if state.get("task") is not None:
            self.hooks.load_state_dict(state["task"])
        rngs = state["rng"]
        if len(rngs) != self.dist.world_size:
            raise ConfigError(f"the checkpoint {folder} was written by {len(rngs)} processes, this run has "
                              f"{self.dist.world_size}; resume with the same number of processes")
        ckpt.set_rng_state(rngs[self.dist.rank])

    # ----------------------------------------------------------- checkpoints
    def save(self, optimizer: torch.optim.Optimizer | None) -> None:
        rngs = dd.gather(ckpt.rng_state(), self.dist)
        if self.dist.is_main:
            c = self.cursor
            state = {
                "cursor": dict(vars(c)),
                "log_rows": self.log.rows,
                "optimizer": optimizer.state_dict() if optimizer is not None and c.iteration > 0 else None,
                "task": self.hooks.state_dict(),
                "rng": rngs,
                "teacher": "teacher" if self.teacher is not None else None,
                "last_eval": dict(self.last_eval),
                "last_eval_step": self.last_eval_step,
                "run": self._identity(),
            }
            ckpt.save_checkpoint(self.ckpt_dir, c.name(), self.model, self.plan, state, self.cfg.keep_last)
        dd.barrier(self.dist)

    # ------------------------------------------------------------ evaluation
    def evaluate(self, stage: str, phase: str, iteration: int) -> None:
        if self.cursor.global_step == self.last_eval_step and phase != "prune":
            return
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            saved = ckpt.rng_state()  # evaluation must not change the training's random stream
            self.model.eval()
            with torch.no_grad():
                metrics = {f"eval_{k}" if not k.startswith("eval_") else k: float(v)
                           for k, v in self.task.evaluate(self.model).items()}
            self.model.train()
            ckpt.set_rng_state(saved)
            self.log.log(self.cursor.global_step, stage, phase, iteration, metrics)
        self.last_eval = dd.broadcast(metrics, self.dist)
        self.last_eval_step = self.cursor.global_step

    # -------------------------------------------------------------- training
    def train_phase(self, stage_index: int, label: str, phase: str, scfg: _Training, data_seed: int,
                    distill: Any = None) -> None:
        c = self.cursor
        if c.iteration >= scfg.iterations:
            return
        params = [p for p in self.model.parameters() if p.requires_grad]
        o = scfg.optimizer
        opt = o.build(params)
        if self._resume_opt is not None and c.iteration > 0:
            opt.load_state_dict(self._resume_opt)
        self._resume_opt = None
        entry = self.hooks.train_module(self.model)
        net = dd.wrap(entry, self.dist, self.device)
        distiller = self._distiller(distill, entry) if distill is not None else None
        teacher = self.teacher if distill is not None else None
        eval_every = scfg.eval_every if scfg.eval_every is not None else self.cfg.eval_every
        ckpt_every = scfg.ckpt_every if scfg.ckpt_every is not None else self.cfg.ckpt_every
        batches = call_train_batches(self.task, data_seed, self.dist.rank, self.dist.world_size, scfg.batch,
                                     start=c.iteration)
        bar = progress_bar(scfg.iterations, f"{label}", self.progress, initial=c.iteration)
        self.model.train()
        try:
            while c.iteration < scfg.iterations:
                lr = o.lr * scfg.lr_schedule.factor(c.iteration, scfg.iterations)
                for group in opt.param_groups:
                    group["lr"] = lr
                batch = next(batches)
                opt.zero_grad(set_to_none=True)
                loss, logs = self.task.loss(net, batch, teacher=teacher, step=c.iteration)
                logs = dict(logs)
                if distiller is not None:
                    extra, dlogs = distiller.pop_loss()
                    loss = loss + extra.to(loss.device)
                    logs.update(dlogs)
                finite = bool(torch.isfinite(loss.detach()).all())
                if not dd.all_finite(finite, self.dist, self.device):
                    found = ckpt.list_checkpoints(self.ckpt_dir)
                    last = str(found[-1]) if found else "none written yet"
                    raise TrainingDivergedError(
                        f"stage {stage_index} ({label}), iteration {c.iteration + 1}: the loss is "
                        f"{float(loss.detach())} ({logs}); stopped. Last good checkpoint: {last}. Lower the "
                        "learning rate or check the data, then resume."
                    )
                loss.backward()
                opt.step()
                c.iteration += 1
                c.global_step += 1
                value = float(dd.all_reduce_mean(loss.detach(), self.dist))
                logs.update(loss=value, lr=lr)
                if c.iteration % self.cfg.log_every == 0 or c.iteration == scfg.iterations:
                    self.log.log(c.global_step, label, phase, c.iteration, logs)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4g}")
                if self.on_step is not None:
                    self.on_step(StepInfo(stage_index, label, phase, c.iteration, c.global_step, value, logs))
                if c.iteration == scfg.iterations:
                    break
                if eval_every and c.iteration % eval_every == 0:
                    self.evaluate(label, phase, c.iteration)
                if ckpt_every and c.iteration % ckpt_every == 0:
                    self.save(opt)
        finally:
            bar.close()
            if distiller is not None:
                distiller.close()
        self.evaluate(label, phase, c.iteration)

    def _distiller(self, cfg: Any, entry: nn.Module) -> Distiller:
        if self.teacher is None:
            raise ConfigError("distill: no teacher (the model before the first prune stage) is available")
        pairs: dict[str, str] = {}
        if cfg.features:
            ref = self.reference()
            dense = Plan.identity(ref)
            teacher_plan, student_plan = self.teacher_plan or dense, self.plan or dense
            graph = analyze(ref, self.task.example_inputs(), self.hooks.layout)
            for unit in graph.leaves():
                t_path = teacher_plan.path_after(unit.path, ref)
                s_path = student_plan.path_after(unit.path, ref)
                if t_path is not None and s_path is not None:
                    pairs[t_path] = s_path
        return Distiller(self.model, self.teacher, cfg, pairs, student_entry=entry,
                         teacher_entry=self.hooks.train_module(self.teacher), select=self.hooks.distill_output)

    # --------------------------------------------------------------- pruning
    def prune_step(self, stage_index: int, stage: PruneStage) -> bool:
        """One removal (all of it for one-shot). Returns True when the stage's target is met."""
        if self.teacher is None:
            self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.teacher_plan = self.plan
            if self.dist.is_main:
                ckpt.replace_model(self.teacher, self.plan, self.run_dir / "teacher")
        targets = stage.targets()
        step_plan_json = None
        done = True
        if self.dist.is_main:
            self.model.eval()
            example = to_device(self.task.example_inputs(), self.device)
            graph = analyze(self.model, example, self.hooks.layout)
            if stage.iterative is not None:
                targets = [_relative_target(targets[0], self.model, self.reference(), self.plan, example)]
            data = to_device(self.task.calibration(stage.calibration), self.device) if stage.calibration else None
            step = make_plan(self.model, graph, strategy=stage.strategy, target=targets, data=data,
                             channel_importance=stage.channel_importance, round_to=stage.round_to,
                             replace=stage.replace or None, runner=stage.runner, latency_cache=stage.latency_cache,
                             move_cost=stage.move_cost, min_keep=stage.min_keep, uniform=stage.uniform,
                             **stage.strategy_kwargs)
            if stage.iterative is not None and len(step.removed) > stage.iterative.remove:
                order = sorted(step.removed, key=lambda p: step.scores.get(p, 0.0))
                step = step.model_copy(update={"removed": order[: stage.iterative.remove]})
                done = False
            step_plan_json = step.model_dump_json()
            self.model.train()
        step_plan_json, done = dd.broadcast((step_plan_json, done), self.dist)
        step = Plan.model_validate_json(step_plan_json)
        calib = None  # replacements fit their initial weights on the calibration batches (same on every rank)
        if step.replaced and stage.calibration:
            calib = to_device(self.task.calibration(stage.calibration), self.device)
        pruned = apply(self.model, step, to_device(self.task.example_inputs(), self.device),
                       calibration=calib).to(self.device)
        refit_stats: dict[str, float] = {}
        if stage.refit:  # the same batches on every rank, so every rank refits alike
            report = refit(pruned, self.model, to_device(self.task.calibration(stage.refit), self.device))
            refit_stats = {"refit_layers": float(len(report.fitted)), "refit_skipped": float(len(report.skipped))}
        if stage.iterative is not None:  # the step removed a subset: measure what is really left
            flops = profile.flops(pruned, to_device(self.task.example_inputs(), self.device))
            step = step.model_copy(update={"stats": step.stats.model_copy(update={"flops_after": flops})})
        params_after = profile.count_params(pruned)
        if self.plan is None:
            self.plan = step.model_copy(update={"stats": step.stats.model_copy(update={"params_after": params_after})})
        else:
            self.plan = self.plan.compose(step, self.reference(), params_after)
        self.model = pruned
        self.log.log(self.cursor.global_step, f"stage{stage_index}", "prune", self.cursor.prune_step + 1,
                     {"removed": float(len(step.removed)), "params": float(self.plan.stats.params_after),
                      "params_kept": self.plan.stats.params_kept, **refit_stats})
        return done

    # ------------------------------------------------------------------ loop
    def run(self) -> RunResult:
        if self.finished:
            return self._recorded_result()
        c = self.cursor
        stages = self.cfg.stages
        while c.stage < len(stages):
            stage = stages[c.stage]
            label = f"stage{c.stage}:{stage.kind}"
            if isinstance(stage, PruneStage):
                if stage.iterative is None:
                    self.prune_step(c.stage, stage)
                    self.evaluate(label, "prune", 1)
                else:
                    self.iterative_prune(label, stage)
            else:
                distill = stage.distill if isinstance(stage, FinetuneStage) else None
                self.train_phase(c.stage, label, stage.kind, stage, self._data_seed(), distill=distill)
            c.stage, c.prune_step, c.iteration, c.target_met = c.stage + 1, 0, 0, False
            self.save(None)
        return self.finish()

    def iterative_prune(self, label: str, stage: PruneStage) -> None:
        """[remove `remove` units, fine-tune] until the target is met; the cursor's prune_step counts
        removals done, so a resumed run continues inside the step it stopped in."""
        c = self.cursor
        tune = stage.iterative.finetune
        while True:
            if c.prune_step == 0 or (c.iteration >= tune.iterations and not c.target_met):
                c.target_met = self.prune_step(c.stage, stage)
                c.prune_step += 1
                c.iteration = 0
                self.evaluate(label, "prune", c.prune_step)
                self.save(None)
            self.train_phase(c.stage, label, f"prune{c.prune_step}_finetune", tune, self._data_seed(),
                             distill=tune.distill)
            if c.target_met:
                return

    def _data_seed(self) -> int:
        """Distinct, reproducible batch stream per (run seed, stage, prune step)."""
        c = self.cursor
        return self.cfg.seed * 1_000_003 + c.stage * 1009 + c.prune_step

    def finish(self) -> RunResult:
        if self.last_eval_step != self.cursor.global_step or not self.last_eval:
            self.evaluate("final", "final", 0)
        if self.dist.is_main:
            ckpt.replace_model(self.model, self.plan, self.run_dir / "final")
            atomic_write(self.run_dir / "result.json", json.dumps(
                {"metrics": self.last_eval, "global_step": self.cursor.global_step,
                 "params": self.plan.stats.params_after if self.plan is not None else None}, indent=2))
        self.log.close()
        dd.barrier(self.dist)
        return RunResult(model=self.model, plan=self.plan, history=self.log.history, run_dir=self.run_dir,
                         metrics=dict(self.last_eval))

    def _recorded_result(self) -> RunResult:
        """A finished run resumed again: its final model, metrics and history, nothing rewritten."""
        model, plan = ckpt.read_model(self.run_dir / "final", self.task.build_model)
        try:
            metrics = json.loads((self.run_dir / "result.json").read_text())["metrics"]
        except (OSError, ValueError, KeyError, TypeError):
            metrics = dict(self.last_eval)
        return RunResult(model=model.to(self.device), plan=plan, history=read_history(self.run_dir),
                         run_dir=self.run_dir, metrics=dict(metrics))

    def close(self) -> None:
        """Release what the run holds even when it failed: the metrics writer, the run folder's lock and
        the process group."""
        log = getattr(self, "log", None)
        if log is not None:
            log.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._owns_group:
            import torch.distributed as tdist

            tdist.destroy_process_group()


def _relative_target(target: Any, model: nn.Module, reference: nn.Module, plan: Plan | None, example: Any) -> Any:
    """Ratio targets are relative to the model at the first prune step; re-express them for the
    current, already-pruned model so each iterative step plans toward the same end point."""
    if plan is None or not isinstance(target, (ParamsRatio, FlopsRatio)):
        return target
    if isinstance(target, ParamsRatio):
        start, now = plan.stats.params_before, profile.count_params(model)
    else:
        start = plan.stats.flops_before or profile.flops(reference, to_device(example, torch.device("cpu")))
        now = profile.flops(model, example)
    keep = min(1.0, target.keep * start / max(now, 1))
    return target.model_copy(update={"keep": keep})


def run(config: RunConfig | dict | str | os.PathLike, resume: bool = False, progress: bool = True, *,
        task: Task | None = None, out_dir: str | os.PathLike | None = None,
        on_step: Callable[[StepInfo], None] | None = None) -> RunResult:
    """Run (or with `resume=True` continue) the schedule in `config`.

    `task` overrides the config's task (e.g. a `ModelTask` built in Python); `out_dir` overrides the
    config's; `on_step` is called after every optimiser step (raise from it to stop the run)."""
    cfg = load_config(RunConfig, config)
    if out_dir is not None:
        cfg = cfg.model_copy(update={"out_dir": str(out_dir)})
    if task is None:
        if cfg.task is None:
            raise ConfigError("task: required (a registered task name and its options) unless a task object is "
                              "passed to run()")
        task = build_task(cfg.task)
    engine = _Engine(cfg, task, Path(cfg.out_dir), progress, on_step)
    try:
        engine.start(resume)
        return engine.run()
    finally:
        engine.close()
