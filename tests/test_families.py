"""Every architecture family end to end: units found where a person would count them, a depth plan
that runs, a width plan at ChannelRatio(0.5) that keeps the forward working with >= 10% fewer
parameters, and save / load that reproduces the pruned model's outputs exactly."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest
import torch
import torch_pruning as tp
from torch import nn

import families as fm
import prunekit as pk
import zoo
from prunekit import profile
from prunekit.channels import ChannelStep, apply_channels, plan_channels


def call(model: nn.Module, x: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**x) if isinstance(x, dict) else model(x)


def units(graph: pk.Graph) -> dict[str, tuple[str, bool, bool]]:
    return {u.path: (u.kind, u.exact, u.removable) for u in graph.units}


def check_plans(build: Callable[[], nn.Module], x: Any, tmp_path, depth_target: Any = None) -> tuple[pk.Plan, pk.Plan]:
    """The depth and width plans of one family run, shrink the model and round-trip through save/load."""
    torch.manual_seed(0)
    model = build().eval()
    dense = call(model, x)
    graph = pk.analyze(model, x)
    plans = []
    for name, target in (("depth", depth_target or pk.KeepBlocks(len(graph.leaves()) - 1)), ("width", pk.ChannelRatio(0.5))):
        plan = pk.plan(model, graph, strategy="block_influence", target=target)
        small = pk.apply(model, plan, x).eval()
        out = call(small, x)
        assert out.shape == dense.shape and torch.isfinite(out).all()
        assert plan.stats.params_after == profile.count_params(small) < plan.stats.params_before
        if name == "width":
            assert plan.stats.params_after <= 0.9 * plan.stats.params_before, plan.channel_skipped
        pk.save(small, plan, tmp_path / name)
        again = pk.load(tmp_path / name, build=build).eval()
        assert torch.equal(call(again, x), out)
        plans.append(plan)
    return plans[0], plans[1]


def test_post_activation_basic_blocks(tmp_path) -> None:
    """relu(x + f(x)) blocks: zero replay gives relu(x) (not x), yet removal is exact on the real,
    post-ReLU inputs; the Sequential that only chains them is a container."""
    graph = pk.analyze(fm.ResNetLike(), fm.image())
    assert units(graph) == {
        "layer1": ("residual", True, False), "layer1.0": ("residual", True, True), "layer1.1": ("residual", True, True),
    }
    assert graph.unit("layer1").container
    depth, _ = check_plans(fm.ResNetLike, fm.image(), tmp_path)
    assert len(depth.removed) == 1 and depth.zeroed == {}


def test_torchvision_resnet18_blocks(tmp_path) -> None:
    tv = pytest.importorskip("torchvision")
    build = lambda: tv.models.resnet18(weights=None, num_classes=10)  # noqa: E731
    graph = pk.analyze(build(), torch.rand(1, 3, 32, 32))
    # a BasicBlock without downsample is a unit: layer1's two, the second of each later layer
    assert [u.path for u in graph.leaves()] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert all(u.exact for u in graph.units)
    check_plans(build, torch.rand(1, 3, 32, 32), tmp_path, depth_target=pk.KeepBlocks(3))


def test_post_norm_transformer_units_are_approximate(tmp_path) -> None:
    x = fm.tokens()
    graph = pk.analyze(fm.PostNormEncoder(), x)
    assert units(graph) == {"layers.0": ("residual", False, True), "layers.1": ("residual", False, True)}
    strict = pk.analyze(fm.PostNormEncoder(), x, pk.Layout(allow_approximate=False))
    assert strict.removable() == [] and len(strict.units) == 2
    check_plans(fm.PostNormEncoder, x, tmp_path)


def test_block_influence_of_an_approximate_unit_is_its_true_removal_error() -> None:
    torch.manual_seed(0)
    model, x = fm.PostNormEncoder().eval(), fm.tokens()
    graph = pk.analyze(model, x)
    scores = pk.get_strategy("block_influence").score(model, graph, graph.removable(), [x])
    seen = {}
    model.layers[0].register_forward_hook(lambda m, a, o: seen.update(x=a[0], y=o))
    call(model, x)
    cos = torch.nn.functional.cosine_similarity(seen["x"].flatten(1).double(), seen["y"].flatten(1).double(), dim=1)
    assert scores["layers.0"] == pytest.approx(float((1 - cos).mean()))


def test_scaled_residual_around_a_chain_rrdb(tmp_path) -> None:
    graph = pk.analyze(zoo.RRDBNet(nb=2), zoo.image())
    assert graph.unit("body.0").removable and graph.unit("body.0").children == [f"body.0.rdb{i}" for i in (1, 2, 3)]
    model = zoo.RRDBNet(nb=2).eval()
    small = pk.remove_units(model, ["body.0"])
    assert len(small.body) == 1 and call(small, zoo.image()).shape == (1, 3, 16, 16)
    check_plans(lambda: zoo.RRDBNet(nb=2), zoo.image(), tmp_path)


def test_two_adds_in_one_module_give_removable_sub_blocks(tmp_path) -> None:
    """Pre-norm block x + attn(norm1(x)), then + mlp(norm2(x)): the block and each half are units; a
    half is removed by a zero stand-in, exactly as if its branch returned 0."""
    torch.manual_seed(0)
    model, x = fm.PreNormMHA().eval(), fm.tokens()
    graph = pk.analyze(model, x)
    assert units(graph)["blocks.0.attn"] == ("branch", True, True)
    assert graph.unit("blocks.0.attn").outputs == 2  # nn.MultiheadAttention returns a tuple
    assert graph.unit("blocks.1.mlp").outputs == 0 and graph.unit("blocks.1").children == ["blocks.1.attn", "blocks.1.mlp"]
    small = pk.remove_units(model, ["blocks.0.attn"], {"blocks.0.attn": 2})
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference.blocks[0].attn.out_proj.weight.zero_()
        reference.blocks[0].attn.out_proj.bias.zero_()
    assert torch.allclose(call(small, x), call(reference, x), atol=1e-6)
    assert profile.count_params(small) == profile.count_params(model) - graph.unit("blocks.0.attn").params
    depth, _ = check_plans(fm.PreNormMHA, x, tmp_path, depth_target=pk.KeepBlocks(2))
    assert set(depth.zeroed) == set(depth.removed) and len(depth.removed) == 2


def test_sub_block_scores_measure_the_trunk() -> None:
    torch.manual_seed(0)
    model, x = zoo.Transformer(depth=2).eval(), zoo.transformer_inputs()
    graph = pk.analyze(model, x)
    halves = [u for u in graph.leaves() if u.kind == "branch"]
    influence = pk.get_strategy("block_influence").score(model, graph, halves, [x])
    ablation = pk.get_strategy("ablation").score(model, graph, halves, [x])
    assert set(influence) == set(ablation) == {u.path for u in halves}
    assert all(0 < v < 2 for v in influence.values()) and all(v > 0 for v in ablation.values())
    with torch.no_grad():  # a branch that returns 0 changes nothing: influence and damage 0
        model.blocks[1].mlp[2].weight.zero_()
        model.blocks[1].mlp[2].bias.zero_()
    assert pk.get_strategy("block_influence").score(model, graph, halves, [x])["blocks.1.mlp"] == pytest.approx(0, abs=1e-12)
    assert pk.get_strategy("ablation").score(model, graph, halves, [x])["blocks.1.mlp"] == 0


def test_regnet_grouped_convs(tmp_path) -> None:
    graph = pk.analyze(fm.RegNetLike(), fm.image())
    assert [u.path for u in graph.leaves()] == ["blocks.0", "blocks.1"]
    _, width = check_plans(fm.RegNetLike, fm.image(), tmp_path)
    small = pk.apply(fm.RegNetLike(), width, fm.image())
    grouped = small.blocks[0].b[0]
    assert grouped.groups == 4 and grouped.in_channels == grouped.out_channels < 16
    assert grouped.out_channels % grouped.groups == 0


def test_grouped_conv_pruning_removes_the_right_channels() -> None:
    """A pruned model equals the dense one with the removed channels zeroed: indices are mapped
    through the grouped conv correctly (the same positions in each group)."""
    torch.manual_seed(0)
    model, x = fm.GroupedToy().eval(), fm.image()
    steps = plan_channels(model, x, pk.ChannelRatio(0.5))
    first = next(s for s in steps if s.layer == "net.0")
    assert len(first.idxs) == 4 and {i % 4 for i in first.idxs if i < 4} == {i % 4 for i in first.idxs if i >= 4}
    pruned = apply_channels(copy.deepcopy(model), x, [first])
    assert pruned.net[2].weight.shape == (8, 2, 3, 3) and pruned.net[2].groups == 2
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        zeroed.net[0].weight[first.idxs] = 0
        zeroed.net[0].bias[first.idxs] = 0
    assert torch.allclose(call(pruned, x), call(zeroed, x), atol=1e-6)
    # plain torch-pruning agrees on the shapes of the same removal
    plain = copy.deepcopy(model)
    dg = tp.DependencyGraph().build_dependency(plain, example_inputs=x)
    dg.get_pruning_group(plain.net[0], tp.prune_conv_out_channels, first.idxs).prune()
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}


def test_grouped_toy_plans(tmp_path) -> None:
    _, width = check_plans(fm.GroupedToy, fm.image(), tmp_path, depth_target=pk.ChannelRatio(0.25))
    assert width.channel_skipped == []


def test_attention_with_a_bias_table(tmp_path) -> None:
    """Swin-style window attention: discovery splits each block; width pruning prunes what it can
    (MLPs) and reports, instead of raising, the groups torch-pruning cannot handle."""
    graph = pk.analyze(fm.SwinIRLike(), fm.image())
    assert [u.path for u in graph.leaves()] == [f"blocks.{i}.{h}" for i in range(2) for h in ("attn", "mlp")]
    _, width = check_plans(fm.SwinIRLike, fm.image(), tmp_path, depth_target=pk.KeepBlocks(3))
    assert all(s.reason for s in width.channel_skipped)
    assert pk.Plan.model_validate_json(width.model_dump_json()).channel_skipped == width.channel_skipped


def test_multihead_attention_pruned_by_heads() -> None:
    torch.manual_seed(0)
    model, x = fm.PostNormEncoder(dim=16, heads=4).eval(), fm.tokens()
    small = pk.apply(model, pk.plan(model, pk.analyze(model, x), target=pk.ChannelRatio(0.5)), x)
    attn = small.layers[0].self_attn
    assert attn.num_heads == 4 and attn.embed_dim % 4 == 0
    assert call(small, x).shape == call(model, x).shape


def test_recurrent_features_concatenated_with_flow_warping(tmp_path) -> None:
    graph = pk.analyze(fm.BasicVSRLike(), fm.video())
    assert [u.path for u in graph.leaves()] == ["blocks.0", "blocks.1"]
    check_plans(fm.BasicVSRLike, fm.video(), tmp_path)


def test_untraceable_forward(tmp_path) -> None:
    model, x = fm.Untraceable(), fm.image()
    report = profile.flop_report(model, x)
    assert report.method == "hooks" and report.uncounted
    conv = 8 * 8 * 9 * 64
    assert report.by_module["blocks.0"] == 2 * conv and report.total == 3 * 8 * 9 * 64 * 2 + 4 * conv
    graph = pk.analyze(model, x)
    assert [u.path for u in graph.leaves()] == ["blocks.0", "blocks.1"]
    assert graph.unit("blocks.0").flops == 2 * conv
    check_plans(fm.Untraceable, x, tmp_path)


def test_failing_group_is_reported_and_the_plan_goes_on(monkeypatch) -> None:
    """A torch-pruning error on one group leaves that group whole, with the reason, not the plan."""
    from prunekit import channels

    real = channels._prune

    def flaky(dg, module, idxs):
        if module.out_channels == 8 and module.kernel_size == (3, 3) and module.in_channels == 8:
            raise ZeroDivisionError("integer division or modulo by zero")
        return real(dg, module, idxs)

    monkeypatch.setattr(channels, "_prune", flaky)
    model, x = zoo.EDSR(nb=2), zoo.image()
    plan = pk.plan(model, pk.analyze(model, x), target=pk.ChannelRatio(0.5))
    assert plan.channel_skipped and all("ZeroDivisionError" in s.reason for s in plan.channel_skipped)
    assert plan.channels and pk.apply(model, plan, x)(x).shape == model(x).shape


def test_time_limit_stops_with_a_clear_message() -> None:
    skipped: list = []
    steps = plan_channels(zoo.EDSR(nb=2), zoo.image(), pk.ChannelRatio(0.5), time_limit_s=1e-9, skipped=skipped)
    assert steps == [] and skipped[-1].layer == "*" and "time limit" in skipped[-1].reason
    with pytest.raises(pk.ConfigError, match="time_limit_s"):
        plan_channels(zoo.EDSR(nb=2), zoo.image(), pk.ChannelRatio(0.5), time_limit_s=0)
    assert isinstance(ChannelStep(layer="a", idxs=[0]), ChannelStep)
