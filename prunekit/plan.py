"""The pruning plan: a small JSON record of what to remove, replayable on a freshly built model.

`plan()` is the decision step: a strategy scores the removable units, a budget turns the scores into
a removal set, structure replacements are recorded, and width targets add channel steps. A latency
target hands the block and width choice to `prunekit.latency_plan`. The plan's stats are measured
by applying it to a copy, so "after" numbers are what the pruned model really has.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

import prunekit
from prunekit import budget, profile, strategies
from prunekit.channels import ChannelStep, SkippedGroup, plan_channels
from prunekit.errors import ConfigError, NoUnitsError, PlanMismatchError
from prunekit.fileio import atomic_write
from prunekit.graph import Graph, Layout, input_shapes
from prunekit.replace import Replacement, parse_replacements

PLAN_VERSION = 1

BlockTarget = (budget.KeepBlocks, budget.ParamsRatio, budget.FlopsRatio)
Target = budget.Target


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


class LatencyRecord(BaseModel):
    """What a latency target planned and measured. `dense_ms` / `measured_ms` are medians of
    interleaved runs on `hardware` with `threads` threads, the `runner` and the `clock`, at
    `shapes`; `ratio` is the median of the per-round ratios (what the target was checked on, so
    it can differ slightly from measured_ms / dense_ms); `planned_ms` is the lookup-table
    estimate of the chosen model; `move_cost` is how the planner priced its moves (records
    written before it existed priced by importance)."""

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
    spread: float = 0.0
    iterations: int = 0
    planner_s: float = 0.0
    widths: dict[str, list[int]] = Field(default_factory=dict)
    history: list[dict[str, float]] = Field(default_factory=list)

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
    prunekit_version: str = prunekit.__version__
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


def _split_targets(targets: list[Any]) -> tuple[Any | None, Any | None]:
    blocks = [t for t in targets if isinstance(t, BlockTarget)]
    widths = [t for t in targets if isinstance(t, budget.WidthTarget)]
    if any(isinstance(t, budget.LatencyTarget) for t in targets) and len(targets) > 1:
        raise ConfigError(
            "a latency target (latency_ratio, latency) chooses blocks and channel widths itself and cannot be "
            f"combined with other targets, got {[t.kind for t in targets]}"
        )
    if len(blocks) > 1 or len(widths) > 1:
        raise ConfigError(
            "at most one block target and one width target (ChannelRatio or ChannelFlops) may be combined, "
            f"got {[t.kind for t in targets]}"
        )
    return (blocks[0] if blocks else None), (widths[0] if widths else None)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def plan(
    model: nn.Module,
    graph: Graph,
    strategy: str | strategies.Strategy = "block_influence",
    target: Any = None,
    data: Any = None,
    layout: Layout | None = None,
    *,
    runner: str | Callable | None = None,
    channel_importance: Any = "l2",
    round_to: int | None = None,
    replace: Any = None,
    latency_cache: str | os.PathLike | None = None,
    move_cost: str = "sensitivity",
    **strategy_kwargs: Any,
) -> Plan:
    """Decide what to remove from `model` (analysed as `graph`) to meet `target`.

    `target` is a KeepBlocks / ParamsRatio / FlopsRatio / ChannelRatio / ChannelFlops (or its dict
    form) or a list of one block target and one width target (default KeepBlocks(5)), or a
    LatencyRatio / Latency alone (blocks and per-group widths are then chosen together by measured
    milliseconds, see prunekit.latency_plan). Blocks are removed first; a ChannelFlops limit is
    relative to the model width pruning starts from (the block-pruned model), not the dense one.
    `strategy` is a registered name or a Strategy; strategies and channel importances that need
    calibration data use the graph's example inputs when `data` is None.

    `channel_importance` ("l2", "l1", "taylor", "activation", "random", a registered name or a
    torch-pruning Importance) and `round_to` steer width pruning; `replace` lists structure
    replacements (prunekit.replace) applied after the removals; `runner` (a registered name or a
    callable; default: the layout's runner, else "plain") and `latency_cache` (a directory; default
    $PRUNEKIT_CACHE/latency or ~/.cache/prunekit/latency) are used by latency targets, and so is
    `move_cost`: how the latency planner prices a move ("sensitivity": measured output damage,
    "importance": channel importance sums).
    """
    from prunekit.surgery import apply, remove_units

    targets = [budget.parse_target(t) for t in (target if isinstance(target, (list, tuple)) else [target or budget.KeepBlocks(n=5)])]
    block_target, width_target = _split_targets(targets)
    if profile.count_params(model) != graph.total_params:
        raise PlanMismatchError(
            f"the graph was analysed on a model with {graph.total_params:,} parameters, "
            f"but {type(model).__name__} has {profile.count_params(model):,}"
        )
    layout = layout or graph.layout
    example_inputs = graph.example_inputs
    if example_inputs is None:
        raise ConfigError("this Graph carries no example inputs (it was loaded, not made by analyze); re-run analyze")

    replaced = parse_replacements(replace)
    importance_name = channel_importance if isinstance(channel_importance, str) else type(channel_importance).__name__
    if round_to is not None and round_to < 1:
        raise ConfigError(f"round_to must be a positive integer, got {round_to}")
    scorer = strategies.get_strategy(strategy, **strategy_kwargs)
    calibration = data if data is not None else [example_inputs]  # the traced inputs: a one-batch calibration set
    if getattr(scorer, "needs_data", False):
        data = calibration
    if any(isinstance(t, budget.LatencyTarget) for t in targets):
        from prunekit import latency_plan

        return latency_plan.plan_latency(
            model, graph, targets[0], scorer, calibration, layout, runner=runner, channel_importance=channel_importance,
            round_to=round_to, replaced=replaced, cache=latency_cache, move_cost=move_cost,
            strategy_kwargs={k: v for k, v in strategy_kwargs.items() if _jsonable(v)},
        )
    removed: list[str] = []
    scores: dict[str, float] = {}
    if block_target is not None:
        units = graph.removable()
        if not units:
            raise NoUnitsError(
                f"{type(model).__name__} has no removable units (found {len(graph.units)} units, none removable); "
                "declare some in a Layout or use a width target (ChannelRatio, ChannelFlops)"
            )
        scores = {k: float(v) for k, v in scorer.score(model, graph, units, data).items()}
        removed = list(budget.select_units(model, graph, scores, block_target, example_inputs))
    zeroed = {u.path: u.outputs for u in graph.units if u.kind == "branch" and u.path in removed}

    steps: list[Any] = []
    skipped: list[SkippedGroup] = []
    if width_target is not None:
        reduced = remove_units(model, removed, zeroed)
        if replaced:
            from prunekit.replace import apply_replacements

            apply_replacements(reduced, replaced, removed, model)
        steps = plan_channels(reduced, example_inputs, width_target, layout=layout, importance=channel_importance,
                              round_to=round_to, data=calibration, skipped=skipped)

    before_params = profile.count_params(model)
    before_flops = graph.total_flops or profile.flops(model, example_inputs)
    draft = Plan(
        removed=removed,
        zeroed=zeroed,
        channels=steps,
        replaced=replaced,
        channel_importance=importance_name if width_target is not None else None,
        round_to=round_to if width_target is not None else None,
        channel_skipped=skipped,
        strategy=getattr(scorer, "name", type(scorer).__name__) if block_target is not None else None,
        strategy_kwargs={k: v for k, v in strategy_kwargs.items() if _jsonable(v)},
        targets=targets,
        scores=scores,
        stats=Stats(params_before=before_params, params_after=before_params, flops_before=before_flops, flops_after=before_flops),
        input_shapes=input_shapes(example_inputs),
    )
    pruned = apply(model, draft, example_inputs)
    draft.stats.params_after = profile.count_params(pruned)
    draft.stats.flops_after = profile.flops(pruned, example_inputs)
    return draft


def load_plan(path: str) -> Plan:
    """Read and validate a plan JSON file (CheckpointError names the file and the problem)."""
    from prunekit.checkpoint import read_plan

    return read_plan(path)
