import functools
import json

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit import profile
from prunekit.budget import (
    ChannelFlops,
    ChannelRatio,
    FlopsRatio,
    KeepBlocks,
    ParamsRatio,
    parse_target,
    select_units,
)
from prunekit.errors import ConfigError, UnreachableTargetError
from prunekit.graph import analyze
from prunekit.surgery import remove_units

from zoo import ConvResidual


class Group(nn.Module):
    """A residual group: blocks then a conv, all wrapped in a long skip."""

    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[ConvResidual(c) for _ in range(n)])
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.body(x))


class Flat(nn.Module):
    def __init__(self, c: int = 4, n: int = 6) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(*[ConvResidual(c) for _ in range(n)])
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.blocks(self.head(x)))


class Grouped(nn.Module):
    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.groups = nn.Sequential(Group(c, 3), Group(c, 4))
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.groups(self.head(x)))


X = torch.randn(1, 3, 8, 8)


@functools.lru_cache(maxsize=None)
def analysed(cls: type) -> tuple[nn.Module, object]:
    """One analysed instance per model class (select_units never modifies the model)."""
    torch.manual_seed(0)
    model = cls()
    return model, analyze(model, X)


def setup(cls: type):
    model, graph = analysed(cls)
    blocks = [u.path for u in graph.leaves()]
    # descending scores: the later a block, the lower its score
    scores = {p: float(len(blocks) - i) for i, p in enumerate(blocks)}
    return model, graph, blocks, scores


def test_keep_blocks_removes_lowest_scores():
    model, graph, blocks, scores = setup(Flat)
    assert len(blocks) == 6
    scores["blocks.0"] = -1.0
    assert select_units(model, graph, scores, KeepBlocks(3), X) == ["blocks.0", "blocks.4", "blocks.5"]
    assert select_units(model, graph, scores, KeepBlocks(6), X) == []


def test_keep_blocks_per_group():
    model, graph, blocks, scores = setup(Grouped)
    assert blocks == [f"groups.0.body.{i}" for i in range(3)] + [f"groups.1.body.{i}" for i in range(4)]
    removed = select_units(model, graph, scores, KeepBlocks(2, per_group=True), X)
    assert removed == ["groups.0.body.2", "groups.1.body.2", "groups.1.body.3"]
    removed_flat = select_units(model, graph, scores, KeepBlocks(2), X)
    assert removed_flat == blocks[2:]
    with pytest.raises(UnreachableTargetError, match="only 3 blocks"):
        select_units(model, graph, scores, KeepBlocks(4, per_group=True), X)


def test_params_ratio_meets_target_with_fewest_removals():
    model, graph, blocks, scores = setup(Flat)
    block_params = graph.unit("blocks.0").params
    target = ParamsRatio(0.7)
    removed = select_units(model, graph, scores, target, X)
    after = profile.count_params(remove_units(model, removed))
    assert after <= 0.7 * graph.total_params
    assert after + block_params > 0.7 * graph.total_params  # one block fewer would miss the target
    assert removed == blocks[len(blocks) - len(removed):]


def test_flops_ratio_verified_by_profiling():
    model, graph, blocks, scores = setup(Flat)
    dense = profile.flops(model, X)
    removed = select_units(model, graph, scores, FlopsRatio(0.5), X)
    after = profile.flops(remove_units(model, removed), X)
    assert after <= 0.5 * dense
    fewer = profile.flops(remove_units(model, removed[1:]), X)
    assert fewer > 0.5 * dense


@pytest.mark.parametrize(
    "target, message",
    [
        (KeepBlocks(7), "only 6 removable blocks"),
        (ParamsRatio(0.05), "removing all blocks but one still leaves"),
        (FlopsRatio(0.05), "removing all blocks but one still leaves"),
    ],
)
def test_unreachable_targets(target, message):
    model, graph, _, scores = setup(Flat)
    with pytest.raises(UnreachableTargetError, match=message):
        select_units(model, graph, scores, target, X)


def test_missing_scores_and_channel_target():
    model, graph, blocks, scores = setup(Flat)
    assert select_units(model, graph, scores, ChannelRatio(0.5), X) == []
    assert select_units(model, graph, scores, ChannelFlops(0.5), X) == []
    del scores[blocks[0]]
    with pytest.raises(ConfigError, match="blocks.0"):
        select_units(model, graph, scores, KeepBlocks(2), X)


@pytest.mark.parametrize(
    "target",
    [KeepBlocks(3, per_group=True), ParamsRatio(keep=0.4), FlopsRatio(0.25), ChannelRatio(0.5, ignore=["tail"]),
     ChannelFlops(0.6, ignore=["tail"])],
)
def test_targets_round_trip_json(target):
    text = target.model_dump_json()
    assert json.loads(text)["kind"] == target.kind
    assert parse_target(text) == target
    assert parse_target(json.loads(text)) == target


def test_parse_target_rejects_bad_input():
    with pytest.raises(ConfigError, match="keep_blocks"):
        parse_target({"kind": "keep_everything"})
    with pytest.raises(ConfigError):
        parse_target({"kind": "keep_blocks", "n": 2, "extra": 1})
    with pytest.raises(ConfigError, match="channel_flops"):
        parse_target({"kind": "channel_flop", "keep": 0.5})


def test_channel_flops_reads_keep_positionally():
    target = parse_target({"kind": "channel_flops", "keep": 0.4})
    assert target == ChannelFlops(0.4) and target.ignore == []


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: KeepBlocks(0), r"KeepBlocks: n must be >= 1, got 0"),
        (lambda: ParamsRatio(0.0), r"ParamsRatio: keep must be > 0\.0, got 0\.0"),
        (lambda: ParamsRatio(1.5), r"ParamsRatio: keep must be <= 1\.0, got 1\.5"),
        (lambda: FlopsRatio(-0.1), r"FlopsRatio: keep must be > 0"),
        (lambda: ChannelRatio(1.0), r"ChannelRatio: prune must be < 1\.0, got 1\.0"),
        (lambda: ChannelRatio(0.5, per_group={"conv": 1.2}), r"per_group\.conv must be < 1\.0, got 1\.2"),
        (lambda: pk.LatencyRatio(0.0), r"LatencyRatio: keep must be > 0"),
        (lambda: pk.Latency(-1.0), r"Latency: ms must be > 0\.0, got -1\.0"),
    ],
)
def test_targets_validate_themselves(make, message):
    with pytest.raises(UnreachableTargetError, match=message):
        make()


def test_out_of_range_targets_in_configs_are_config_errors():
    from prunekit.budget import parse_target

    with pytest.raises(ConfigError, match=r"keep must be <= 1\.0, got 1\.5"):
        parse_target({"kind": "params_ratio", "keep": 1.5})
    assert parse_target({"kind": "channel_ratio", "prune": 0.5}).is_width
    assert pk.LatencyRatio(0.5).is_latency and not pk.KeepBlocks(3).is_width
