"""Surgery and planning: removal keeps the model well-formed, plans replay, accounting is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
import prunekit as pk
from prunekit.surgery import Bypass, remove_units


def zero_branch(block: nn.Module) -> None:
    """Zero every parameter of a unit so that its branch g(x) vanishes."""
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()


@pytest.mark.parametrize(
    "build, inputs, path",
    [
        (lambda: zoo.EDSR(nb=3), zoo.image, "body.1"),
        (lambda: zoo.RCAN(), zoo.image, "body.0.body.1"),
        (lambda: zoo.RCAN(), zoo.image, "body.1"),
        (lambda: zoo.SRResNet(), zoo.image, "blocks.2"),
        (lambda: zoo.Transformer(), zoo.transformer_inputs, "blocks.1"),
    ],
)
def test_removing_a_zero_branch_unit_keeps_outputs(build, inputs, path) -> None:
    model = build().eval()
    zero_branch(model.get_submodule(path))
    x = inputs()
    args, kwargs = ((), x) if isinstance(x, dict) else ((x,), {})
    with torch.no_grad():
        expected = model(*args, **kwargs)
        pruned = remove_units(model, [path])
        got = pruned(*args, **kwargs)
    assert torch.equal(got, expected)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_sequential_parent_is_reindexed_other_parents_get_bypass() -> None:
    model = zoo.RCAN(n_groups=2, n_blocks=3)
    pruned = remove_units(model, ["body.0", "body.1.body.1"])
    assert isinstance(pruned.body[0], zoo.ResidualGroup)  # old body.1 moved up
    assert len(pruned.body) == 2  # one group + the trunk conv
    assert len(pruned.body[0].body) == 3  # two RCABs + conv
    keys = set(pruned.state_dict())
    assert "body.0.body.1.body.0.weight" in keys and "body.2.weight" not in keys

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = zoo.EDSRBlock(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x)

    bypassed = remove_units(Holder(), ["block"])
    assert isinstance(bypassed.block, Bypass)
    x = torch.rand(1, 4, 5, 5)
    assert torch.equal(bypassed(x), x)


def test_remove_units_never_touches_the_input() -> None:
    model = zoo.EDSR(nb=3)
    keys = list(model.state_dict())
    with pytest.raises(pk.PlanMismatchError, match="body.7"):
        remove_units(model, ["body.0", "body.7"])
    remove_units(model, ["body.0"])
    assert list(model.state_dict()) == keys and len(model.body) == 4


def test_tecogan_like_param_accounting() -> None:
    model = zoo.SRNetStack(nb=10)
    x = zoo.image(8)
    graph = pk.analyze(model, x)
    dense = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(n=10))
    for k in (1, 3, 5):
        p = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(n=10 - k))
        assert len(p.removed) == k
        assert p.stats.params_before - p.stats.params_after == k * 73_856
        small = pk.apply(model, p)
        assert sum(t.numel() for t in small.parameters()) == p.stats.params_after
        native = zoo.SRNetStack(nb=10 - k)  # pruned model has the state_dict layout of a native smaller one
        assert {k_: v.shape for k_, v in small.state_dict().items()} == {
            k_: v.shape for k_, v in native.state_dict().items()
        }
        assert p.stats.flops_after < p.stats.flops_before
    assert dense.removed == [] and dense.stats.params_after == dense.stats.params_before


def test_plan_json_round_trip_and_replay_on_fresh_model() -> None:
    torch.manual_seed(1)
    model = zoo.RCAN(n_groups=2, n_blocks=3)
    graph = pk.analyze(model, zoo.image())
    p = pk.plan(model, graph, strategy="magnitude", target=pk.KeepBlocks(n=3))
    again = pk.Plan.model_validate_json(p.model_dump_json())
    assert again == p
    assert again.prunekit_version == pk.__version__ and again.input_shapes == {"arg0": [1, 3, 8, 8]}
    assert set(again.scores) == {u.path for u in graph.removable()}
    fresh = zoo.RCAN(n_groups=2, n_blocks=3)  # different random weights, same architecture
    a, b = pk.apply(model, p), pk.apply(fresh, again)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_plan_with_extra_args_model() -> None:
    model = zoo.Transformer(depth=4)
    inputs = zoo.transformer_inputs()
    graph = pk.analyze(model, inputs)
    p = pk.plan(model, graph, strategy="block_influence", target=pk.KeepBlocks(n=2))
    assert len(p.removed) == 6  # the blocks are the 8 attention / MLP sub-blocks
    assert set(p.zeroed) == set(p.removed)
    small = pk.apply(model, p)
    assert small(**inputs).shape == model(**inputs).shape
    whole = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(n=8))
    assert whole.removed == [] and len(pk.remove_units(model, ["blocks.1", "blocks.2"]).blocks) == 2


def test_params_ratio_target_and_width_target() -> None:
    model = zoo.EDSR(nf=8, nb=6)
    x = zoo.image()
    graph = pk.analyze(model, x)
    p = pk.plan(model, graph, strategy="magnitude", target=pk.ParamsRatio(keep=0.7))
    assert p.stats.params_after <= 0.7 * p.stats.params_before
    both = pk.plan(model, graph, strategy="magnitude", target=[pk.KeepBlocks(n=4), pk.ChannelRatio(prune=0.25)])
    assert len(both.removed) == 2 and both.channels
    small = pk.apply(model, both)
    assert small(x).shape == model(x).shape
    assert sum(t.numel() for t in small.parameters()) == both.stats.params_after
    fresh = pk.apply(zoo.EDSR(nf=8, nb=6), pk.Plan.model_validate_json(both.model_dump_json()))
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}
