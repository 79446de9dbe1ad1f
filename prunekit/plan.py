"""Deciding a pruning plan (the record itself is `prunekit.plan_record.Plan`, re-exported here).

`plan()` is the decision step: a strategy scores the removable units, a budget turns the scores into
a removal set, structure replacements are recorded, and width targets add channel steps. A latency
target hands the block and width choice to `prunekit.latency_plan`. The plan's stats are measured
by applying it to a copy, so "after" numbers are what the pruned model really has.

This module is also callable: `pk.plan(model, graph, ...)` calls `plan()`, and `import prunekit.plan`
gives the module (the package attribute `prunekit.plan` is this module, not a function shadowing it).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import types
from typing import Any, Callable

from torch import nn

from prunekit import budget, latency_plan, profile, strategies
from prunekit.channels import SkippedGroup, plan_channels
from prunekit.checkpoint import read_plan
from prunekit.errors import ConfigError, NoUnitsError, PlanMismatchError
from prunekit.graph import Graph, Layout, input_shapes
from prunekit.plan_record import PLAN_VERSION, LatencyRecord, Plan, Stats
from prunekit.replace import apply_replacements, parse_replacements
from prunekit.surgery import apply, remove_units

__all__ = ["PLAN_VERSION", "BlockTarget", "LatencyRecord", "Plan", "Stats", "Target", "load_plan", "plan"]

BlockTarget = (budget.KeepBlocks, budget.ParamsRatio, budget.FlopsRatio)
Target = budget.Target
load_plan = read_plan  # pk.load_plan: read and validate a plan JSON file (CheckpointError names the file)


def _split_targets(targets: list[Any]) -> tuple[Any | None, Any | None]:
    blocks = [t for t in targets if not (t.is_width or t.is_latency)]
    widths = [t for t in targets if t.is_width]
    if any(t.is_latency for t in targets) and len(targets) > 1:
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
    move_cost: str = "importance",
    min_keep: float = 0.0,
    uniform: bool = False,
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
    `move_cost`: how the latency planner prices a move ("importance": channel importance sums,
    "sensitivity": measured output damage), `min_keep`: the fraction of every channel group's
    width the latency planner leaves at least, and `uniform`: keep every block and cut all channel
    groups by one common fraction, chosen on measured latency.
    """
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
    if uniform and not any(t.is_latency for t in targets):
        raise ConfigError("uniform=True steers the latency planner (a LatencyRatio or Latency target); "
                          "ChannelRatio already cuts every channel group by one fraction")
    if any(t.is_latency for t in targets):
        return latency_plan.plan_latency(
            model, graph, targets[0], scorer, calibration, layout, runner=runner, channel_importance=channel_importance,
            round_to=round_to, replaced=replaced, cache=latency_cache, move_cost=move_cost, min_keep=min_keep,
            uniform=uniform, strategy_kwargs={k: v for k, v in strategy_kwargs.items() if _jsonable(v)},
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


class _CallableModule(types.ModuleType):
    """`prunekit.plan` is both this module and the public function: calling it calls `plan()`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Plan:
        return plan(*args, **kwargs)


__signature__ = inspect.signature(plan)
__doc__ = f"{__doc__}\n{plan.__doc__}"
sys.modules[__name__].__class__ = _CallableModule
