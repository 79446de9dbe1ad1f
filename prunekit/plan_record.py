"""The pruning plan as data: `Plan` (what was removed, replaced and narrowed, with measured stats),
`Stats` and `LatencyRecord`; JSON in and out through pydantic. `prunekit.plan` decides a plan;
`prunekit.surgery` applies one; this module only records one, so everything above can import it.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunekit import profile
from prunekit.budget import Target
from prunekit.channels import ChannelStep, SkippedGroup
from prunekit.errors import ConfigError
from prunekit.fileio import atomic_write
from prunekit.graph import input_shapes
from prunekit.removal import renumbered_path
from prunekit.replace import Replacement
from prunekit.version import __version__

PLAN_VERSION = 1


class Stats(BaseModel):
    """Parameter and FLOP counts before and after (FLOPs: fvcore MACs, one multiply-add = 1)."""

    model_config = ConfigDict(extra="forbid")

    params_before: int
    params_after: int
    flops_before: int
    flops_after: int

    @property
    def params_kept(self) -> float:
        return self.params_after / self.params_before if self.params_before else 1.0

    @property
    def flops_kept(self) -> float:
        return self.flops_after / self.flops_before if self.flops_before else 1.0


class SizeCheck(BaseModel):
    """The chosen model at one more input size of a LatencyRatio's `also_at` (measured as the
    record's own size is)."""

    model_config = ConfigDict(extra="forbid")

    shapes: dict[str, list[int]]
    dense_ms: float
    planned_ms: float
    measured_ms: float
    ratio: float


class LatencyRecord(BaseModel):
    """What a latency target planned and measured. `dense_ms` / `measured_ms` are medians of
    interleaved runs on `hardware` with `threads` threads, the `runner` and the `clock`, at
    `shapes`; `ratio` is the median of the per-round ratios (what the target was checked on, so
    it can differ slightly from measured_ms / dense_ms); `planned_ms` is the lookup-table
    estimate of the chosen model; `also_at` holds the same at the target's other sizes; `move_cost` is how the planner
    priced its moves, `min_keep` the least fraction of a group it left and `uniform` whether it cut
    all groups by one fraction, keeping every block (records written before these existed: the
    defaults)."""

    model_config = ConfigDict(extra="forbid")

    target_ms: float
    dense_ms: float
    planned_ms: float
    measured_ms: float
    device: str
    hardware: str
    threads: int
    runner: str
    clock: str
    shapes: dict[str, list[int]]
    ratio: float | None = None
    move_cost: str = "importance"
    min_keep: float = 0.0
    uniform: bool = False
    spread: float = 0.0
    iterations: int = 0
    planner_s: float = 0.0
    widths: dict[str, list[int]] = Field(default_factory=dict)
    history: list[dict[str, float]] = Field(default_factory=list)
    also_at: list[SizeCheck] = Field(default_factory=list)

    @property
    def kept(self) -> float:
        if self.ratio is not None:
            return self.ratio
        return self.measured_ms / self.dense_ms if self.dense_ms else 1.0


class Plan(BaseModel):
    """What to remove from a model. `removed` holds paths of the dense model; `zeroed` names the
    removed paths that are branch units (path -> outputs; replaced by surgery.ZeroBranch);
    `replaced` holds structure replacements (dense paths, replayed after the removals); channel
    steps name layers of the model after removals and replacements; `channel_skipped` lists channel
    groups width pruning left whole, with the reason."""

    model_config = ConfigDict(extra="forbid")

    version: int = PLAN_VERSION
    prunekit_version: str = __version__
    removed: list[str] = Field(default_factory=list)
    zeroed: dict[str, int] = Field(default_factory=dict)
    channels: list[ChannelStep] = Field(default_factory=list)
    replaced: list[Replacement] = Field(default_factory=list)
    channel_importance: str | None = None
    round_to: int | None = None
    latency: LatencyRecord | None = None
    channel_skipped: list[SkippedGroup] = Field(default_factory=list)
    strategy: str | None = None
    strategy_kwargs: dict[str, Any] = Field(default_factory=dict)
    targets: list[Target] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    stats: Stats
    input_shapes: dict[str, list[int]] = Field(default_factory=dict)

    @classmethod
    def identity(cls, model: nn.Module, example_inputs: Any = None) -> "Plan":
        """A plan that removes nothing (a dense model's checkpoint); FLOPs are 0 without inputs."""
        n = profile.count_params(model)
        f = profile.flops(model, example_inputs) if example_inputs is not None else 0
        shapes = input_shapes(example_inputs) if example_inputs is not None else {}
        return cls(stats=Stats(params_before=n, params_after=n, flops_before=f, flops_after=f), input_shapes=shapes)

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan as JSON, atomically."""
        atomic_write(path, self.model_dump_json(indent=2))

    def path_after(self, path: str, dense: nn.Module) -> str | None:
        """Where the module at `path` of the dense model lives in the pruned one (None if removed)."""
        return renumbered_path(path, self.removed, dense)

    def compose(self, step: "Plan", dense: nn.Module, params_after: int) -> "Plan":
        """This plan followed by `step`, a plan made on the model this plan produces: one plan from
        `dense` (a fresh build) to the model both made, so that a checkpoint replays on a fresh build.
        `params_after` is the parameter count of that model (measured by the caller)."""
        before = list(self.removed)
        inverse = {renumbered_path(p, before, dense): p for p, _ in dense.named_modules() if p}
        if step.replaced and self.channels:
            raise ConfigError("a prune stage with replacements must come before any stage that prunes channels "
                              "(replacements are replayed before channel steps)")
        scores = dict(self.scores)
        scores.update({inverse[p]: v for p, v in step.scores.items() if p in inverse})
        stats = Stats(params_before=self.stats.params_before, params_after=params_after,
                      flops_before=self.stats.flops_before, flops_after=step.stats.flops_after)
        replaced = [r.model_copy(update={"paths": [inverse[p] for p in r.paths]}) for r in step.replaced]
        return self.model_copy(update={
            "replaced": list(self.replaced) + replaced, "latency": step.latency or self.latency,
            "channel_importance": step.channel_importance or self.channel_importance,
            "round_to": step.round_to or self.round_to,
            "removed": before + [inverse[p] for p in step.removed], "channels": list(self.channels) + list(step.channels),
            "zeroed": {**self.zeroed, **{inverse[p]: n for p, n in step.zeroed.items() if p in inverse}},
            "strategy": step.strategy or self.strategy, "targets": step.targets, "scores": scores,
            "stats": stats})
