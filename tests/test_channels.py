import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prunekit as pk
from prunekit import profile
from prunekit.budget import ChannelFlops, ChannelRatio
from prunekit.channels import ChannelStep, apply_channels, dependency_graph, output_layers, plan_channels
from prunekit.errors import ConfigError, PlanMismatchError, UnknownNameError, UnreachableTargetError
from prunekit.graph import Layout
from prunekit.surgery import remove_units

import zoo


class TecoLike(nn.Module):
    """SRNet-shaped: conv_in, residual blocks, two stride-2 ConvTranspose2d, conv_out + bicubic skip."""

    def __init__(self, c: int = 8, n: int = 3) -> None:
        super().__init__()
        self.conv_in = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
        self.resblocks = nn.Sequential(*[zoo.TwoConvResidual(c) for _ in range(n)])
        self.conv_up = nn.Sequential(
            nn.ConvTranspose2d(c, c, 3, 2, 1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c, c, 3, 2, 1, output_padding=1), nn.ReLU(),
        )
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        return self.conv_out(self.conv_up(self.resblocks(self.conv_in(x)))) + up


class EDSRLike(nn.Module):
    """Head, residual body with a long skip, x4 upsampler of two conv + PixelShuffle(2) stages."""

    def __init__(self, c: int = 8, n: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*[zoo.TwoConvResidual(c) for _ in range(n)])
        self.upsample = nn.Sequential(
            nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2),
            nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2),
        )
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return self.tail(self.upsample(h + self.body(h)))


X = torch.randn(1, 3, 6, 6)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def replay(factory, model: nn.Module, steps: list[ChannelStep]) -> nn.Module:
    fresh = factory()
    apply_channels(fresh, X, steps)
    assert shapes(fresh) == shapes(model)
    return fresh


def test_chain_params_drop_as_computed():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 3))
    steps = plan_channels(model, torch.randn(1, 3, 12, 12), ChannelRatio(0.5))
    assert profile.count_params(model) == (8 * 3 * 9 + 8) + (8 * 8 * 9 + 8) + (3 * 8 * 9 + 3)  # untouched
    apply_channels(model, torch.randn(1, 3, 12, 12), steps)
    assert profile.count_params(model) == (4 * 3 * 9 + 4) + (4 * 4 * 9 + 4) + (3 * 4 * 9 + 3)
    assert {s.layer for s in steps} == {"0", "2"}
    assert model(torch.randn(2, 3, 12, 12)).shape == (2, 3, 6, 6)


@pytest.mark.parametrize("factory", [TecoLike, EDSRLike])
def test_width_pruning_runs_keeps_output_shape_and_replays(factory):
    model = factory()
    dense_params = profile.count_params(model)
    out_shape = model(X).shape
    steps = plan_channels(model, X, ChannelRatio(0.5))
    assert profile.count_params(model) == dense_params  # planning works on a copy
    pruned = factory()
    pruned.load_state_dict(model.state_dict())
    apply_channels(pruned, X, steps)
    assert pruned(X).shape == out_shape
    assert profile.count_params(pruned) < 0.4 * dense_params
    replay(factory, pruned, steps)


def test_conv_transpose_pruned_at_dim1_and_conv_out_kept():
    model = TecoLike()
    steps = plan_channels(model, X, ChannelRatio(0.25))
    layers = {s.layer for s in steps}
    assert {"conv_up.0", "conv_up.2"} <= layers and "conv_out" not in layers
    apply_channels(model, X, steps)
    assert model.conv_up[0].weight.shape == (6, 6, 3, 3)  # ConvT weight is (in, out, k, k)
    assert model.conv_up[2].weight.shape == (6, 6, 3, 3)
    assert model.conv_out.weight.shape == (3, 6, 3, 3)


def test_output_layers_detected_through_adds():
    model = TecoLike()
    dg = dependency_graph(model, X)
    assert output_layers(dg) == [model.conv_out]


def test_pixel_shuffle_prunes_whole_channel_blocks():
    model = EDSRLike()
    steps = {s.layer: s.idxs for s in plan_channels(model, X, ChannelRatio(0.5))}
    for layer in ("upsample.0", "upsample.2"):
        idxs = steps[layer]
        assert len(idxs) == 16
        blocks = {i // 4 for i in idxs}
        assert set(idxs) == {4 * b + k for b in blocks for k in range(4)}


def test_pixel_shuffle_mapping_matches_the_math():
    """Zeroing conv channels 4c..4c+3 before a PixelShuffle(2) silences shuffled channel c, so
    removing that block (and input channel c of the next conv) must not change the output."""
    model = EDSRLike().eval()
    with torch.no_grad():
        model.upsample[0].weight[4:8].zero_()
        model.upsample[0].bias[4:8].zero_()
        dense = model(X)
    apply_channels(model, X, [ChannelStep(layer="upsample.0", idxs=[4, 5, 6, 7])])
    assert model.upsample[0].weight.shape[0] == 28
    assert model.upsample[2].weight.shape[1] == 7
    with torch.no_grad():
        torch.testing.assert_close(model(X), dense)


def test_partial_pixel_shuffle_block_rejected():
    with pytest.raises(PlanMismatchError, match="whole blocks of 4"):
        apply_channels(EDSRLike(), X, [ChannelStep(layer="upsample.0", idxs=[4, 5])])


def test_combined_with_block_removal():
    def build() -> nn.Module:
        return remove_units(TecoLike(n=4), ["resblocks.1", "resblocks.3"])

    torch.manual_seed(0)
    model = build()
    assert len(model.resblocks) == 2
    steps = plan_channels(model, X, ChannelRatio(0.5))
    apply_channels(model, X, steps)
    assert model(X).shape == (1, 3, 24, 24)
    assert "resblocks.1.conv1" in {s.layer for s in steps}
    replay(build, model, steps)


def test_ignore_and_layout_keep_layers_whole():
    model = TecoLike()
    layout = Layout(channel_ignore=["conv_up.0"])
    steps = plan_channels(model, X, ChannelRatio(0.5, ignore=["resblocks.0*"]), layout=layout)
    layers = {s.layer for s in steps}
    assert "conv_up.0" not in layers and "resblocks.0.conv1" not in layers
    assert "resblocks.1.conv1" in layers
    with pytest.raises(ConfigError, match="nothing_here"):
        plan_channels(model, X, ChannelRatio(0.5, ignore=["nothing_here"]))


def test_round_to_gives_multiples():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Conv2d(16, 3, 3))
    x = torch.randn(1, 3, 10, 10)
    steps = plan_channels(model, x, ChannelRatio(0.3), round_to=4)
    apply_channels(model, x, steps)
    assert model[0].out_channels == model[2].out_channels == 12


def test_importance_l2_removes_the_weakest_channels():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    with torch.no_grad():
        model[0].weight.mul_(10.0)
        model[0].weight[1].mul_(0.001)
        model[0].weight[2].mul_(0.001)
        model[2].weight.fill_(0.1)
    steps = plan_channels(model, torch.randn(1, 3, 4, 4), ChannelRatio(0.5), importance="l2")
    assert steps == [ChannelStep(layer="0", idxs=[1, 2])]


def test_bad_arguments():
    with pytest.raises(UnreachableTargetError, match="prune must be < 1"):
        ChannelRatio(1.0)
    with pytest.raises(UnknownNameError, match="channel importance 'no_such'"):
        plan_channels(TecoLike(), X, ChannelRatio(0.5), importance="no_such")
    with pytest.raises(PlanMismatchError, match="no_such"):
        apply_channels(TecoLike(), X, [ChannelStep(layer="no_such", idxs=[0])])
    with pytest.raises(PlanMismatchError, match="8 output channels"):
        apply_channels(TecoLike(), X, [ChannelStep(layer="conv_up.0", idxs=[9])])


def test_zero_ratio_plans_nothing():
    assert plan_channels(TecoLike(), X, ChannelRatio(0.0)) == []


def test_group_that_breaks_the_model_is_left_whole(caplog):
    class Warp(nn.Module):
        """A 2-channel conv output used as grid_sample coordinates (like a flow estimator)."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Conv2d(3, 8, 3, padding=1)
            self.flow = nn.Conv2d(8, 2, 3, padding=1)
            self.out = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            grid = torch.tanh(self.flow(F.relu(self.features(x)))).permute(0, 2, 3, 1)
            return self.out(F.grid_sample(x, grid, align_corners=False))

    model = Warp()
    with caplog.at_level("WARNING", logger="prunekit.channels"):
        steps = plan_channels(model, X, ChannelRatio(0.5))
    assert [s.layer for s in steps] == ["features"]
    assert "flow" in caplog.text
    apply_channels(model, X, steps)
    assert model(X).shape == X.shape and model.flow.out_channels == 2


@pytest.mark.parametrize(
    "factory", [lambda: zoo.EDSR(nf=8, nb=2), TecoLike], ids=["edsr_pixelshuffle", "convtranspose"]
)
def test_channel_flops_meets_the_limit_without_overshooting(factory):
    torch.manual_seed(0)
    model = factory()
    before = profile.flops(model, X)
    steps = plan_channels(model, X, ChannelFlops(0.5))
    assert profile.flops(model, X) == before  # planning leaves the model alone
    pruned = replay(factory, apply_channels(copy.deepcopy(model), X, steps), steps)
    after = profile.flops(pruned, X)
    assert 0.3 * before < after <= 0.5 * before
    assert pruned(X).shape == model(X).shape
    looser = apply_channels(copy.deepcopy(model), X, plan_channels(model, X, ChannelFlops(0.8)))
    assert after < profile.flops(looser, X) <= 0.8 * before  # a looser limit keeps more


def test_channel_flops_bad_and_unreachable_limits():
    model = TecoLike()
    assert plan_channels(model, X, ChannelFlops(1.0)) == []
    for keep in (0.0, 1.5):
        with pytest.raises(UnreachableTargetError, match=r"ChannelFlops: keep must be"):
            ChannelFlops(keep)
    with pytest.raises(UnreachableTargetError, match=r"needs at most .* FLOPs of .* still leaves"):
        plan_channels(model, X, ChannelFlops(0.001))


def test_channel_flops_in_a_plan_is_relative_to_the_block_pruned_model():
    model = zoo.EDSR(nf=8, nb=4)
    x = zoo.image()
    graph = pk.analyze(model, x)
    blocks_only = pk.plan(model, graph, strategy="magnitude", target=pk.KeepBlocks(2))
    width = {"kind": "channel_flops", "keep": 0.5}
    both = pk.plan(model, graph, strategy="magnitude", target=[pk.KeepBlocks(2), width])
    assert both.removed == blocks_only.removed and both.channels
    assert both.stats.flops_after <= 0.5 * blocks_only.stats.flops_after
    fresh = pk.apply(zoo.EDSR(nf=8, nb=4), pk.Plan.model_validate_json(both.model_dump_json()))
    assert profile.flops(fresh, x) == both.stats.flops_after
