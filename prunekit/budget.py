"""Budgets: pruning targets, and the choice of which units to remove to meet one.

Targets are small pydantic models with a `kind` discriminator, so a plan or a config file stores
them as JSON and reads them back (`parse_target`). Block targets (KeepBlocks, ParamsRatio,
FlopsRatio) are met by `select_units`; the width targets ChannelRatio and ChannelFlops are met by
`prunekit.channels.plan_channels`; the latency targets LatencyRatio and Latency are met by
`prunekit.latency_plan.plan_latency`, which chooses blocks and per-group widths together.

Every block target must leave at least one removable block: removing all of them is reported
as an UnreachableTargetError, like keeping more blocks than exist.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from prunekit import profile
from prunekit.errors import ConfigError, NoUnitsError, UnreachableTargetError
from prunekit.removal import remove_units

if TYPE_CHECKING:
    from prunekit.graph import Graph, Unit

_MISSING: Any = object()


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


class _Target(BaseModel):
    """A target; the main field may be given positionally: KeepBlocks(5), ParamsRatio(0.5).

    Its fields carry their bounds (pydantic constraints), so a target that exists is in range; a
    value out of range is an UnreachableTargetError naming the field, the bound and the value
    (from a config file, `parse_target` reports it as a ConfigError)."""

    model_config = ConfigDict(extra="forbid")
    _positional: ClassVar[str] = ""
    is_width: ClassVar[bool] = False  # met by width pruning (prunekit.channels)
    is_latency: ClassVar[bool] = False  # met by the latency planner (prunekit.latency_plan)

    def __init__(self, value: Any = _MISSING, /, **data: Any) -> None:
        if value is not _MISSING:
            data[self._positional] = value
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise UnreachableTargetError(f"{type(self).__name__}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    out = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        bound = _BOUNDS.get(e["type"])
        if bound is not None:
            limit = next(iter(e.get("ctx", {}).values()), "?")
            out.append(f"{where} must be {bound} {limit}, got {e.get('input')!r}")
        else:
            out.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(out)


Fraction = Annotated[float, Field(gt=0.0, le=1.0)]  # a keep fraction, 0 < keep <= 1
PruneFraction = Annotated[float, Field(ge=0.0, lt=1.0)]  # a prune fraction, 0 <= prune < 1


class KeepBlocks(_Target):
    """Keep `n` blocks (removable leaf units); with `per_group`, keep `n` in every group of
    sibling blocks (blocks sharing a container, e.g. each residual group of RCAN)."""

    _positional: ClassVar[str] = "n"
    kind: Literal["keep_blocks"] = "keep_blocks"
    n: int = Field(ge=1)  # removing every block is not a pruning
    per_group: bool = False


class ParamsRatio(_Target):
    """Keep at most `keep` x the dense model's parameters, 0 < keep <= 1."""

    _positional: ClassVar[str] = "keep"
    kind: Literal["params_ratio"] = "params_ratio"
    keep: Fraction


class FlopsRatio(_Target):
    """Keep at most `keep` x the dense model's FLOPs (profile.flops convention), 0 < keep <= 1."""

    _positional: ClassVar[str] = "keep"
    kind: Literal["flops_ratio"] = "flops_ratio"
    keep: Fraction


class ChannelRatio(_Target):
    """Remove the fraction `prune` of the output channels of every prunable layer group (width
    pruning, see prunekit.channels); `ignore` lists layer paths whose outputs stay intact.
    `per_group` gives some groups their own fraction: `{layer path or glob: fraction}`, matched
    against the layers whose outputs a group prunes (the first matching entry wins)."""

    _positional: ClassVar[str] = "prune"
    is_width: ClassVar[bool] = True
    kind: Literal["channel_ratio"] = "channel_ratio"
    prune: PruneFraction
    ignore: list[str] = Field(default_factory=list)
    per_group: dict[str, PruneFraction] = Field(default_factory=dict)


class ChannelFlops(_Target):
    """Width pruning to a FLOPs budget: keep at most `keep` x the FLOPs (profile.flops convention)
    of the model handed to width pruning, 0 < keep <= 1, by the smallest uniform per-group prune
    fraction that meets it (see prunekit.channels); `ignore` as for ChannelRatio."""

    _positional: ClassVar[str] = "keep"
    is_width: ClassVar[bool] = True
    kind: Literal["channel_flops"] = "channel_flops"
    keep: Fraction
    ignore: list[str] = Field(default_factory=list)


class LatencyRatio(_Target):
    """Keep at most `keep` x the dense model's latency, 0 < keep <= 1, measured on the device the
    plan runs on with the model's runner. `shape` ({input name: shape}, names as in
    `Plan.input_shapes`) sets the input size latency is measured at; default: the example inputs'.
    `also_at` lists more sizes (same form) the ratio must hold at too: what a layer saves depends
    on the frame size (caches, fixed per-call costs), so a plan made at one size can drift at
    another; with `also_at` the planner prefers cuts that save at every size and checks each.
    The planner chooses removed blocks and per-group channel widths together."""

    _positional: ClassVar[str] = "keep"
    is_latency: ClassVar[bool] = True
    kind: Literal["latency_ratio"] = "latency_ratio"
    keep: Fraction
    shape: dict[str, list[int]] | None = None
    also_at: list[dict[str, list[int]]] | None = None


class Latency(_Target):
    """Keep at most `ms` milliseconds per forward pass (measured as for LatencyRatio), ms > 0."""

    _positional: ClassVar[str] = "ms"
    is_latency: ClassVar[bool] = True
    kind: Literal["latency"] = "latency"
    ms: float = Field(gt=0.0)
    shape: dict[str, list[int]] | None = None


WidthTarget = (ChannelRatio, ChannelFlops)  # kept for callers; targets say it themselves: `is_width`
LatencyTarget = (LatencyRatio, Latency)  # likewise `is_latency`
_TARGETS = (KeepBlocks, ParamsRatio, FlopsRatio, ChannelRatio, ChannelFlops, LatencyRatio, Latency)
AnyTarget = Union[KeepBlocks, ParamsRatio, FlopsRatio, ChannelRatio, ChannelFlops, LatencyRatio, Latency]
Target = Annotated[AnyTarget, Field(discriminator="kind")]


def parse_target(obj: Any) -> AnyTarget:
    """A target from a dict / JSON string (as written by `model_dump`) or an existing target;
    ConfigError names what is wrong (unknown kind, field out of range, unknown field)."""
    if isinstance(obj, _TARGETS):
        return obj
    kinds = {cls.model_fields["kind"].default: cls for cls in _TARGETS}
    try:
        data = json.loads(obj) if isinstance(obj, (str, bytes)) else obj
    except ValueError as exc:
        raise ConfigError(f"invalid pruning target {obj!r}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") not in kinds:
        raise ConfigError(f"invalid pruning target {obj!r}; kinds: {', '.join(kinds)}")
    try:
        return kinds[data["kind"]](**data)
    except UnreachableTargetError as exc:
        raise ConfigError(f"invalid pruning target {obj!r}: {exc}") from None


def _removal_order(blocks: list[Unit], scores: dict[str, float]) -> list[Unit]:
    """Lowest score first; on ties the later block goes first."""
    position = {u.path: i for i, u in enumerate(blocks)}
    return sorted(blocks, key=lambda u: (scores[u.path], -position[u.path]))


def _keep_blocks(blocks: list[Unit], scores: dict[str, float], target: KeepBlocks) -> list[Unit]:
    if not target.per_group:
        if target.n > len(blocks):
            raise UnreachableTargetError(f"{target!r}: the model has only {len(blocks)} removable blocks")
        return _removal_order(blocks, scores)[: len(blocks) - target.n]
    groups: dict[str, list[Unit]] = {}
    for unit in blocks:
        groups.setdefault(unit.path.rpartition(".")[0], []).append(unit)
    removed: list[Unit] = []
    for container, members in groups.items():
        if target.n > len(members):
            sizes = {k or "<root>": len(v) for k, v in groups.items()}
            raise UnreachableTargetError(
                f"{target!r}: group {container or '<root>'!r} has only {len(members)} blocks (group sizes: {sizes})"
            )
        removed += _removal_order(members, scores)[: len(members) - target.n]
    return removed


def _greedy(order: list[Unit], cost: dict[str, int], total: int, limit: float) -> list[Unit]:
    """The shortest prefix of `order` whose removal brings `total` down to `limit` or below."""
    removed: list[Unit] = []
    remaining = total
    for unit in order:
        if remaining <= limit:
            break
        removed.append(unit)
        remaining -= cost[unit.path]
    return removed


def _too_far(target: Any, what: str, total: int, limit: float, floor: int) -> UnreachableTargetError:
    return UnreachableTargetError(
        f"{target!r}: needs at most {limit:,.0f} {what} of {total:,}, but removing all blocks but one "
        f"still leaves {floor:,} ({floor / total:.4f} of the dense model)"
    )


def select_units(
    model: nn.Module,
    graph: Graph,
    scores: dict[str, float],
    target: AnyTarget,
    example_inputs: Any = None,
) -> list[str]:
    """Paths of the blocks to remove so that `target` is met, in model order.

    Blocks (removable leaf units) are removed lowest score first until the target holds. Params
    are accounted exactly from the units; FLOPs are accounted from the units and then verified by
    profiling the reduced model on `example_inputs` (more blocks are removed while the measured
    FLOPs still exceed the target). A width target (ChannelRatio, ChannelFlops) selects no blocks;
    latency targets are planned by `prunekit.latency_plan` and select none here either.
    """
    if isinstance(target, WidthTarget + LatencyTarget):
        return []
    blocks = graph.leaves()
    if not blocks:
        raise NoUnitsError(f"{type(model).__name__} has no removable blocks (found {len(graph.units)} units)")
    missing = [u.path for u in blocks if u.path not in scores]
    if missing:
        raise ConfigError(f"the scores have no value for blocks {missing}")
    order = _removal_order(blocks, scores)

    if isinstance(target, KeepBlocks):
        removed = _keep_blocks(blocks, scores, target)
    elif isinstance(target, ParamsRatio):
        cost = {u.path: u.params for u in blocks}
        limit = target.keep * graph.total_params
        removed = _greedy(order, cost, graph.total_params, limit)
        if len(removed) == len(blocks) or graph.total_params - sum(cost[u.path] for u in removed) > limit:
            floor = graph.total_params - sum(cost.values()) + cost[order[-1].path]
            raise _too_far(target, "parameters", graph.total_params, limit, floor)
    elif isinstance(target, FlopsRatio):
        removed = _select_flops(model, graph, blocks, order, target, example_inputs)
    else:
        raise ConfigError(f"unknown pruning target {target!r}")
    chosen = {u.path for u in removed}
    return [u.path for u in blocks if u.path in chosen]


def _select_flops(
    model: nn.Module, graph: Graph, blocks: list[Unit], order: list[Unit], target: FlopsRatio, example_inputs: Any
) -> list[Unit]:
    total = profile.flops(model, example_inputs) if example_inputs is not None else graph.total_flops
    if total <= 0:
        raise ConfigError("FLOPs of the dense model are unknown; pass example_inputs to select_units")
    cost = {u.path: u.flops for u in blocks}
    limit = target.keep * total
    removed = _greedy(order, cost, total, limit)

    def measured(units: list[Unit]) -> int:
        if example_inputs is None:
            return total - sum(cost[u.path] for u in units)
        zeroed = {u.path: u.outputs for u in units if u.kind == "branch"}
        return profile.flops(remove_units(model, [u.path for u in units], zeroed), example_inputs)

    after = measured(removed)
    while after > limit and len(removed) < len(blocks):
        removed.append(order[len(removed)])
        after = measured(removed)
    if len(removed) == len(blocks) or after > limit:
        floor = measured(order[:-1])
        raise _too_far(target, "FLOPs", total, limit, floor)
    return removed
