"""Checks a run config against its task and model before any training: each stage's batch size is
one the task takes, strategies exist, block targets are reachable on the real model, and block
removal does not follow channel pruning. Every problem is a ConfigError naming the stage."""

from __future__ import annotations

import inspect

from torch import nn

from prunekit import strategies
from prunekit.budget import KeepBlocks, select_units
from prunekit.errors import ConfigError, PrunekitError
from prunekit.graph import analyze
from prunekit.plan_record import Plan
from prunekit.schedule.config import FinetuneStage, RunConfig, TrainStage, _Training
from prunekit.schedule.task import Task, TaskHooks


def preflight(cfg: RunConfig, task: Task, hooks: TaskHooks, model: nn.Module, plan: Plan | None) -> None:
    """Catch unreachable or unsupported prune stages before any training."""
    n_blocks: int | None = None
    widths_pruned = bool(plan is not None and plan.channels)
    for i, stage in enumerate(cfg.stages):
        where = f"stages[{i}]"
        if isinstance(stage, (TrainStage, FinetuneStage)):
            check_batch(task, stage, where)
            continue
        targets = stage.targets()
        try:
            strategies.get_strategy(stage.strategy, **stage.strategy_kwargs)
        except (PrunekitError, TypeError) as exc:
            raise ConfigError(f"{where}.strategy: {exc}") from None
        block = [t for t in targets if not t.is_width]
        if block and widths_pruned:
            raise ConfigError(f"{where}.target: removing blocks after channels were pruned is not supported; "
                              "put block targets before channel targets")
        if stage.iterative is not None:
            if not block or len(targets) > 1:
                raise ConfigError(f"{where}.iterative: iterative pruning needs exactly one block target "
                                  f"(keep_blocks, params_ratio or flops_ratio), got {[t.kind for t in targets]}")
            check_batch(task, stage.iterative.finetune, f"{where}.iterative.finetune")
        if n_blocks is None:
            example = task.example_inputs()
            graph = analyze(model, example, hooks.layout)
            n_blocks = len(graph.leaves())
            for t in block:  # the first block target is checked on the real model, with neutral scores
                try:
                    select_units(model, graph, {u.path: 0.0 for u in graph.leaves()}, t, example)
                except PrunekitError as exc:
                    raise ConfigError(f"{where}.target: {exc}") from None
        for t in block:
            if isinstance(t, KeepBlocks) and not t.per_group:
                if t.n > n_blocks:
                    raise ConfigError(f"{where}.target: keep {t.n} blocks is unreachable; the model has "
                                      f"{n_blocks} removable blocks at this stage")
                n_blocks = t.n
        widths_pruned = widths_pruned or any(t.is_width for t in targets)


def check_batch(task: Task, stage: _Training, where: str) -> None:
    """A stage's `batch` needs a task whose `train_batches` takes `batch_size`."""
    if stage.batch is not None and "batch_size" not in inspect.signature(task.train_batches).parameters:
        raise ConfigError(f"{where}.batch: task {type(task).__name__} does not take a batch size")
