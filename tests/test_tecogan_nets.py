"""FRNet / discriminator structure (published key layout, parameter counts) and inference semantics."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import InputShapeError
from prunekit.models import build_model
from tecogan_plugin.nets import FrameStepper, FRNet, SpatioTemporalDiscriminator, infer_sequence, to_uint8
from tecogan_plugin.ops import backward_warp, space_to_depth


def published_generator_shapes(nb: int, scale: int, degradation: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a TecoGAN-PyTorch generator state_dict, written out from the reference tables."""
    shapes: dict[str, tuple[int, ...]] = {}
    if degradation == "BD":
        shapes["upsample_func.kernels"] = (scale, 4)
    fnet = [("encoder1", 6, 32), ("encoder2", 32, 64), ("encoder3", 64, 128),
            ("decoder1", 128, 256), ("decoder2", 256, 128), ("decoder3", 128, 64)]
    for name, cin, cout in fnet:
        shapes[f"fnet.{name}.0.weight"] = (cout, cin, 3, 3)
        shapes[f"fnet.{name}.0.bias"] = (cout,)
        shapes[f"fnet.{name}.2.weight"] = (cout, cout, 3, 3)
        shapes[f"fnet.{name}.2.bias"] = (cout,)
    shapes.update({"fnet.flow.0.weight": (32, 64, 3, 3), "fnet.flow.0.bias": (32,),
                   "fnet.flow.2.weight": (2, 32, 3, 3), "fnet.flow.2.bias": (2,)})
    shapes["srnet.conv_in.0.weight"] = (64, (scale * scale + 1) * 3, 3, 3)
    shapes["srnet.conv_in.0.bias"] = (64,)
    for i in range(nb):
        for j in (0, 2):
            shapes[f"srnet.resblocks.{i}.conv.{j}.weight"] = (64, 64, 3, 3)
            shapes[f"srnet.resblocks.{i}.conv.{j}.bias"] = (64,)
    for j in ((0, 2) if scale == 4 else (0,)):
        shapes[f"srnet.conv_up.{j}.weight"] = (64, 64, 3, 3)
        shapes[f"srnet.conv_up.{j}.bias"] = (64,)
    shapes["srnet.conv_out.weight"] = (3, 64, 3, 3)
    shapes["srnet.conv_out.bias"] = (3,)
    if degradation == "BD":
        shapes["srnet.upsample_func.kernels"] = (scale, 4)
    return shapes


@pytest.mark.parametrize(
    "nb,total_x4,total_x2",
    [(10, 2589093, 2531429), (9, 2515237, 2457573), (7, 2367525, 2309861),
     (5, 2219813, 2162149), (3, 2072101, 2014437), (1, 1924389, 1866725)],
)
def test_parameter_counts_match_reference_table(nb, total_x4, total_x2):
    m4 = FRNet(nb=nb)
    assert sum(p.numel() for p in m4.parameters()) == total_x4
    assert sum(p.numel() for p in m4.fnet.parameters()) == 1745506
    assert sum(p.numel() for p in m4.srnet.parameters()) == 105027 + 73856 * nb
    assert sum(p.numel() for p in FRNet(nb=nb, scale=2).parameters()) == total_x2


@pytest.mark.parametrize("scale,degradation,count", [(4, "BD", 78), (4, "BI", 76), (2, "BD", 76), (2, "BI", 74)])
def test_published_state_dict_loads_strictly(scale, degradation, count):
    shapes = published_generator_shapes(10, scale, degradation)
    assert len(shapes) == count
    gen = torch.Generator().manual_seed(1)
    sd = {k: torch.randn(v, generator=gen) for k, v in shapes.items() if not k.endswith("kernels")}
    model = FRNet(scale=scale, degradation=degradation)
    if degradation == "BD":
        kernels = model.upsample_func.kernels.clone()
        sd["upsample_func.kernels"] = kernels
        sd["srnet.upsample_func.kernels"] = kernels
    model.load_state_dict(sd, strict=True)
    got = model.state_dict()
    assert {k: tuple(v.shape) for k, v in got.items()} == shapes
    assert torch.equal(got["srnet.resblocks.3.conv.0.weight"], sd["srnet.resblocks.3.conv.0.weight"])
    assert list(got)[0] == ("upsample_func.kernels" if degradation == "BD" else "fnet.encoder1.0.weight")


def test_bd_upsampler_is_one_shared_module_and_bi_is_a_function():
    bd = FRNet(nb=1)
    assert isinstance(bd.upsample_func, nn.Module) and bd.upsample_func is bd.srnet.upsample_func
    bi = FRNet(nb=1, degradation="BI")
    assert not isinstance(bi.upsample_func, nn.Module) and not list(bi.buffers())


def test_step_output_size_and_flow_padding_for_odd_sizes():
    model = FRNet(nb=1).eval()
    lr = torch.rand(1, 3, 21, 30)  # not multiples of 8: the flow is floored then reflect-padded back
    with torch.no_grad():
        out = model(lr, torch.rand_like(lr), torch.rand(1, 3, 84, 120))
    assert out.shape == (1, 3, 84, 120)
    with pytest.raises(InputShapeError, match="hr_prev"):
        model(lr, lr, torch.rand(1, 3, 80, 120))


def test_step_feeds_space_to_depth_of_warped_hr_prev_to_srnet():
    model = FRNet(nb=1).eval()
    nn.init.zeros_(model.fnet.flow[2].weight)
    nn.init.constant_(model.fnet.flow[2].bias, 0.5)  # constant flow tanh(0.5)*24 px in both directions
    lr, lr_prev, hr_prev = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 64, 64)
    hr_flow = torch.full((1, 2, 64, 64), 4 * 24 * float(np.tanh(0.5)))
    with torch.no_grad():
        expected = model.srnet(lr, space_to_depth(backward_warp(hr_prev, hr_flow), 4))
        torch.testing.assert_close(model(lr, lr_prev, hr_prev), expected, atol=1e-5, rtol=0)


def test_forward_sequence_matches_recurrent_steps_and_backpropagates_into_fnet():
    model = FRNet(nb=2)
    lr = torch.rand(2, 3, 3, 16, 16)
    out = model.forward_sequence(lr)
    assert out["hr"].shape == (2, 3, 3, 64, 64)
    assert out["hr_flow"].shape == (2, 2, 2, 64, 64)
    assert out["lr_flow"].shape == (4, 2, 16, 16)
    assert torch.equal(out["lr_prev"][1], lr[0, 1]) and torch.equal(out["lr_curr"][1], lr[0, 2])
    with torch.no_grad():
        hr0 = model.srnet(lr[:, 0], torch.zeros(2, 48, 16, 16))
        hr1 = model.step(lr[:, 1], lr[:, 0], hr0)
    torch.testing.assert_close(out["hr"][:, 0], hr0)
    torch.testing.assert_close(out["hr"][:, 1], hr1, atol=1e-5, rtol=0)
    out["hr"][:, -1].mean().backward()
    assert model.fnet.encoder1[0].weight.grad.abs().sum() > 0
    with pytest.raises(InputShapeError, match="multiple of 8"):
        model.forward_sequence(torch.rand(1, 2, 3, 12, 16))


def test_to_uint8_rounds_and_clips():
    x = torch.tensor([[-0.2, 0.0], [0.5, 1.5 / 255], [1.3, 0.999]]).view(1, 3, 1, 2)  # (N, C, H, W)
    img = to_uint8(x)
    assert img.shape == (1, 2, 3) and img.dtype == np.uint8
    assert img[0].tolist() == [[0, 128, 255], [0, 2, 255]]  # HWC; 127.5 and 1.5 round half to even


def _frames(n: int, h: int = 16, w: int = 20) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_infer_sequence_reflect_warm_up():
    model = FRNet(nb=1).eval()
    frames = _frames(7)
    out = list(model.infer_sequence(iter(frames)))
    assert len(out) == len(frames) and out[0].shape == (64, 80, 3) and out[0].dtype == np.uint8
    stepper = FrameStepper(model)
    padded = [frames[i] for i in (5, 4, 3, 2, 1)] + frames
    expected = [to_uint8(stepper.step(f)) for f in padded][5:]
    for got, exp in zip(out, expected):
        np.testing.assert_array_equal(got, exp)
    # without warm-up the first frame differs (it would start from the zero state)
    cold = FrameStepper(model)
    assert not np.array_equal(to_uint8(cold.step(frames[0])), out[0])
    replicate = list(infer_sequence(model, frames, pad_mode="replicate"))
    assert len(replicate) == 7 and not np.array_equal(replicate[0], out[0])


def test_infer_sequence_needs_more_frames_than_the_warm_up():
    with pytest.raises(InputShapeError, match="more than 5"):
        list(FRNet(nb=1).infer_sequence(_frames(5)))


def test_stepper_feeds_back_the_unclipped_float_output():
    model = FRNet(nb=1).eval()
    nn.init.constant_(model.srnet.conv_out.bias, 2.0)  # pushes outputs above 1
    frames = [torch.rand(3, 16, 16), torch.rand(3, 16, 16)]
    stepper = FrameStepper(model)
    hr0 = stepper.step(frames[0])
    assert hr0.max() > 1.0
    hr1 = stepper.step(frames[1])
    with torch.no_grad():
        expected = model(frames[1][None], frames[0][None], hr0)
        clipped = model(frames[1][None], frames[0][None], hr0.clamp(0, 1))
    torch.testing.assert_close(hr1, expected)
    assert not torch.allclose(hr1, clipped)


def test_discriminator_parameters_and_keys():
    d = SpatioTemporalDiscriminator()
    assert sum(p.numel() for p in d.parameters()) == 819457
    keys = set(d.state_dict())
    assert {"conv_in.0.weight", "discriminator_block.block1.0.weight", "discriminator_block.block4.1.running_var",
            "dense.weight", "upsample_func.kernels"} <= keys
    assert "upsample_func.kernels" not in SpatioTemporalDiscriminator(degradation="BI").state_dict()


def test_discriminator_clip_inputs_layout():
    d = SpatioTemporalDiscriminator(spatial_size=32)
    n, t = 1, 7  # ping-pong of 4 frames: 2 clips
    hr, lr = torch.rand(n, t, 3, 32, 32), torch.rand(n, t, 3, 8, 8)
    hr_flow = torch.randn(n, t - 1, 2, 32, 32)
    clips = d.clip_inputs(hr, lr, hr_flow)
    assert clips.shape == (2, 27, 32, 32)
    # original frames, channel-major: channel c*3 + f of clip k is frame 3k+f, channel c
    for k in range(2):
        for c in range(3):
            for f in range(3):
                assert torch.equal(clips[k, c * 3 + f], hr[0, 3 * k + f, c])
    bi = d.upsample_func(lr[0])
    torch.testing.assert_close(clips[1, 18 + 1 * 3 + 2], bi[5, 1])
    # warped triplet of clip 0: prev warped by hr_flow[0], middle by zero flow, next by the mirrored flow
    crop = (slice(4, 28), slice(4, 28))  # int(32*0.75) = 24 kept, 4 px zero border
    prev_w = backward_warp(hr[:, 0], hr_flow[:, 0])
    next_w = backward_warp(hr[:, 2], hr_flow.flip(1)[:, 1])
    torch.testing.assert_close(clips[0, 9 + 0 * 3 + 0][crop], prev_w[0, 0][crop])
    torch.testing.assert_close(clips[0, 9 + 2 * 3 + 2][crop], next_w[0, 2][crop])
    torch.testing.assert_close(clips[0, 9 + 1 * 3 + 1][crop], hr[0, 1, 1][crop], atol=1e-5, rtol=0)
    assert clips[0, 9:18, :4].abs().sum() == 0 and clips[0, 9:18, :, 28:].abs().sum() == 0
    logit, feats = d(clips)
    assert logit.shape == (2, 1) and len(feats) == 4 and feats[-1].shape == (2, 256, 2, 2)


def test_discriminator_without_pingpong_uses_fnet_forward_flow():
    d = SpatioTemporalDiscriminator(spatial_size=32, degradation="BI")
    g = FRNet(nb=1, degradation="BI")
    hr, lr = torch.rand(1, 3, 3, 32, 32), torch.rand(1, 3, 3, 8, 8)
    clips = d.clip_inputs(hr, lr, torch.zeros(1, 2, 2, 32, 32), fnet=g.fnet, pingpong=False)
    with torch.no_grad():
        fw = 4 * F.interpolate(g.fnet(lr[:, 1], lr[:, 2]), scale_factor=4, mode="bilinear", align_corners=False)
    expected = backward_warp(hr[:, 2], fw)
    torch.testing.assert_close(clips[0, 9 + 2][4:28, 4:28], expected[0, 0, 4:28, 4:28], atol=1e-5, rtol=0)


def test_registered_factories():
    model = build_model("tecogan.frnet", nb=3, degradation="BI")
    assert len(model.srnet.resblocks) == 3
    from prunekit.registry import MODELS

    inputs = MODELS.get("tecogan.frnet").example_inputs(lr_size=(16, 24), batch=2)
    assert [tuple(x.shape) for x in inputs] == [(2, 3, 16, 24), (2, 3, 16, 24), (2, 3, 64, 96)]
    with torch.no_grad():
        assert model(*inputs).shape == (2, 3, 64, 96)
    assert isinstance(build_model("tecogan.discriminator", spatial_size=64), SpatioTemporalDiscriminator)
    assert build_model("tecogan.srnet", nb=2, scale=2).conv_in[0].in_channels == 15
    from prunekit.registry import LAYOUTS

    assert LAYOUTS.get("tecogan.frnet").protect == ["fnet"]
    assert "fnet" not in LAYOUTS.get("tecogan.frnet.open_fnet").channel_ignore


def test_layout_offers_the_ten_srnet_blocks():
    import prunekit as pk
    from prunekit.registry import LAYOUTS

    model = FRNet()
    graph = pk.analyze(model, build_model_inputs(), LAYOUTS.get("tecogan.frnet"))
    blocks = graph.leaves()
    assert [u.path for u in blocks] == [f"srnet.resblocks.{i}" for i in range(10)]
    assert all(u.params == 73856 for u in blocks)
    conv_macs = 2 * 64 * 64 * 9 * 16 * 16  # two 64->64 3x3 convs per LR pixel (+ the residual add, if counted)
    assert conv_macs <= blocks[0].flops <= 1.01 * conv_macs
    assert 0.05 < blocks[0].flops_share < 0.1 and graph.total_params == 2589093


def build_model_inputs():
    from prunekit.registry import MODELS

    return MODELS.get("tecogan.frnet").example_inputs(lr_size=(16, 16))


def test_pruned_frnet_reloads_from_the_plan_alone(tmp_path):
    import prunekit as pk
    from tecogan_plugin.layout import frnet_layout

    model = FRNet().eval()
    inputs = build_model_inputs()
    graph = pk.analyze(model, inputs, frnet_layout())
    plan = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(3))
    small = pk.apply(model, plan)
    pk.save(small, plan, tmp_path)
    loaded = pk.load(tmp_path, build="tecogan.frnet")
    assert list(loaded.state_dict()) == list(FRNet(nb=3).state_dict())  # a native 3-block FRNet
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs), small(*inputs))


@pytest.mark.parametrize("open_fnet", [False, True])
def test_width_pruning_respects_the_layout(open_fnet):
    import prunekit as pk
    from tecogan_plugin.layout import frnet_layout

    model = FRNet(nb=1).eval()
    inputs = build_model_inputs()
    graph = pk.analyze(model, inputs, frnet_layout(open_fnet=open_fnet))
    plan = pk.plan(model, graph, target=pk.ChannelRatio(0.25))
    small = pk.apply(model, plan)
    assert small.srnet.conv_in[0].out_channels == 48 and small.srnet.resblocks[0].conv[0].in_channels == 48
    assert small.srnet.conv_out.out_channels == 3 and small.fnet.flow[2].out_channels == 2
    fnet_params = sum(p.numel() for p in small.fnet.parameters())
    assert (fnet_params < 1745506) == open_fnet
    with torch.no_grad():
        assert small(*inputs).shape == (1, 3, 64, 64)
