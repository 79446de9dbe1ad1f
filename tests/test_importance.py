"""Channel importance choices and per-group fractions, reachable from pk.plan and configs."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

import prunekit as pk
from prunekit import importance
from prunekit.channels import dependency_graph, plan_channels
from prunekit.commands.prune import PruneConfig
from prunekit.errors import UnknownNameError, UnreachableTargetError
from prunekit.registry import CHANNEL_IMPORTANCE


def two_layer() -> nn.Sequential:
    """conv(3->4) -> ReLU -> conv(4->3); channel 1 feeds nothing (next layer's weights are 0 there),
    channel 2 is silent (its activation is always 0), channels 0 and 3 carry the output."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    with torch.no_grad():
        model[0].weight.fill_(0.5)
        model[0].bias.zero_()
        model[0].weight[2].fill_(-1.0)  # ReLU kills channel 2 for positive inputs
        model[2].weight.fill_(1.0)
        model[2].weight[:, 1].zero_()
    return model


X = torch.rand(2, 3, 4, 4)  # positive inputs


def test_data_importances_find_the_dead_channels():
    taylor = plan_channels(two_layer(), X, pk.ChannelRatio(0.5), importance="taylor", data=[X])
    assert [(s.layer, s.idxs) for s in taylor] == [("0", [1, 2])]  # both change nothing downstream
    active = plan_channels(two_layer(), X, pk.ChannelRatio(0.5), importance="activation", data=[X])
    assert active[0].layer == "0" and 2 in active[0].idxs  # silent; channel 1 is active but unused


def test_taylor_measures_output_change():
    model = two_layer()
    imp = importance.taylor(model, [X])
    dg = dependency_graph(model, X)
    group = dg.get_pruning_group(model[0], dg.get_pruner_of_module(model[0]).prune_out_channels, [0, 1, 2, 3])
    scores = imp.bind(model)(group)
    assert scores[1] == pytest.approx(0.0, abs=1e-10) and scores[2] == pytest.approx(0.0, abs=1e-10)
    assert scores[0] > 0 and scores[3] > 0
    assert all(p.grad is None for p in model.parameters())  # the probe gradients are not left behind


def test_registered_and_object_importances():
    class Reverse(tp.importance.Importance):
        def __call__(self, group):
            return -torch.arange(len(group[0].idxs), dtype=torch.float32)  # later channels matter less

    CHANNEL_IMPORTANCE.register("test.reverse", lambda model, data: Reverse(), overwrite=True)
    by_name = plan_channels(two_layer(), X, pk.ChannelRatio(0.5), importance="test.reverse")
    by_object = plan_channels(two_layer(), X, pk.ChannelRatio(0.5), importance=Reverse())
    assert by_name == by_object and by_name[0].idxs == [2, 3]
    with pytest.raises(UnknownNameError, match="registered:.*taylor"):
        plan_channels(two_layer(), X, pk.ChannelRatio(0.5), importance="tailor")


def test_pk_plan_passes_importance_and_round_to():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    graph = pk.analyze(model, torch.randn(1, 3, 8, 8))
    plan = pk.plan(model, graph, target=pk.ChannelRatio(0.4), channel_importance="activation", round_to=4)
    small = pk.apply(model, plan)
    assert small[0].out_channels == 8  # 16 x 0.6 = 9.6 -> nearest multiple of 4
    assert plan.channel_importance == "activation" and plan.round_to == 4
    reloaded = pk.Plan.model_validate_json(plan.model_dump_json())
    assert reloaded.channel_importance == "activation"


def test_per_group_fractions():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    x = torch.randn(1, 3, 4, 4)
    steps = plan_channels(model, x, pk.ChannelRatio(0.0, per_group={"2": 0.75}))
    assert [(s.layer, len(s.idxs)) for s in steps] == [("2", 6)]
    steps = plan_channels(model, x, pk.ChannelRatio(0.5, per_group={"0": 0.25}))
    assert sorted((s.layer, len(s.idxs)) for s in steps) == [("0", 2), ("2", 4)]
    with pytest.raises(UnreachableTargetError, match="per_group.0 must be < 1"):
        pk.ChannelRatio(0.5, per_group={"0": 1.0})


def test_configs_carry_importance_round_to_and_replacements():
    cfg = PruneConfig.model_validate({
        "model": "m", "target": {"kind": "latency_ratio", "keep": 0.5}, "out": "o",
        "channel_importance": "taylor", "round_to": 8, "runner": "plain",
        "replace": [{"name": "x", "paths": ["a"]}],
    })
    assert cfg.channel_importance == "taylor" and cfg.round_to == 8 and cfg.replace[0]["paths"] == ["a"]
    from prunekit.schedule.config import PruneStage

    with pytest.raises(ValueError, match="replace"):
        PruneStage.model_validate({"kind": "prune", "target": {"kind": "keep_blocks", "n": 1},
                                   "replace": [{"paths": ["a"]}]})
