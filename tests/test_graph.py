"""Discovery: the residual units of each model family, found by tracing alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from prunekit.errors import ConfigError, InputShapeError
from prunekit.graph import Layout, analyze


def paths(graph) -> list[str]:
    return [u.path for u in graph.units]


def test_edsr_blocks_with_residual_scaling() -> None:
    graph = analyze(zoo.EDSR(nb=4), zoo.image())
    assert paths(graph) == [f"body.{i}" for i in range(4)]
    assert all(u.removable and u.depth == 0 and u.parent is None for u in graph.units)
    assert [u.path for u in graph.leaves()] == paths(graph)


def test_rcan_groups_hold_blocks() -> None:
    graph = analyze(zoo.RCAN(n_groups=2, n_blocks=2), zoo.image())
    assert paths(graph) == [
        "body.0", "body.0.body.0", "body.0.body.1",
        "body.1", "body.1.body.0", "body.1.body.1",
    ]
    group = graph.unit("body.0")
    assert group.children == ["body.0.body.0", "body.0.body.1"]
    assert group.removable and not group.container  # the group's own tail conv makes it more than a chain
    assert graph.unit("body.1.body.0").parent == "body.1"
    assert graph.unit("body.1.body.0").depth == 1
    assert [u.path for u in graph.leaves()] == [p for p in paths(graph) if p.count(".") == 3]


def test_sequential_of_blocks_is_a_container() -> None:
    graph = analyze(zoo.SRResNet(nb=3), zoo.image())
    assert paths(graph) == ["blocks", "blocks.0", "blocks.1", "blocks.2"]
    blocks = graph.unit("blocks")
    assert blocks.container and not blocks.removable
    assert blocks.params == sum(graph.unit(f"blocks.{i}").params for i in range(3))
    assert [u.path for u in graph.removable()] == ["blocks.0", "blocks.1", "blocks.2"]


def test_rrdb_is_a_removable_unit_around_its_dense_blocks() -> None:
    """x + 0.2 * rdb3(rdb2(rdb1(x))): the scaled residual around a chain of units is found from the
    computation and is removable on its own (not a container), as are its dense blocks."""
    model = zoo.RRDBNet(nb=2)
    found = analyze(model, zoo.image())
    assert paths(found) == ["body"] + [p for i in range(2) for p in [f"body.{i}"] + [f"body.{i}.rdb{j}" for j in (1, 2, 3)]]
    rrdb = found.unit("body.0")
    assert rrdb.removable and not rrdb.container and rrdb.exact and rrdb.kind == "residual"
    assert rrdb.children == ["body.0.rdb1", "body.0.rdb2", "body.0.rdb3"]
    assert found.unit("body").container  # the nn.Sequential of RRDBs only chains them
    declared = analyze(model, zoo.image(), Layout(declare=["body.0", "body.1"]))
    assert declared.unit("body.0").declared
    assert declared.unit("body.0.rdb2").depth == 2  # body -> body.0 -> body.0.rdb2


def test_transformer_block_with_mask_argument_and_two_sub_blocks() -> None:
    graph = analyze(zoo.Transformer(depth=3), zoo.transformer_inputs())
    assert paths(graph) == [p for i in range(3) for p in (f"blocks.{i}", f"blocks.{i}.attn", f"blocks.{i}.mlp")]
    assert graph.input_shapes == {"tokens": [2, 6, 4], "mask": [2, 6]}
    block, attn = graph.unit("blocks.0"), graph.unit("blocks.0.attn")
    assert block.kind == "residual" and block.removable and block.children == ["blocks.0.attn", "blocks.0.mlp"]
    assert attn.kind == "branch" and attn.parent == "blocks.0" and attn.removable and attn.exact
    assert [u.path for u in graph.leaves()] == [p for p in paths(graph) if p.count(".") == 2]


def test_plain_cnn_has_no_units() -> None:
    graph = analyze(zoo.PlainCNN(), zoo.image())
    assert graph.units == [] and graph.total_params > 0


def test_tecogan_like_block_params_and_flops_share() -> None:
    graph = analyze(zoo.SRNetStack(nb=3), zoo.image())
    leaves = graph.leaves()
    assert [u.params for u in leaves] == [73_856] * 3
    # two 3x3 64->64 convs at 8x8 output: 2 * 64*64*9 * 64 MACs (+ the residual add, 64*64 elements)
    conv_macs = 2 * 64 * 64 * 9 * 64
    assert conv_macs <= leaves[0].flops <= conv_macs + 64 * 64 * 2
    assert sum(u.flops_share for u in leaves) < 1.0
    assert leaves[0].flops_share == pytest.approx(leaves[0].flops / graph.total_flops)


class ShapeKeeping(nn.Module):
    """Shape-preserving but not residual: adds relu(x), not x, to the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + torch.relu(x)


def test_coincidence_on_recorded_input_is_rejected() -> None:
    """relu(x) + conv(x) equals x at zero weights for the non-negative recorded input, but not for a
    random one; the random probe must reject it."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = ShapeKeeping()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x)

    assert paths(analyze(Net(), zoo.image())) == []


def test_layout_include_protect() -> None:
    model = zoo.RCAN(n_groups=2, n_blocks=2)
    only_first = analyze(model, zoo.image(), Layout(include=["body.0"]))
    assert paths(only_first) == ["body.0", "body.0.body.0", "body.0.body.1"]
    protected = analyze(model, zoo.image(), Layout(protect=["body.1"]))
    assert [u.path for u in protected.units if not u.removable] == ["body.1", "body.1.body.0", "body.1.body.1"]
    assert all(u.protected for u in protected.units if u.path.startswith("body.1"))


def test_declare_unknown_path_is_config_error() -> None:
    with pytest.raises(ConfigError, match="body.9"):
        analyze(zoo.EDSR(nb=2), zoo.image(), Layout(declare=["body.9"]))


def test_wrong_input_shape() -> None:
    with pytest.raises(InputShapeError, match=r"\[1, 4, 8, 8\]"):
        analyze(zoo.EDSR(), torch.rand(1, 4, 8, 8))


def test_mode_restored_and_weights_untouched() -> None:
    model = zoo.SRResNet().train()
    model.blocks[1].bn1.eval()  # a frozen BatchNorm inside a training model keeps its mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = zoo.image(batch=2)
    rng = torch.get_rng_state()
    analyze(model, x)
    assert model.training and model.blocks[0].bn1.training and not model.blocks[1].bn1.training
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats too (eval during tracing)


def test_graph_json_round_trip() -> None:
    graph = analyze(zoo.RCAN(), zoo.image())
    again = type(graph).model_validate_json(graph.model_dump_json())
    assert again.units == graph.units and again.total_flops == graph.total_flops


class ResConv(nn.Conv2d):
    """A Conv2d subclass whose forward adds its input: still a unit (layer types are never trusted
    by class alone, only exact plain layers are skipped)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


def test_residual_layer_subclass_is_found() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), ResConv(4, 4, 3, padding=1), nn.Conv2d(4, 3, 1))
    assert paths(analyze(model, zoo.image())) == ["1"]
