"""The run config: one validated file describing task, seed and the train / prune / fine-tune stages.

Everything that can be checked without building the model is checked here (types, unknown keys,
negative iterations, milestones past the end, distillation without a teacher, missing files), so a
bad schedule fails before any work starts with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

import torch

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from prunekit.budget import Target
from prunekit.config import StrictModel
from prunekit.replace import parse_replacements


class OptimizerConfig(StrictModel):
    """Optimiser of the model being trained (tasks may own further optimisers, e.g. a discriminator's)."""

    name: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: NonNegativeFloat = 0.0
    weight_decay: NonNegativeFloat = 0.0

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The optimiser this config describes, over `params`."""
        if self.name == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


class LRSchedule(StrictModel):
    """Learning-rate factor as a pure function of the stage iteration (so resuming needs no scheduler state)."""

    kind: Literal["constant", "multistep", "cosine"] = "constant"
    milestones: list[PositiveInt] = Field(default_factory=list)
    gamma: PositiveFloat = 0.5
    min_factor: NonNegativeFloat = 0.0

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {v}")
        return v

    def factor(self, iteration: int, total: int) -> float:
        """Multiplier of the base lr at 0-based `iteration` of a phase of `total` iterations."""
        if self.kind == "multistep":
            return self.gamma ** sum(1 for m in self.milestones if iteration >= m)
        if self.kind == "cosine":
            import math

            progress = iteration / max(total, 1)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0


class DistillConfig(StrictModel):
    """Distillation from the unpruned teacher, added to the task loss during fine-tuning."""

    weight: NonNegativeFloat = 1.0
    loss: Literal["charbonnier", "l1"] = "charbonnier"
    features: bool = False
    feature_weight: NonNegativeFloat = 0.1


class _Training(StrictModel):
    """Fields shared by every phase that runs optimiser steps."""

    iterations: NonNegativeInt
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    lr_schedule: LRSchedule = Field(default_factory=LRSchedule)
    batch: PositiveInt | None = None
    eval_every: NonNegativeInt | None = None
    ckpt_every: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _milestones_within(self):
        late = [m for m in self.lr_schedule.milestones if m >= self.iterations]
        if self.lr_schedule.kind == "multistep" and late:
            raise ValueError(
                f"lr_schedule.milestones {late} are not below iterations={self.iterations}; they would never apply"
            )
        return self


class TrainStage(_Training):
    kind: Literal["train"]


class FinetuneStage(_Training):
    kind: Literal["finetune"]
    distill: DistillConfig | None = None


class IterativeConfig(StrictModel):
    """Iterative pruning: remove `remove` units, fine-tune `finetune.iterations`, repeat until the target."""

    remove: PositiveInt
    finetune: FinetuneStage


class PruneStage(StrictModel):
    kind: Literal["prune"]
    strategy: str = "block_influence"
    strategy_kwargs: dict[str, Any] = Field(default_factory=dict)
    target: Target | list[Target]
    calibration: NonNegativeInt = 8
    iterative: IterativeConfig | None = None
    channel_importance: str = "l2"
    round_to: PositiveInt | None = None
    replace: list[dict[str, Any]] = Field(default_factory=list)
    runner: str | None = None
    latency_cache: str | None = None
    move_cost: Literal["importance", "sensitivity"] = "importance"
    min_keep: float = Field(0.0, ge=0.0, le=1.0)
    uniform: bool = False  # latency targets: keep every block, cut all channel groups by one fraction
    # calibration batches for the least-squares refit of the pruned layers to the dense ones
    # (prunekit.weight_refit) before healing; 0 = no refit
    refit: NonNegativeInt = 0

    @field_validator("target")
    @classmethod
    def _targets(cls, v: Any):
        items = v if isinstance(v, list) else [v]
        if not items:
            raise ValueError("at least one target is needed")
        if len(items) > 1 and any(t.is_latency for t in items):
            raise ValueError("a latency target chooses blocks and widths itself; it cannot be combined with other targets")
        return v

    @field_validator("replace")
    @classmethod
    def _replacements(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        parse_replacements(v)  # ConfigError -> ValueError below names the field
        return v

    @model_validator(mode="after")
    def _uniform_needs_latency(self):
        if self.uniform and not any(t.is_latency for t in self.targets()):
            raise ValueError("uniform steers the latency planner: it needs a latency_ratio or latency target "
                             "(channel_ratio already cuts every group by one fraction)")
        return self

    @model_validator(mode="after")
    def _iterative_blocks_only(self):
        if self.iterative is not None and any(t.is_latency for t in self.targets()):
            raise ValueError("iterative pruning removes blocks a few at a time; a latency target plans in one shot")
        return self

    def targets(self) -> list[Any]:
        return list(self.target) if isinstance(self.target, list) else [self.target]


Stage = Annotated[Union[TrainStage, PruneStage, FinetuneStage], Field(discriminator="kind")]


class TaskConfig(StrictModel):
    """`name` is a registered task (prunekit.registry.TASKS) or `package.module:factory`."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class RunConfig(StrictModel):
    task: TaskConfig | None = None
    seed: int = 0
    stages: list[Stage] = Field(min_length=1)
    eval_every: NonNegativeInt = 0
    ckpt_every: NonNegativeInt = 0
    keep_last: PositiveInt = 2
    log_every: PositiveInt = 1
    out_dir: str = "runs/run"
    init_checkpoint: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: PositiveInt | None = None  # torch CPU threads (1 is fastest for small models on busy machines)
    progress: bool = True

    @field_validator("init_checkpoint")
    @classmethod
    def _exists(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).expanduser().exists():
            raise ValueError(f"file or directory {v!r} does not exist")
        return v

    @model_validator(mode="after")
    def _teacher_available(self):
        pruned = False
        for i, stage in enumerate(self.stages):
            if isinstance(stage, PruneStage):
                pruned = True
            distill = stage.distill if isinstance(stage, FinetuneStage) else None
            if distill is not None and not pruned:
                raise ValueError(
                    f"stages[{i}].distill needs a teacher: distillation uses the model as it was before the first "
                    "prune stage, so put a prune stage before this finetune stage"
                )
        return self
