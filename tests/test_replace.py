"""Structure replacement as a plan step: register, apply with calibration, save -> load replays it,
joint replacement of sibling modules, replacement + width pruning together."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prunekit as pk
from prunekit.errors import ConfigError, PlanMismatchError, UnknownNameError
from prunekit.registry import REPLACEMENTS
from prunekit.replace import parse_replacements
from zoo import TwoConvResidual


class TinyEDSR(nn.Module):
    """Head, 3 residual blocks, x2 ConvTranspose2d upsampler, tail."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*[TwoConvResidual(c) for _ in range(3)])
        self.up = nn.ConvTranspose2d(c, c, 4, 2, 1)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(F.relu(self.up(h + self.body(h))))


class SubPixel(nn.Module):
    def __init__(self, cin: int, cout: int, r: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * r * r, 3, padding=1)
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, x):
        return self.shuffle(self.conv(x))


FITTED: list[bool] = []


@pk.register_replacement("test.subpixel", overwrite=True)
def subpixel(modules, calib, scale=2):
    """ConvTranspose2d -> conv + PixelShuffle; with calibration, least-squares fit to the old outputs."""
    (convt,) = modules
    new = SubPixel(convt.in_channels, convt.out_channels, scale)
    FITTED.append(calib is not None)
    if calib is not None:
        x = torch.cat([a[0] for a in calib.inputs[calib.paths[0]]])
        y = torch.cat(calib.outputs[calib.paths[0]])
        target = F.pixel_unshuffle(y, scale)  # what the conv must produce
        cols = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, x.shape[1] * 9)
        cols = torch.cat([cols, torch.ones(len(cols), 1)], 1)
        rhs = target.flatten(2).transpose(1, 2).reshape(-1, target.shape[1])
        sol = torch.linalg.lstsq(cols, rhs).solution
        with torch.no_grad():
            new.conv.weight.copy_(sol[:-1].t().reshape_as(new.conv.weight))
            new.conv.bias.copy_(sol[-1])
    return [new]


@pk.register_replacement("test.fuse_pair", overwrite=True)
def fuse_pair(modules, calib):
    """Two sibling modules replaced jointly: the first becomes their composition, the second identity."""
    a, b = modules
    return [nn.Sequential(a, nn.ReLU(), b), nn.Identity()]


X = torch.randn(1, 3, 8, 8)
STEP = {"name": "test.subpixel", "paths": ["up"], "kwargs": {"scale": 2}}


def test_replacement_recorded_applied_and_replayed_on_load(tmp_path):
    torch.manual_seed(0)
    model = TinyEDSR()
    graph = pk.analyze(model, X)
    plan = pk.plan(model, graph, strategy="magnitude", target=pk.KeepBlocks(2), replace=STEP)
    assert plan.replaced == [pk.Replacement(name="test.subpixel", paths=["up"], kwargs={"scale": 2})]
    calib = [torch.randn(2, 3, 8, 8) for _ in range(2)]
    FITTED.clear()
    small = pk.apply(model, plan, calibration=calib)
    assert FITTED == [True] and isinstance(small.up, SubPixel) and isinstance(model.up, nn.ConvTranspose2d)
    assert len(small.body) == 2
    # the least-squares init imitates the removed upsampler (a 4x4 ConvT stride 2 is exactly a sub-pixel conv)
    reference = pk.remove_units(model, plan.removed)
    assert torch.allclose(small(X), reference(X), atol=1e-3)
    pk.save(small, plan, tmp_path / "ckpt")
    FITTED.clear()
    loaded = pk.load(tmp_path / "ckpt", build=TinyEDSR)
    assert FITTED == [False] and isinstance(loaded.up, SubPixel)
    assert torch.equal(loaded(X), small(X))


def test_replacement_then_width_pruning_narrows_it(tmp_path):
    torch.manual_seed(0)
    model = TinyEDSR(c=8)
    graph = pk.analyze(model, X)
    plan = pk.plan(model, graph, target=pk.ChannelRatio(0.5), replace=[STEP], channel_importance="l1")
    small = pk.apply(model, plan)
    assert isinstance(small.up, SubPixel) and small.up.conv.in_channels == 4
    assert small.up.conv.out_channels == 4 * 4  # whole PixelShuffle blocks went
    assert small(X).shape == model(X).shape
    pk.save(small, plan, tmp_path / "w")
    loaded = pk.load(tmp_path / "w", build=TinyEDSR)
    assert torch.equal(loaded(X), small(X))


def test_joint_sibling_replacement():
    model = TinyEDSR()
    plan = pk.plan(model, pk.analyze(model, X), target=pk.KeepBlocks(3),
                   replace={"name": "test.fuse_pair", "paths": ["up", "tail"]})
    small = pk.apply(model, plan)
    assert isinstance(small.tail, nn.Identity) and isinstance(small.up, nn.Sequential)


def test_replacement_paths_follow_unit_removals():
    @pk.register_replacement("test.identity", overwrite=True)
    def ident(modules, calib):
        return [nn.Identity() for _ in modules]

    model = TinyEDSR()
    base = pk.Plan.identity(model, X)
    plan = base.model_copy(update={"removed": ["body.0"],
                                   "replaced": [pk.Replacement(name="test.identity", paths=["body.2.conv2"])]})
    small = pk.apply(model, plan)
    assert len(small.body) == 2 and isinstance(small.body[1].conv2, nn.Identity)  # body.2 is now body.1
    assert isinstance(small.body[0].conv2, nn.Conv2d)
    gone = base.model_copy(update={"removed": ["body.2"],
                                   "replaced": [pk.Replacement(name="test.identity", paths=["body.2.conv2"])]})
    with pytest.raises(PlanMismatchError, match="which the plan removes"):
        pk.apply(model, gone)


def test_bad_replacements_are_named():
    model = TinyEDSR()
    graph = pk.analyze(model, X)
    with pytest.raises(ConfigError, match=r"replace\[0\]"):
        pk.plan(model, graph, target=pk.KeepBlocks(3), replace=[{"paths": ["up"]}])
    with pytest.raises(UnknownNameError, match="replacement 'nope'"):
        pk.plan(model, graph, target=pk.KeepBlocks(3), replace={"name": "nope", "paths": ["up"]})
    with pytest.raises(PlanMismatchError, match="no such submodule"):
        pk.plan(model, graph, target=pk.KeepBlocks(3), replace={"name": "test.subpixel", "paths": ["nowhere"]})
    REPLACEMENTS.register("test.wrong_count", lambda modules, calib: [], overwrite=True)
    with pytest.raises(ConfigError, match="one per path"):
        pk.plan(model, graph, target=pk.KeepBlocks(3), replace={"name": "test.wrong_count", "paths": ["up"]})


def test_load_fails_cleanly_when_replacement_is_unknown(tmp_path):
    model = TinyEDSR()
    plan = pk.plan(model, pk.analyze(model, X), target=pk.KeepBlocks(3), replace=STEP)
    pk.save(pk.apply(model, plan), plan, tmp_path / "c")
    text = (tmp_path / "c" / "plan.json").read_text().replace("test.subpixel", "test.gone")
    (tmp_path / "c" / "plan.json").write_text(text)
    with pytest.raises(UnknownNameError, match="test.gone"):
        pk.load(tmp_path / "c", build=TinyEDSR)


def test_latency_plan_starts_from_the_replaced_models_time():
    """With a replacement, the planner's estimates start from the replaced model's measured time, so
    a cost model that is exact gives estimates equal to the measurements from the first build on."""
    from prunekit import latency_plan as lp

    def cost(model):
        return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)) / 1e3

    class ExactCost:
        def layer_ms(self, layer, cin, cout):
            k = layer.module.kernel_size
            return cin * cout * k[0] * k[1] / 1e3

        def compare(self, dense, candidate):
            return cost(dense), cost(candidate), {}

    torch.manual_seed(0)
    model = TinyEDSR()
    graph = pk.analyze(model, X)
    plan = lp.plan_latency(model, graph, pk.LatencyRatio(0.8), pk.get_strategy("magnitude"), [X], None,
                           replaced=parse_replacements(STEP), costs=ExactCost(), cache=None)
    first = plan.latency.history[0]
    assert first["estimated_ratio"] == pytest.approx(first["measured_ratio"], rel=1e-9)
    assert plan.latency.kept <= 0.8 and plan.replaced[0].name == "test.subpixel"
