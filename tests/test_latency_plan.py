"""Latency targets: config parsing, runners, the planner's choices with a fake cost model, and
measured planning on a tiny model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prunekit as pk
from prunekit import latency as lat
from prunekit import latency_plan as lp
from prunekit.budget import parse_target
from prunekit.errors import ConfigError, UnknownNameError, UnreachableTargetError
from prunekit.registry import RUNNERS
from prunekit.schedule.config import PruneStage
from zoo import TwoConvResidual


class Net(nn.Module):
    def __init__(self, c: int = 16, n: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*[TwoConvResidual(c) for _ in range(n)])
        self.wide = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.tail = nn.Conv2d(2 * c, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(F.relu(self.wide(h + self.body(h))))


X = torch.randn(1, 3, 8, 8)


def conv_cost(model: nn.Module) -> float:
    """A deterministic 'latency': weight count of every conv, in thousands (ms)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d)) / 1e3


class FakeCost:
    """Layers cost their weight count; a whole model measures `bias` + `savings` x the true savings."""

    def __init__(self, savings: float = 1.0) -> None:
        self.savings = savings
        self.compares = 0

    def layer_ms(self, layer: lp.Layer, cin: int, cout: int) -> float:
        k = layer.module.kernel_size
        return cin * cout * k[0] * k[1] / 1e3

    def compare(self, dense, candidate):
        self.compares += 1
        d = conv_cost(dense)
        return d, d - self.savings * (d - conv_cost(candidate)), {}


def _plan(model, target, costs, **kw):
    graph = pk.analyze(model, X)
    scorer = pk.get_strategy("magnitude")
    return lp.plan_latency(model, graph, target, scorer, [X], None, costs=costs, cache=None, **kw)


# ----------------------------------------------------------------------------- targets and configs
def test_latency_targets_parse_from_configs():
    assert parse_target({"kind": "latency_ratio", "keep": 0.5}) == pk.LatencyRatio(0.5)
    t = parse_target('{"kind": "latency", "ms": 12.5, "shape": {"arg0": [1, 3, 32, 32]}}')
    assert t == pk.Latency(12.5, shape={"arg0": [1, 3, 32, 32]})
    stage = PruneStage.model_validate({"kind": "prune", "target": {"kind": "latency_ratio", "keep": 0.4},
                                       "channel_importance": "taylor", "round_to": 8})
    assert stage.targets() == [pk.LatencyRatio(0.4)] and stage.round_to == 8
    with pytest.raises(ValueError, match="LatencyRatio: keep must be <= 1.0, got 1.5"):
        PruneStage.model_validate({"kind": "prune", "target": {"kind": "latency_ratio", "keep": 1.5}})
    with pytest.raises(ValueError, match="cannot be combined"):
        PruneStage.model_validate({"kind": "prune", "target": [{"kind": "latency_ratio", "keep": 0.5},
                                                               {"kind": "keep_blocks", "n": 2}]})


def test_latency_target_alone_and_in_range():
    model = Net()
    graph = pk.analyze(model, X)
    with pytest.raises(ConfigError, match="cannot be combined"):
        pk.plan(model, graph, target=[pk.LatencyRatio(0.5), pk.KeepBlocks(2)])
    with pytest.raises(UnreachableTargetError, match="keep must be > 0"):
        pk.LatencyRatio(0.0)
    with pytest.raises(UnreachableTargetError, match="ms must be > 0"):
        pk.Latency(-1.0)


# ----------------------------------------------------------------------------- runners and timing
def test_runner_registry_and_layout_default():
    assert RUNNERS.get("plain") is lat.plain_runner
    calls = []

    def counting(model):
        def step(inputs):
            calls.append(1)
            with torch.inference_mode():
                return model(inputs)
        return step

    RUNNERS.register("test.counting", counting, overwrite=True)
    name, fn = lat.resolve_runner(None, default="test.counting")
    assert name == "test.counting" and fn is counting
    stats = lat.measure(Net(), X, runner="test.counting", repeats=3, warmup=1, threads=1)
    assert len(calls) == 4 and stats["runner"] == "test.counting" and stats["threads"] == 1
    assert stats["median_ms"] > 0 and len(stats["times_ms"]) == 3
    with pytest.raises(UnknownNameError, match="runner 'nope'"):
        lat.resolve_runner("nope")


def test_compare_interleaves_and_pairs():
    stats = lat.compare({"dense": Net(), "small": Net(c=4)}, X, rounds=3, warmup=0, clock="wall")
    assert stats["small"]["repeats"] == 3 and stats["dense"]["clock"] == "wall"
    assert lat.paired_ratio(stats, "small", "dense") > 0
    with pytest.raises(ConfigError, match="clock"):
        lat.compare({"a": Net()}, X, clock="sundial")


# ----------------------------------------------------------------------------- planner with a fake cost model
def _layer(path, cin, cout, in_group=None, out_group=None, block=None):
    return lp.Layer(path, cin, cout, in_group, out_group, block, nn.Conv2d(cin, cout, 1), [1, cin, 4, 4])


def _group(gid, path, width=8, importance=1.0):
    return lp.Group(gid, [path], width, 1, [8, 4], list(range(width)), [importance] * width)


class LayerCost(FakeCost):
    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def layer_ms(self, layer, cin, cout):
        return self.weights[layer.path] * cin * cout


def test_greedy_takes_least_importance_per_ms_first():
    layers = [_layer("a", 4, 8, out_group=0), _layer("b", 4, 8, out_group=1)]
    costs = LayerCost({"a": 1.0, "b": 10.0})
    groups = [_group(0, "a"), _group(1, "b")]
    est = lp.Estimator(layers, groups, costs, dense_ms=sum(costs.layer_ms(x, 4, 8) for x in layers))
    path = lp.greedy_path(est, groups, [], {})
    assert [p.move for p in path] == ["dense", "cut b to 4", "cut a to 4"]  # same importance: b saves 10x the ms
    groups = [_group(0, "a"), _group(1, "b", importance=100.0)]  # now b's channels matter 100x: a goes first
    path = lp.greedy_path(lp.Estimator(layers, groups, costs, est.total(lp.State())), groups, [], {})
    assert path[1].move == "cut a to 4"
    assert path[-1].estimate_ms < path[1].estimate_ms < path[0].estimate_ms


def test_block_moves_weighed_against_width_moves():
    layers = [_layer("blk.conv", 4, 4, block="blk"), _layer("keep.conv", 4, 4, block="keep"),
              _layer("w", 4, 8, out_group=0)]
    costs = LayerCost({"blk.conv": 5.0, "keep.conv": 5.0, "w": 1.0})
    groups = [_group(0, "w")]
    est = lp.Estimator(layers, groups, costs, dense_ms=100.0)
    cheap = lp.greedy_path(est, groups, ["blk", "keep"], {"blk": 1.0, "keep": 50.0})
    assert cheap[1].move == "remove blk"  # 80 ms for importance 1
    assert all(p.move != "remove keep" for p in cheap)  # the last block always stays
    dear = lp.greedy_path(est, groups, ["blk", "keep"], {"blk": 1e6, "keep": 2e6})
    assert dear[1].move == "cut w to 4"


def test_plan_meets_target_by_measurement_with_exact_estimates():
    model = Net()
    costs = FakeCost()
    plan = _plan(model, pk.LatencyRatio(0.5), costs)
    rec = plan.latency
    small = pk.apply(model, plan)
    true_ratio = conv_cost(small) / conv_cost(model)
    assert true_ratio <= 0.5 and rec.measured_ms / rec.dense_ms == pytest.approx(true_ratio)
    assert rec.iterations == len(rec.history) >= 1 and rec.runner == "plain"
    assert plan.removed or plan.channels
    assert plan.stats.params_after < plan.stats.params_before
    assert small(X).shape == model(X).shape


def test_plan_corrects_when_measurement_disagrees():
    model = Net()
    costs = FakeCost(savings=0.6)  # real savings are only 60% of what the table predicts
    plan = _plan(model, pk.LatencyRatio(0.6), costs, tolerance=0.1)
    rec = plan.latency
    assert len(rec.history) >= 2, "the first build is too slow and must be corrected"
    first = rec.history[0]
    assert first["measured_ratio"] > 0.6 >= rec.measured_ms / rec.dense_ms
    assert rec.measured_ms / rec.dense_ms >= 0.6 * 0.9 - 1e-9 or rec.iterations == lp.MAX_ITERATIONS


def test_a_move_that_jumps_across_the_window_is_refined():
    # Net's path jumps from 0.52 to 0.40 of the latency in one move (the trunk's group): the correction
    # continues from the slower prefix with smaller moves and lands inside [goal * (1 - tol), goal]
    plan = _plan(Net(), pk.LatencyRatio(0.5), FakeCost(), tolerance=0.08)
    measured = [h["measured_ratio"] for h in plan.latency.history]
    assert any(r > 0.5 for r in measured) and any(r < 0.46 for r in measured)
    assert 0.46 <= plan.latency.ratio <= 0.5


def test_absolute_latency_and_unreachable():
    model = Net()
    d = conv_cost(model)
    plan = _plan(model, pk.Latency(0.7 * d), FakeCost())
    assert plan.latency.measured_ms <= 0.7 * d and plan.latency.target_ms == pytest.approx(0.7 * d)
    with pytest.raises(UnreachableTargetError, match="fastest model"):
        _plan(model, pk.LatencyRatio(0.001), FakeCost())


def test_min_keep_is_a_floor_for_every_group():
    assert lp._levels(64, 1, None, min_keep=0.25) == [64, 56, 48, 40, 32, 24, 16]
    assert lp._levels(64, 1, 16, min_keep=0.5) == [64, 48, 32]
    model = Net(c=16)
    free = pk.apply(model, _plan(model, pk.LatencyRatio(0.3), FakeCost()))
    floored_plan = _plan(model, pk.LatencyRatio(0.3), FakeCost(), min_keep=0.5)
    floored = pk.apply(model, floored_plan)

    def widths(m):
        return [x.out_channels for x in m.modules() if isinstance(x, nn.Conv2d)][:-1]

    assert min(widths(free)) < 8 <= min(widths(floored))  # half of the narrowest group (16)
    assert floored_plan.latency.min_keep == 0.5 and floored_plan.latency.kept <= 0.3
    with pytest.raises(ConfigError, match="min_keep"):
        _plan(model, pk.LatencyRatio(0.3), FakeCost(), min_keep=1.5)


def test_uniform_cuts_every_group_in_lockstep_and_keeps_the_blocks():
    layers = [_layer("blk.conv", 4, 4, block="blk"), _layer("keep.conv", 4, 4, block="keep"),
              _layer("a", 4, 8, out_group=0), _layer("b", 4, 16, out_group=1)]
    costs = LayerCost({"blk.conv": 5.0, "keep.conv": 5.0, "a": 1.0, "b": 10.0})
    groups = [lp.Group(0, ["a"], 8, 1, [8, 6, 4, 2], list(range(8)), [1.0] * 8),
              lp.Group(1, ["b"], 16, 1, [16, 12, 8, 4], list(range(16)), [1.0] * 16)]
    est = lp.Estimator(layers, groups, costs, dense_ms=200.0)
    free = lp.greedy_path(est, groups, ["blk", "keep"], {"blk": 1.0, "keep": 1.0})
    assert free[1].move == "remove blk" and free[2].move == "cut b to 12"  # b first, twice, without lockstep
    path = lp.greedy_path(est, groups, ["blk", "keep"], {"blk": 1.0, "keep": 1.0}, uniform=True)
    assert all(not p.move.startswith("remove") for p in path)
    assert [p.move for p in path[1:]] == ["cut b to 12", "cut a to 6", "cut b to 8", "cut a to 4",
                                          "cut b to 4", "cut a to 2"]
    for p in path:
        fractions = [p.state.kept.get(g.id, g.width) / g.width for g in groups]
        assert max(fractions) - min(fractions) <= 0.25 + 1e-9  # within one step of each other
    assert lp._levels(64, 1, None, steps=lp.UNIFORM_STEPS)[:3] == [64, 60, 56]  # lockstep plans in finer steps
    model = Net(c=16)
    plan = _plan(model, pk.LatencyRatio(0.5), FakeCost(), uniform=True)
    assert not plan.removed and plan.latency.uniform and plan.latency.kept <= 0.5
    priced = _plan(model, pk.LatencyRatio(0.5), FakeCost(), uniform=True, move_cost="sensitivity")
    assert not priced.removed and priced.latency.uniform  # the measured pricing keeps the lockstep
    with pytest.raises(ConfigError, match="latency planner"):
        pk.plan(model, pk.analyze(model, X), strategy="magnitude", target=pk.ChannelRatio(0.5), uniform=True)


def test_round_to_gives_multiples():
    model = Net(c=16)
    plan = _plan(model, pk.LatencyRatio(0.5), FakeCost(), round_to=4)
    small = pk.apply(model, plan)
    widths = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)][:-1]
    assert all(w % 4 == 0 for w in widths) and plan.round_to == 4


# ----------------------------------------------------------------------------- measured, end to end
def test_measured_plan_with_cache(tmp_path):
    torch.manual_seed(0)
    model = Net(c=32, n=3)
    x = torch.randn(1, 3, 32, 32)
    graph = pk.analyze(model, x)
    plan = pk.plan(model, graph, strategy="magnitude", target=pk.LatencyRatio(0.6), latency_cache=tmp_path)
    rec = plan.latency
    assert rec.dense_ms > 0 and rec.kept <= 0.6 and rec.ratio == rec.kept
    assert rec.shapes == {"arg0": [1, 3, 32, 32]} and rec.threads == torch.get_num_threads()
    cached = list(tmp_path.glob("*.json"))
    assert len(cached) == 1 and "|" in cached[0].read_text()
    reloaded = pk.Plan.model_validate_json(plan.model_dump_json())
    assert reloaded.latency == rec
    small = pk.apply(model, reloaded)
    assert small(x).shape == model(x).shape


def test_shape_override_names_known_inputs():
    model = Net()
    with pytest.raises(ConfigError, match="shape names inputs"):
        _plan(model, pk.LatencyRatio(0.5, shape={"img": [1, 3, 8, 8]}), FakeCost())
    plan = _plan(model, pk.LatencyRatio(0.5, shape={"arg0": [1, 3, 16, 16]}), FakeCost())
    assert plan.latency.shapes == {"arg0": [1, 3, 16, 16]} and plan.input_shapes == {"arg0": [1, 3, 8, 8]}


# ----------------------------------------------------------------------------- several input sizes
class WeightedCost(FakeCost):
    """Another frame size: layers under the paths in `weights` cost that factor x their weight count
    (what a layer saves changes with the frame size), the rest as in FakeCost."""

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self.weights = weights

    def cost(self, model: nn.Module) -> float:
        return sum(m.weight.numel() * self.factor(p) for p, m in model.named_modules()
                   if isinstance(m, nn.Conv2d)) / 1e3

    def factor(self, path: str) -> float:
        return next((w for p, w in self.weights.items() if path == p or path.startswith(p + ".")), 1.0)

    def layer_ms(self, layer, cin, cout):
        return super().layer_ms(layer, cin, cout) * self.factor(layer.path)

    def compare(self, dense, candidate):
        self.compares += 1
        return self.cost(dense), self.cost(candidate), {}


def test_greedy_prefers_moves_that_save_at_every_size():
    layers = [_layer("a", 4, 8, out_group=0), _layer("b", 4, 8, out_group=1)]
    one = LayerCost({"a": 1.0, "b": 2.0})  # at the first size b saves twice what a saves
    two = LayerCost({"a": 1.0, "b": 0.01})  # at the second, b saves almost nothing
    groups = [_group(0, "a"), _group(1, "b")]

    def est(costs):
        return lp.Estimator(layers, groups, costs, sum(costs.layer_ms(x, 4, 8) for x in layers))

    assert lp.greedy_path(est(one), groups, [], {})[1].move == "cut b to 4"
    path = lp.greedy_path([est(one), est(two)], groups, [], {})
    assert path[1].move == "cut a to 4" and len(path[1].estimates) == 2
    assert path[1].estimates[0] == path[1].estimate_ms < path[0].estimates[0]


def test_also_at_holds_the_ratio_at_every_size():
    model = Net()
    big = {"arg0": [1, 3, 16, 16]}
    weights = {"head": 0.02, "body": 0.02, "wide": 0.02}  # at 16x16 the tail costs most
    alone = pk.apply(model, _plan(model, pk.LatencyRatio(0.5), FakeCost()))
    assert WeightedCost(weights).cost(alone) / WeightedCost(weights).cost(model) > 0.5  # planned at 8x8 only
    target = pk.LatencyRatio(0.5, also_at=[big])
    assert parse_target(target.model_dump()) == target
    plan = _plan(model, target, [FakeCost(), WeightedCost(weights)])
    small = pk.apply(model, plan)
    rec = plan.latency
    assert [c.shapes for c in rec.also_at] == [big]
    second = WeightedCost(weights).cost(small) / WeightedCost(weights).cost(model)
    assert rec.also_at[0].ratio == pytest.approx(second) and second <= 0.5
    assert conv_cost(small) / conv_cost(model) <= 0.5 and rec.ratio <= 0.5
    assert all("measured_ratio_size1" in h for h in rec.history)
    with pytest.raises(ConfigError, match="names inputs"):
        _plan(model, pk.LatencyRatio(0.5, also_at=[{"img": [1, 3, 8, 8]}]), [FakeCost(), FakeCost()])


# ----------------------------------------------------------------------------- sensitivity pricing
def test_zeroed_channels_damage_equals_removing_them():
    from prunekit.channels import ChannelStep, apply_channels
    from prunekit.sensitivity import StateDamage

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    gone = torch.tensor([1, 4, 6])
    damage = StateDamage(model, [X])({}, [(["0"], gone)])
    pruned = apply_channels(copy.deepcopy(model), X, [ChannelStep(layer="0", idxs=gone.tolist())])
    with torch.no_grad():
        expected = float((model(X).double() - pruned(X).double()).pow(2).mean())
    assert damage == pytest.approx(expected, rel=1e-6) and damage > 0
    # removing a unit is simulated by its bypass: the same damage as the model without it
    from prunekit.removal import remove_units

    net = Net().eval()
    without = remove_units(net, ["body.1"])
    with torch.no_grad():
        expected_block = float((net(X).double() - without(X).double()).pow(2).mean())
    assert StateDamage(net, [X])({"body.1": None}, []) == pytest.approx(expected_block, rel=1e-6)
    # a task loss in the calibration is ignored: damage is the distance from the model's own outputs
    from prunekit.strategies import Calibration

    lucky = Calibration(inputs=[X], targets=[pruned(X).detach()], loss_fn=lambda o, t: (o - t).abs().mean())
    assert StateDamage(model, lucky)({}, [(["0"], gone)]) == pytest.approx(expected, rel=1e-6)


def test_sensitivity_prices_every_step_by_measured_damage():
    from prunekit import importance as imp

    torch.manual_seed(0)
    model = Net()
    graph = pk.analyze(model, X)
    plan = _plan(model, pk.LatencyRatio(0.5), FakeCost(), move_cost="sensitivity")
    assert plan.latency.move_cost == "sensitivity" and plan.latency.measured_ms <= 0.5 * conv_cost(model)
    blocks = [u.path for u in graph.leaves()]
    _, groups = lp.search_space(model, X, X, None, blocks, imp.resolve("l2", model, [X]), None, set())
    pricer = lp.PathDamage(model, groups, blocks, {}, [X])
    costs = pricer(lp.State())
    for g in groups:  # non-negative steps that add up to the damage of the deepest cut
        assert g.step_loss is not None and len(g.step_loss) == len(g.levels) - 1 and min(g.step_loss) >= 0
    assert set(costs) == set(blocks) and min(costs.values()) >= 0
    # along the path: with a block gone and a group cut, moves are priced on the model as cut so far
    from prunekit.sensitivity import StateDamage

    g = groups[0]
    state = lp.State(frozenset({blocks[0]}), {g.id: g.levels[1]})
    later = pricer(state)
    assert set(later) == set(blocks[1:]) and g.step_loss[0] == 0.0
    damage = StateDamage(model, [X])
    cut = [(g.layers, g.channels(g.levels[1]))]
    here = damage({blocks[0]: None}, cut)
    assert later[blocks[1]] == pytest.approx(max(damage({blocks[0]: None, blocks[1]: None}, cut) - here, 0.0))
    assert g.step_loss[1] == pytest.approx(max(damage({blocks[0]: None}, [(g.layers, g.channels(g.levels[2]))]) - here, 0.0))
    by_default = _plan(model, pk.LatencyRatio(0.5), FakeCost())
    assert by_default.latency.move_cost == "importance"
    with pytest.raises(ConfigError, match="move_cost"):
        _plan(model, pk.LatencyRatio(0.5), FakeCost(), move_cost="flops")


def test_greedy_path_reaches_the_smallest_model_when_the_table_says_a_cut_saves_nothing():
    from prunekit import importance as imp

    class FlatWide(FakeCost):  # `wide` times the same at every width: noise, or a layer that is free to cut
        def layer_ms(self, layer, cin, cout):
            return 5.0 if layer.path in ("wide", "tail") else super().layer_ms(layer, cin, cout)

    torch.manual_seed(0)
    model = Net()
    graph = pk.analyze(model, X)
    blocks = [u.path for u in graph.leaves()]
    layers, groups = lp.search_space(model, X, X, None, blocks, imp.resolve("l2", model, [X]), None, set())
    est = lp.Estimator(layers, groups, FlatWide(), conv_cost(model))
    path = lp.greedy_path(est, groups, blocks, {b: 1.0 for b in blocks})
    last = path[-1].state
    assert len(last.removed) == len(blocks) - 1
    alive = [g for g in groups if not any(p.startswith(b + ".") for b in last.removed for p in g.layers)]
    assert all(last.kept.get(g.id, g.width) == g.levels[-1] for g in alive)
    free = [i for i, p in enumerate(path) if p.move.startswith("cut wide")]
    assert free and min(free) > max(i for i, p in enumerate(path) if not p.move.startswith("cut wide") and i)
