"""The latency planner: which blocks to remove and how wide each channel group stays so that the
model meets a MEASURED latency target (LatencyRatio / Latency), at one input size or several.

1. Lookup table. Every conv / linear layer is timed alone, at the input size it sees at the target
   shape, at the (in, out) widths the search asks for (memoised, and cached on disk per hardware,
   threads, runner, clock, shapes and model signature: prunekit.latency.LatencyTable). The model's
   estimated latency is the measured dense latency with each layer's table time swapped for its
   time at the current widths (layers of removed blocks cost nothing). One table per input size.
2. Greedy path. From the dense model, repeatedly take the cheapest move in importance lost per
   millisecond saved: remove a block, or cut one channel group by one step (1/8 of its width,
   `round_to` channels, whole PixelShuffle blocks; the channel importance picks which channels go).
   What a move loses is priced by `move_cost`: "importance" (default) sums the channel importance
   of the channels a step removes and puts block scores on that scale; "sensitivity" measures the
   output damage of each move on the calibration data, on the model as cut so far, again every
   REPRICE_EVERY of the ratio (PathDamage; one unit for every move, so cuts in different layers
   compare). The path runs until no move is left; it does not depend on the target.
3. Correction. A prefix of the path is chosen by its estimate, built, and timed against the dense
   model (interleaved runs with the runner, at every size). The next prefix comes from
   interpolating measured vs estimated ratios between the nearest measured prefixes (secant; the
   next prefix over as a fallback; once, a finer path where one move jumps across the window)
   until the measured latency lies in [goal * (1 - tolerance), goal].
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn

from prunekit import importance as imp, profile
from prunekit.budget import Latency, LatencyRatio
from prunekit.channels import (
    ChannelStep,
    _block_size,
    _output_shapes,
    _prune,
    _ROOT_TYPES,
    _ignored,
    dependency_graph,
    output_layers,
)
from prunekit.errors import ConfigError, NoUnitsError, UnreachableTargetError
from prunekit.graph import Graph, Layout, input_shapes
from prunekit import latency as lat
from prunekit.plan_record import LatencyRecord, Plan, SizeCheck, Stats
from prunekit.profile import call_model, eval_mode
from prunekit.removal import remove_units, renumbered_path
from prunekit.replace import Replacement, apply_replacements
from prunekit.sensitivity import StateDamage
from prunekit.surgery import apply, example_inputs_from_shapes

DEFAULT_TOLERANCE = 0.08  # accept a measured ratio in [goal * (1 - tol), goal]; aim at the middle
MAX_ITERATIONS = 7
STEPS_PER_GROUP = 8
UNIFORM_STEPS = 16  # finer steps in lockstep: groups stay within 1/16 of their width of one fraction
REPRICE_EVERY = 0.1  # move_cost="sensitivity": measure the damage again each time the ratio drops this much
BINDING = 0.01  # sizes whose estimated latency ratio is within this of the highest one bind the next move
MOVE_COSTS = ("sensitivity", "importance")


@dataclass
class Layer:
    """A conv / linear layer of the model the search starts from: its widths, the groups that set
    them, the removable block it lives in, and what it looks like to the lookup table."""

    path: str
    cin: int
    cout: int
    in_group: int | None
    out_group: int | None
    block: str | None
    module: nn.Module
    input_shape: list[int]


@dataclass
class Group:
    """A channel group: `layers` are the (dense) paths whose outputs it prunes, `levels` the
    widths it may be cut to (widest first), `order` its channels least important first."""

    id: int
    layers: list[str]
    width: int
    unit: int
    levels: list[int]
    order: list[int]
    importance: list[float]  # per channel, aligned with `order`
    step_loss: list[float] | None = None  # measured damage of each step down `levels` (move_cost="sensitivity")

    def channels(self, level: int) -> torch.Tensor:
        """The channels a cut to width `level` removes (least important units first)."""
        cut = (self.width - level) // self.unit
        return torch.tensor([u * self.unit + k for u in self.order[:cut] for k in range(self.unit)], dtype=torch.long)


@dataclass
class State:
    removed: frozenset[str] = frozenset()
    kept: dict[int, int] = field(default_factory=dict)


class CostModel(Protocol):
    """What the planner measures. `layer_ms` times one layer at given widths; `compare` times the
    dense model and a candidate (interleaved) and returns (dense_ms, candidate_ms, details)."""

    def layer_ms(self, layer: Layer, cin: int, cout: int) -> float: ...

    def compare(self, dense: nn.Module, candidate: nn.Module) -> tuple[float, float, dict[str, Any]]: ...


def _rebuild(module: nn.Module, cin: int, cout: int) -> nn.Module | None:
    """A fresh layer like `module` with `cin` inputs and `cout` outputs (None for other types)."""
    t = type(module)
    if t is nn.Linear:
        return nn.Linear(cin, cout, bias=module.bias is not None)
    if t in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
        groups = module.groups
        if groups > 1:
            if not (groups == module.in_channels == module.out_channels and cin == cout):
                return None
            groups = cin  # depthwise stays depthwise
        kwargs = dict(stride=module.stride, padding=module.padding, dilation=module.dilation, groups=groups,
                      bias=module.bias is not None, padding_mode=module.padding_mode)
        if module.transposed:
            kwargs["output_padding"] = module.output_padding
        return t(cin, cout, module.kernel_size, **kwargs)
    return None


class MeasuredCost:
    """The real cost model: layers timed alone (memoised in a LatencyTable), whole models timed
    against the dense one with `prunekit.latency.compare`."""

    def __init__(self, table: lat.LatencyTable, runner: tuple[str, lat.Runner], inputs: Any, threads: int,
                 clock: str, device: torch.device, rounds: int = 7, layer_repeats: int = 5) -> None:
        self.table, self.runner, self.inputs = table, runner, inputs
        self.threads, self.clock, self.device = threads, clock, device
        self.rounds, self.layer_repeats = rounds, layer_repeats
        self.fmt = getattr(runner[1], "memory_format", None)
        self.timer = lat.Timer(clock, device)

    def layer_ms(self, layer: Layer, cin: int, cout: int) -> float:
        m = layer.module
        dims = "x".join(map(str, layer.input_shape[2:] if not isinstance(m, nn.Linear) else layer.input_shape[:-1]))
        key = f"{type(m).__name__}{getattr(m, 'kernel_size', '')}{getattr(m, 'stride', '')}" \
              f"{getattr(m, 'padding', '')}{getattr(m, 'dilation', '')}g{getattr(m, 'groups', 1)}" \
              f"{getattr(m, 'output_padding', '')}b{m.bias is not None}|{dims}|{cin}|{cout}"
        if key not in self.table.layers:
            self.table.layers[key] = self._time_layer(layer, cin, cout)
        return self.table.layers[key]

    def _time_layer(self, layer: Layer, cin: int, cout: int) -> float:
        probe = _rebuild(layer.module, cin, cout)
        shape = list(layer.input_shape)
        if probe is None:  # unknown layer type: time it as it is and scale by its weight count
            probe, scale = layer.module, (cin * cout) / (layer.cin * layer.cout)
        else:
            scale = 1.0
            shape[-1 if isinstance(probe, nn.Linear) else 1] = cin
        probe = copy.deepcopy(probe).to(self.device).eval()
        x = torch.randn(shape, device=self.device)
        if self.fmt is not None and x.dim() == 4:
            probe, x = probe.to(memory_format=self.fmt), x.contiguous(memory_format=self.fmt)

        def step(inputs: Any) -> Any:
            with torch.inference_mode():
                return probe(inputs)

        with lat.num_threads(self.threads):
            step(x)
            times = [self.timer(step, x) for _ in range(self.layer_repeats)]
        return sorted(times)[len(times) // 2] * scale

    def compare(self, dense: nn.Module, candidate: nn.Module) -> tuple[float, float, dict[str, Any]]:
        stats = lat.compare({"dense": dense, "candidate": candidate}, self.inputs, self.runner[1],
                            rounds=self.rounds, warmup=1, threads=self.threads, clock=self.clock)
        d, c = stats["dense"], stats["candidate"]
        return d["median_ms"], c["median_ms"], {"spread": max(d["spread"], c["spread"]),
                                                "ratio": lat.paired_ratio(stats, "candidate", "dense")}


# --------------------------------------------------------------------------- search space
def _record_inputs(model: nn.Module, inputs: Any, paths: list[str]) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    handles = []
    for path in paths:
        def hook(mod: nn.Module, args: tuple, path: str = path) -> None:
            if path not in shapes and args and isinstance(args[0], torch.Tensor):
                shapes[path] = list(args[0].shape)
        handles.append(model.get_submodule(path).register_forward_pre_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            call_model(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _levels(width: int, unit: int, round_to: int | None, min_keep: float = 0.0,
            steps: int = STEPS_PER_GROUP) -> list[int]:
    """Widths a group may be cut to, widest first, in `steps` equal steps unless `round_to` is given
    (always whole `unit`s, at least one unit, at least `min_keep` of the width)."""
    if round_to:
        lows = [k for k in range(round_to, width, round_to) if k % unit == 0]
        levels = [width] + sorted(lows, reverse=True)
    else:
        step = max(unit, math.ceil(width / steps / unit) * unit)
        levels = [w for w in range(width, unit - 1, -step)]
    return [w for w in levels if w >= min_keep * width - 1e-9]


def search_space(
    base: nn.Module, example_inputs: Any, latency_inputs: Any, layout: Layout | None, blocks: list[str],
    scorer: Any, round_to: int | None, excluded: set[str], min_keep: float = 0.0, steps: int = STEPS_PER_GROUP,
) -> tuple[list[Layer], list[Group]]:
    """The layers the table prices and the channel groups the search may cut (importance from
    `scorer` on `base`). Groups whose layers are in `excluded` are left whole."""
    dg = dependency_graph(base, example_inputs)
    names = {m: p for p, m in base.named_modules()}
    patterns = list(layout.channel_ignore) + list(layout.fixed_channels) if layout is not None else []
    ignored = _ignored(base, patterns) + output_layers(dg)
    if hasattr(scorer, "bind"):
        scorer.bind(base)
    groups: list[Group] = []
    out_of: dict[str, int] = {}
    in_of: dict[str, int] = {}
    with torch.no_grad():
        for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=_ROOT_TYPES):
            outs = [names[d.target.module] for d, _ in group
                    if d.target.module in names and dg.is_out_channel_pruning_fn(d.handler)]
            ins = [names[d.target.module] for d, _ in group
                   if d.target.module in names and dg.is_in_channel_pruning_fn(d.handler)]
            if not outs or set(outs) & set(out_of) or set(outs) & excluded:
                continue
            root = group[0].dep.target.module
            width, unit = len(group[0].idxs), _block_size(dg, root)
            levels = _levels(width, unit, round_to, min_keep, steps)
            scores = scorer(group)
            if len(levels) < 2 or scores is None:
                continue
            per_unit = scores.double().reshape(width // unit, unit).sum(1)
            order = torch.argsort(per_unit, stable=True).tolist()
            gid = len(groups)
            groups.append(Group(gid, outs, width, unit, levels, order, [float(per_unit[i]) for i in order]))
            for p in outs:
                out_of[p] = gid
            for p in ins:
                in_of.setdefault(p, gid)
    paths = [p for p, m in base.named_modules() if isinstance(m, _ROOT_TYPES) and m in dg.module2node]
    shapes = _record_inputs(base, latency_inputs, paths)
    layers = []
    for path in paths:
        if path not in shapes:
            continue
        m = base.get_submodule(path)
        w = m.weight
        cout, cin = (w.shape[1] * m.groups, w.shape[0]) if getattr(m, "transposed", False) else (
            w.shape[0], w.shape[1] * getattr(m, "groups", 1))
        block = next((b for b in blocks if path.startswith(b + ".")), None)
        layers.append(Layer(path, cin, cout, in_of.get(path), out_of.get(path), block, m, shapes[path]))
    return layers, groups


# --------------------------------------------------------------------------- estimate and greedy path
class Estimator:
    """Estimated latency of a state: dense measured ms minus the dense layers' table time plus the
    alive layers' table time at the state's widths."""

    def __init__(self, layers: list[Layer], groups: list[Group], costs: CostModel, dense_ms: float) -> None:
        self.layers, self.groups, self.costs = layers, {g.id: g for g in groups}, costs
        self.start_ms = dense_ms
        self.rest = dense_ms - sum(self.layer(layer, State()) for layer in layers)

    def _width(self, full: int, gid: int | None, state: State) -> int:
        if gid is None or gid not in state.kept:
            return full
        g = self.groups[gid]
        return max(1, round(full * state.kept[gid] / g.width))

    def layer(self, layer: Layer, state: State) -> float:
        if layer.block is not None and layer.block in state.removed:
            return 0.0
        return self.costs.layer_ms(layer, self._width(layer.cin, layer.in_group, state),
                                   self._width(layer.cout, layer.out_group, state))

    def total(self, state: State) -> float:
        return self.rest + sum(self.layer(layer, state) for layer in self.layers)


class PathDamage:
    """move_cost="sensitivity": prices every move from a state by measured output damage on the
    model as cut so far (prunekit.sensitivity simulates the state on `base`). Calling it on a state
    sets each live group's `step_loss` for the steps below its current width and returns each
    alive block's removal cost. Measured along the path, not once on the dense model, because cuts
    that each look harmless on the dense model add up (and removing a block costs more when its
    neighbours are gone)."""

    def __init__(self, base: nn.Module, groups: list[Group], blocks: list[str], zeroed: dict[str, int],
                 data: Any) -> None:
        self.damage = StateDamage(base, data)
        self.groups, self.blocks, self.zeroed = groups, blocks, zeroed
        self.owner = {g.id: b for b in blocks for g in groups if all(p.startswith(b + ".") for p in g.layers)}

    def _cost(self, removed: frozenset[str], kept: dict[int, int]) -> float:
        by_id = {g.id: g for g in self.groups}
        return self.damage({b: self.zeroed.get(b) for b in removed},
                           [(by_id[gid].layers, by_id[gid].channels(level)) for gid, level in kept.items()])

    def __call__(self, state: State) -> dict[str, float]:
        here = self._cost(state.removed, state.kept)
        for g in self.groups:
            if self.owner.get(g.id) in state.removed:
                continue
            i = g.levels.index(state.kept.get(g.id, g.width))
            curve = [here] + [self._cost(state.removed, {**state.kept, g.id: level}) for level in g.levels[i + 1:]]
            curve = [max(curve[: j + 1]) for j in range(len(curve))]  # deeper cuts never count as cheaper
            g.step_loss = [0.0] * i + [b - a for a, b in zip(curve, curve[1:])]
        alive = [b for b in self.blocks if b not in state.removed]
        if len(alive) < 2:
            return {}
        return {b: max(self._cost(state.removed | {b}, state.kept) - here, 0.0) for b in alive}


def _block_importance(blocks: list[str], scores: dict[str, float], groups: list[Group]) -> dict[str, float]:
    """Block scores on the channel-importance scale: their mean is matched to the mean importance
    of the channels the blocks hold (groups whose layers all lie in one block), or else to the mean
    importance of a whole group; the strategy's order among blocks is kept."""
    low = min(scores.values(), default=0.0)
    shifted = {b: scores[b] - min(low, 0.0) for b in blocks}
    inside: dict[str, float] = {}
    for g in groups:
        owners = {next((b for b in blocks if p.startswith(b + ".")), None) for p in g.layers}
        if len(owners) == 1 and None not in owners:
            b = owners.pop()
            inside[b] = inside.get(b, 0.0) + sum(g.importance)
    if inside:
        ref = sum(inside.values()) / len(inside)
        own = sum(shifted[b] for b in inside) / len(inside)
    else:
        ref = sum(sum(g.importance) for g in groups) / len(groups) if groups else 1.0
        own = sum(shifted.values()) / len(shifted) if shifted else 1.0
    scale = ref / own if own > 0 else 1.0
    return {b: shifted[b] * scale for b in blocks}


@dataclass
class PathPoint:
    state: State
    estimate_ms: float  # at the first size
    move: str
    estimates: list[float] = field(default_factory=list)  # ms at every size the target is planned at


def greedy_path(est: Estimator | list[Estimator], groups: list[Group], blocks: list[str],
                block_imp: dict[str, float], start: PathPoint | None = None, max_step: float | None = None,
                reprice: Callable[[State], dict[str, float]] | None = None, reprice_every: float = 0.1,
                reprice_until: float = 0.0, uniform: bool = False) -> list[PathPoint]:
    """Moves in order of importance lost per estimated millisecond saved, from the dense state until
    no move is left (at least one block stays). Moves the estimate says save nothing (free layers,
    or timing noise in the table) come after all that save time, least loss first, so the path
    always reaches the smallest model and the correction can measure how fast it really is.

    With one estimator per input size, a move's saving is the fraction of the start time it saves
    at the size whose estimated ratio is highest (the smallest over sizes within BINDING of it):
    what a layer saves depends on the frame size, and saving where the ratio lags keeps the ratios
    of all sizes together, so a prefix meets the goal at every size without overshooting at one.

    `start` continues from a point instead of the dense state; `max_step` skips moves that save more
    than that fraction of the start time (the correction's finer path across a gap). `reprice(state)`
    (PathDamage) prices the moves again at the start and each time the estimated ratio has dropped
    by `reprice_every`, while it is above `reprice_until`; it returns the block costs.

    `uniform` keeps every block and cuts the channel groups in lockstep: only the groups that keep
    the largest fraction of their width may take their next step, so all stay within one step of a
    common fraction (the cheapest of them, by the same price, goes first)."""
    ests = est if isinstance(est, list) else [est]
    if start is None:
        state = State()
        current = [e.total(state) for e in ests]
        start = PathPoint(state, current[0], "dense", current)
    state, current = start.state, list(start.estimates)
    path = [start]

    def ratio_now() -> float:
        return max(c / max(e.start_ms, 1e-12) for e, c in zip(ests, current))

    if reprice is not None:
        block_imp = {**block_imp, **reprice(state)}
        priced_at = ratio_now()
    inside = {b: [g.id for g in groups if all(p.startswith(b + ".") for p in g.layers)] for b in blocks}
    owner = {gid: b for b, ids in inside.items() for gid in ids}
    while True:
        best: tuple[tuple[int, float], State, list[float], str] | None = None
        alive = [b for b in blocks if b not in state.removed]
        candidates: list[tuple[float, State, str]] = []
        if len(alive) > 1 and not uniform:
            for b in alive:
                kept = {k: v for k, v in state.kept.items() if k not in inside[b]}
                candidates.append((block_imp[b], State(state.removed | {b}, kept), f"remove {b}"))
        movable = [g for g in groups if owner.get(g.id) not in state.removed  # not in a removed block
                   and g.levels.index(state.kept.get(g.id, g.width)) + 1 < len(g.levels)]
        if uniform and movable:
            widest = max(state.kept.get(g.id, g.width) / g.width for g in movable)
            movable = [g for g in movable if state.kept.get(g.id, g.width) / g.width >= widest - 1e-9]
        for g in movable:
            now = state.kept.get(g.id, g.width)
            i = g.levels.index(now)
            nxt = g.levels[i + 1]
            if g.step_loss is not None:
                lost = g.step_loss[i]
            else:
                gone_units = (g.width - nxt) // g.unit
                done_units = (g.width - now) // g.unit
                lost = sum(g.importance[done_units:gone_units])
            candidates.append((lost, State(state.removed, {**state.kept, g.id: nxt}), f"cut {g.layers[0]} to {nxt}"))
        ratios = [c / max(e.start_ms, 1e-12) for e, c in zip(ests, current)]
        binding = [i for i, r in enumerate(ratios) if r >= max(ratios) - BINDING]
        for lost, nxt_state, move in candidates:
            after = [e.total(nxt_state) for e in ests]
            saved = min((current[i] - after[i]) / max(ests[i].start_ms, 1e-12) for i in binding)
            if max_step is not None and saved > max_step:
                continue
            score = (0, max(lost, 0.0) / saved) if saved > 0 else (1, max(lost, 0.0))
            if best is None or score < best[0]:
                best = (score, nxt_state, after, move)
        if best is None:
            return path
        _, state, current, move = best
        path.append(PathPoint(state, current[0], move, current))
        if reprice is not None and priced_at - ratio_now() >= reprice_every and ratio_now() > reprice_until:
            block_imp = {**block_imp, **reprice(state)}
            priced_at = ratio_now()


# --------------------------------------------------------------------------- building a state
class BrokenGroup(Exception):
    def __init__(self, layers: list[str]) -> None:
        super().__init__(layers)
        self.layers = layers


def realize(base: nn.Module, dense: nn.Module, state: State, groups: list[Group], replaced: list[Replacement],
            example_inputs: Any, scorer: Any, verified: set[int],
            zeroed: dict[str, int] | None = None) -> tuple[list[str], list[ChannelStep], nn.Module]:
    """(removed paths, channel steps, built model) for a state; channels are chosen by `scorer` on
    the block-reduced model (branch units in `zeroed` are replaced by zeros, not bypassed). A group
    not yet `verified` whose cut breaks the model raises BrokenGroup."""
    removed = [p for p, _ in dense.named_modules() if p in state.removed]
    model = remove_units(dense, removed, zeroed)
    if replaced:
        apply_replacements(model, replaced, removed, dense)
    cuts = {gid: kept for gid, kept in state.kept.items()}
    if not cuts:
        return removed, [], model
    expected = _output_shapes(model, example_inputs)
    dg = dependency_graph(model, example_inputs)
    modules = dict(model.named_modules())
    if hasattr(scorer, "bind"):
        scorer.bind(model)
    steps: list[ChannelStep] = []
    by_id = {g.id: g for g in groups}
    with torch.no_grad():
        for gid, kept in sorted(cuts.items()):
            g = by_id[gid]
            here = [renumbered_path(p, removed, base) for p in g.layers]
            here = [p for p in here if p is not None and p in modules and modules[p] in dg.module2node]
            if not here:
                continue
            module = modules[here[0]]
            pruner = dg.get_pruner_of_module(module)
            n = pruner.get_out_channels(module)
            group = dg.get_pruning_group(module, pruner.prune_out_channels, list(range(n)))
            unit = _block_size(dg, module)
            scores = scorer(group)
            cut_units = (n - round(n * kept / g.width)) // unit
            if cut_units <= 0:
                continue
            if scores is None:
                chosen = list(range(cut_units))
            else:
                per_unit = scores.double().reshape(n // unit, unit).sum(1)
                chosen = torch.argsort(per_unit, stable=True)[:cut_units].tolist()
            idxs = sorted(int(b) * unit + j for b in chosen for j in range(unit))
            _prune(dg, module, idxs)
            if gid not in verified:
                if _output_shapes(model, example_inputs, quiet=True) != expected:
                    raise BrokenGroup(g.layers)
                verified.add(gid)
            steps.append(ChannelStep(layer=here[0], idxs=idxs))
    return removed, steps, model


# --------------------------------------------------------------------------- the planner
def _inputs_at(target: LatencyRatio | Latency, shape: dict[str, list[int]] | None, example_inputs: Any) -> Any:
    if shape is None:
        return example_inputs
    known = input_shapes(example_inputs)
    unknown = sorted(set(shape) - set(known))
    if unknown:
        raise ConfigError(f"{target!r}: a shape names inputs {unknown}, but the example inputs are {sorted(known)}")
    return example_inputs_from_shapes({**known, **shape})


def _layers_at(base: nn.Module, layers: list[Layer], inputs: Any) -> list[Layer]:
    """The same layers with the input shapes they see when the model runs on `inputs`."""
    shapes = _record_inputs(base, inputs, [layer.path for layer in layers])
    return [dataclasses.replace(layer, input_shape=shapes[layer.path]) for layer in layers if layer.path in shapes]


def plan_latency(
    model: nn.Module,
    graph: Graph,
    target: LatencyRatio | Latency,
    scorer: Any,
    data: list[Any],
    layout: Layout | None,
    *,
    runner: str | Callable | None = None,
    channel_importance: Any = "l2",
    round_to: int | None = None,
    replaced: list[Replacement] | None = None,
    cache: Any = None,
    strategy_kwargs: dict[str, Any] | None = None,
    costs: CostModel | list[CostModel] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_iterations: int = MAX_ITERATIONS,
    threads: int | None = None,
    clock: str = "auto",
    move_cost: str = "importance",
    min_keep: float = 0.0,
    uniform: bool = False,
) -> Plan:
    """A Plan whose model meets `target` as measured (see the module docstring), at its size and at
    every size in `target.also_at`. `costs` replaces the measured cost model, one per size (tests
    inject deterministic ones); `move_cost` ("importance" or "sensitivity") prices what each move loses;
    no channel group is cut below `min_keep` of its width; `uniform` keeps the blocks and cuts all
    groups by one common fraction (greedy_path), in steps of 1/UNIFORM_STEPS of each width."""
    if move_cost not in MOVE_COSTS:
        raise ConfigError(f"move_cost must be one of {list(MOVE_COSTS)}, got {move_cost!r}")
    if not 0.0 <= min_keep <= 1.0:
        raise ConfigError(f"min_keep must be in [0, 1], got {min_keep}")
    started = time.perf_counter()
    replaced = list(replaced or [])
    example_inputs = graph.example_inputs
    sizes = [_inputs_at(target, target.shape, example_inputs)]
    sizes += [_inputs_at(target, shape, example_inputs) for shape in getattr(target, "also_at", None) or []]
    layout = layout or graph.layout
    runner_name, runner_fn = lat.resolve_runner(runner, layout.runner if layout is not None else None)
    device = lat.device_of(model)
    n_threads = threads or torch.get_num_threads()
    chosen_clock = lat.pick_clock(clock, device, n_threads)

    blocks = [u.path for u in graph.leaves()]
    zeroed = {u.path: u.outputs for u in graph.leaves() if u.kind == "branch"}
    scores: dict[str, float] = {}
    if blocks:
        needs = getattr(scorer, "needs_data", False)
        scores = {k: float(v) for k, v in scorer.score(model, graph, graph.leaves(), data if needs else None).items()}

    base = copy.deepcopy(model)
    if replaced:
        apply_replacements(base, replaced, [], model)
    chan_scorer = imp.resolve(channel_importance, base, data)

    table_dir = lat.cache_dir(cache)
    if costs is None:
        costs = []
        for inputs in sizes:
            key = lat.TableKey(hardware=lat.device_name(device), device=str(device), threads=n_threads,
                               runner=runner_name, clock=chosen_clock, shapes=input_shapes(inputs),
                               model=lat.model_signature(base))
            table = lat.LatencyTable.load(key, table_dir)
            costs.append(MeasuredCost(table, (runner_name, runner_fn), inputs, n_threads, chosen_clock, device))
    costs = costs if isinstance(costs, list) else [costs]
    if len(costs) != len(sizes):
        raise ConfigError(f"plan_latency: {len(sizes)} input sizes but {len(costs)} cost models")

    excluded: set[str] = set()
    history: list[dict[str, float]] = []
    while True:  # restarts without a group whose cut breaks the model
        layers, groups = search_space(base, example_inputs, sizes[0], layout, blocks, chan_scorer, round_to, excluded,
                                      min_keep, UNIFORM_STEPS if uniform else STEPS_PER_GROUP)
        if not blocks and not groups:
            raise NoUnitsError(f"{type(model).__name__} has neither removable blocks nor prunable channel groups")
        dense_ms, ests = [], []
        for i, (inputs, cost) in enumerate(zip(sizes, costs)):
            # the search starts from the replaced model, if any: its own time anchors the estimates
            d_ms, start_ms, _ = cost.compare(model, base if replaced else model)
            dense_ms.append(d_ms)
            ests.append(Estimator(layers if i == 0 else _layers_at(base, layers, inputs), groups, cost,
                                  start_ms if replaced else d_ms))
        block_cost = _block_importance(blocks, scores, groups)
        along: dict[str, Any] = {"uniform": uniform}
        if move_cost == "sensitivity":
            goal = _goal_ms(target, dense_ms[0]) / dense_ms[0]
            along.update(reprice=PathDamage(base, groups, blocks, zeroed, data), reprice_every=REPRICE_EVERY,
                         reprice_until=goal * (1 - 2 * tolerance))
        path = greedy_path(ests, groups, blocks, block_cost, **along)
        refine = functools.partial(greedy_path, ests, groups, blocks, block_cost, **along)  # (start, max_step)
        try:
            result = _correct(path, dense_ms, costs, model, base, groups, replaced, example_inputs, chan_scorer,
                              target, tolerance, max_iterations, history, zeroed, refine)
            break
        except BrokenGroup as broken:
            excluded.update(broken.layers)
    for cost in costs:
        if isinstance(getattr(cost, "table", None), lat.LatencyTable):
            cost.table.save(table_dir)
    point, removed, steps, checks = result
    first = checks[0]

    stats0 = Stats(params_before=graph.total_params, params_after=graph.total_params,
                   flops_before=graph.total_flops or profile.flops(model, example_inputs), flops_after=0)
    widths = {g.layers[0]: [point.state.kept.get(g.id, g.width), g.width] for g in groups if g.id in point.state.kept}
    record = LatencyRecord(
        target_ms=_goal_ms(target, first["dense_ms"]), dense_ms=first["dense_ms"], planned_ms=point.estimate_ms,
        measured_ms=first["measured_ms"], device=str(device), hardware=lat.device_name(device), threads=n_threads,
        runner=runner_name, clock=chosen_clock, shapes=input_shapes(sizes[0]), ratio=first["ratio"],
        move_cost=move_cost, min_keep=min_keep, uniform=uniform, spread=first["spread"], iterations=len(history),
        planner_s=0.0, widths=widths, history=history,
        also_at=[SizeCheck(shapes=input_shapes(inputs), planned_ms=point.estimates[i + 1],
                           **{k: c[k] for k in ("dense_ms", "measured_ms", "ratio")})
                 for i, (inputs, c) in enumerate(zip(sizes[1:], checks[1:]))],
    )
    plan = Plan(
        removed=removed, zeroed={p: n for p, n in zeroed.items() if p in removed}, channels=steps, replaced=replaced,
        channel_importance=channel_importance if isinstance(channel_importance, str) else type(channel_importance).__name__,
        round_to=round_to, latency=record,
        strategy=getattr(scorer, "name", type(scorer).__name__) if blocks else None,
        strategy_kwargs=strategy_kwargs or {}, targets=[target], scores=scores, stats=stats0,
        input_shapes=input_shapes(example_inputs),
    )
    pruned = apply(model, plan, example_inputs)
    plan.stats.params_after = profile.count_params(pruned)
    plan.stats.flops_after = profile.flops(pruned, example_inputs)
    plan.latency.planner_s = time.perf_counter() - started
    return plan


def _goal_ms(target: LatencyRatio | Latency, dense_ms: float) -> float:
    return target.keep * dense_ms if isinstance(target, LatencyRatio) else target.ms


def _correct(path: list[PathPoint], dense_ms0: list[float], costs: list[CostModel], dense: nn.Module,
             base: nn.Module, groups: list[Group], replaced: list[Replacement], example_inputs: Any, scorer: Any,
             target: LatencyRatio | Latency, tolerance: float, max_iterations: int,
             history: list[dict[str, float]], zeroed: dict[str, int],
             refine: Callable[[PathPoint, float], list[PathPoint]] | None = None):
    """Walk the path: pick a prefix by its estimate, build and time it, update, until the measured
    latency is within [goal * (1 - tolerance), goal]. With several input sizes a prefix's ratio is
    its largest over the sizes (the goal must hold at each). Estimated ratios are relative to
    `dense_ms0`, the dense model's measured times (the path may start below them, from a replaced
    model). When one move jumps across the window (a block, or a wide group's step), `refine(point,
    max_step)` gives a finer path from the last prefix that is too slow, once.
    Returns (point, removed, steps, per-size measurements of the chosen prefix)."""
    Measured = tuple[float, list[dict[str, float]], list[str], list[ChannelStep], PathPoint]
    measured: dict[int, Measured] = {}
    earlier: list[Measured] = []  # measurements of a path tail the finer path replaced
    verified: set[int] = set()

    def estimated(points: list[PathPoint]) -> list[float]:
        return [max(e / d for e, d in zip(p.estimates, dense_ms0)) for p in points]

    def goal_ratio(dense_ms: float) -> float:
        return _goal_ms(target, dense_ms) / dense_ms

    def first_at_or_below(r: float) -> int:
        return next((i for i, x in enumerate(ratios) if x <= r), len(path) - 1)

    ratios = estimated(path)
    goal = goal_ratio(dense_ms0[0])
    aim = goal * (1 - tolerance / 2)
    index = first_at_or_below(aim)
    for _ in range(max_iterations):
        removed, steps, built = realize(base, dense, path[index].state, groups, replaced, example_inputs, scorer,
                                        verified, zeroed)
        checks = []
        for cost in costs:
            dense_ms, cand_ms, info = cost.compare(dense, built)
            checks.append({"dense_ms": dense_ms, "measured_ms": cand_ms, "spread": info.get("spread", 0.0),
                           "ratio": info.get("ratio", cand_ms / dense_ms)})
        ratio = max(c["ratio"] for c in checks)
        goal = goal_ratio(checks[0]["dense_ms"])
        aim = goal * (1 - tolerance / 2)
        measured[index] = (ratio, checks, removed, steps, path[index])
        history.append({"prefix": float(index), "estimated_ratio": ratios[index], "measured_ratio": ratio,
                        "dense_ms": checks[0]["dense_ms"], "measured_ms": checks[0]["measured_ms"],
                        "planned_ms": path[index].estimate_ms,
                        **{f"measured_ratio_size{k}": c["ratio"] for k, c in enumerate(checks) if k}})
        if goal * (1 - tolerance) <= ratio <= goal:
            break
        above = [i for i, m in measured.items() if m[0] > goal]
        below = [i for i, m in measured.items() if m[0] <= goal]
        lo = max(above, default=None)  # too slow: a longer prefix is needed
        hi = min(below, default=None)  # fast enough (but maybe too far)
        if lo is not None and lo == len(path) - 1:
            break
        if lo is not None and hi is not None and hi - lo <= 1:
            finer = refine(path[lo], (ratios[lo] - ratios[hi]) / 2) if refine is not None else []
            refine = None
            if len(finer) < 2:
                break
            earlier += [measured.pop(i) for i in [k for k in measured if k > lo]]
            path = path[:lo] + finer
            ratios = estimated(path)
            hi = None
        # interpolate measured vs estimated ratio between the nearest measurements (or from one)
        pts = sorted((ratios[i], measured[i][0]) for i in ([lo] if lo is not None else []) + ([hi] if hi is not None else []))
        if len(pts) == 2 and pts[1][0] != pts[0][0]:
            (e1, r1), (e2, r2) = pts
            slope = (r2 - r1) / (e2 - e1) if e2 != e1 else 1.0
            want = e1 + (aim - r1) / slope if slope > 0 else (e1 + e2) / 2
        else:
            e1, r1 = pts[0]
            k = (1 - r1) / (1 - e1) if e1 < 1 and r1 < 1 else 1.0
            want = 1 - (1 - aim) / max(k, 1e-3)
        nxt = first_at_or_below(want)
        low_bound = lo + 1 if lo is not None else 0
        high_bound = hi - 1 if hi is not None else len(path) - 1
        if high_bound < low_bound:
            break
        if not low_bound <= nxt <= high_bound or nxt in measured:  # the estimate cannot tell: step next to one
            if lo is None:
                nxt = high_bound
            elif hi is None:
                nxt = low_bound
            else:
                nxt = (low_bound + high_bound) // 2
        if nxt in measured:
            break
        index = nxt
    tried = list(measured.values()) + earlier
    feasible = [m for m in tried if m[0] <= goal_ratio(m[1][0]["dense_ms"])]
    if not feasible:
        r, checks, _, _, point = min(tried, key=lambda m: m[0])
        at = "" if len(checks) == 1 else f" at its slowest of {len(checks)} input sizes"
        raise UnreachableTargetError(
            f"{target!r}: the fastest model the planner built (last move {point.move!r}) measured {r:.3f} x the "
            f"dense latency{at} ({checks[0]['measured_ms']:.2f} of {checks[0]['dense_ms']:.2f} ms at the first)"
        )
    _, checks, removed, steps, point = max(feasible, key=lambda m: m[0])  # the slowest that meets the goal keeps most
    return point, removed, steps, checks
