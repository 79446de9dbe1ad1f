"""The sub-pixel head that replaces SRNet's ConvTranspose tail: shapes, the least-squares fit (exact
when the target is itself a head, close on a real tail), the fast path, bad inputs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, InputShapeError
from tecogan_plugin.fast import make_fast
from tecogan_plugin.nets import FRNet, frnet_example_inputs
from tecogan_plugin.upsampler import (SubPixelHead, fit_head, has_subpixel_head, replace_tail,
                                      subpixel_head_replacement, tail_shape)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


def _step_inputs(n: int, size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [t.shape for t in frnet_example_inputs((size, size))]
    return [tuple(torch.rand(s, generator=gen) for s in shapes) for _ in range(n)]


@pytest.mark.parametrize("scale,kernel", [(4, 3), (2, 5), (4, 1)])
def test_head_shapes_and_exact_recovery(scale, kernel):
    """A target made by a head of the same shape is recovered to float precision (no ridge)."""
    torch.manual_seed(0)
    truth, head = SubPixelHead(6, 3, scale, kernel), SubPixelHead(6, 3, scale, kernel)
    feats = [torch.randn(2, 6, 9, 11) for _ in range(3)]
    with torch.no_grad():
        targets = [truth(f) for f in feats]
    assert targets[0].shape == (2, 3, 9 * scale, 11 * scale)
    stats = fit_head(head, feats, targets, ridge=0.0)
    assert stats["rows"] == 3 * 2 * 9 * 11 and stats["relative_residual"] < 1e-5
    assert torch.allclose(head.conv.weight, truth.conv.weight, atol=1e-5)
    assert torch.allclose(head.conv.bias, truth.conv.bias, atol=1e-5)


def test_replacement_builds_same_architecture_without_calibration():
    model = FRNet(nf=8, nb=2, scale=4)
    assert tail_shape(model.srnet.conv_up, model.srnet.conv_out) == (8, 3, 4)
    head, ident = subpixel_head_replacement([model.srnet.conv_up, model.srnet.conv_out], None, kernel=5)
    assert isinstance(head, SubPixelHead) and isinstance(ident, nn.Identity)
    assert head.conv.weight.shape == (48, 8, 5, 5)
    x2 = FRNet(nf=8, nb=2, scale=2)
    head2, _ = subpixel_head_replacement([x2.srnet.conv_up, x2.srnet.conv_out], None)
    assert head2.conv.weight.shape == (12, 8, 3, 3)


def test_bad_modules_and_options_are_config_errors():
    model = FRNet(nf=8, nb=1)
    with pytest.raises(ConfigError, match="ConvTranspose2d"):
        subpixel_head_replacement([model.srnet.conv_out, model.srnet.conv_out], None)
    with pytest.raises(ConfigError, match="two modules"):
        subpixel_head_replacement([model.srnet.conv_up], None)
    with pytest.raises(ConfigError, match="kernel"):
        subpixel_head_replacement([model.srnet.conv_up, model.srnet.conv_out], None, kernel=4)
    head = SubPixelHead(8, 3, 4, 3)
    with pytest.raises(InputShapeError, match="target must be"):
        fit_head(head, [torch.zeros(1, 8, 4, 4)], [torch.zeros(1, 3, 8, 8)])
    with pytest.raises(ConfigError, match="no calibration"):
        fit_head(head, [], [])


def test_fit_imitates_the_original_tail_on_held_out_steps():
    """On a model whose tail is not linear, the fitted head is far closer to the original output than
    an unfitted head, and the k5 fit is at least as close as k3 (it sees the tail's whole support)."""
    torch.manual_seed(0)
    dense = FRNet(nf=8, nb=2).eval()
    with torch.no_grad():  # a tail with larger weights, so its ReLUs matter
        for m in dense.srnet.conv_up:
            if isinstance(m, nn.ConvTranspose2d):
                m.weight.mul_(3.0)
    calib, held_out = _step_inputs(6, seed=1), _step_inputs(3, seed=2)
    with torch.no_grad():
        reference = [dense(*x) for x in held_out]
    scores = {}
    for kernel in (3, 5):
        model = copy.deepcopy(dense)
        stats = replace_tail(model, kernel=kernel, calibration=calib)
        assert has_subpixel_head(model) and stats["rows"] == 6 * 16 * 16
        with torch.no_grad():
            scores[kernel] = min(_psnr(model(*x), r) for x, r in zip(held_out, reference))
    unfitted = copy.deepcopy(dense)
    replace_tail(unfitted, kernel=3)
    with torch.no_grad():
        base = min(_psnr(unfitted(*x), r) for x, r in zip(held_out, reference))
    assert scores[3] > base + 10
    assert scores[5] >= scores[3] - 0.5


def test_fast_path_runs_a_model_with_the_head():
    model = FRNet(nf=8, nb=2).eval()
    replace_tail(model, kernel=3, calibration=_step_inputs(2))
    x = _step_inputs(1, seed=3)[0]
    with torch.no_grad():
        plain = model(*x)
    for subpixel in (False, True):
        fast = make_fast(model, subpixel=subpixel)
        assert torch.allclose(fast(*x), plain, atol=1e-4)
    frames = [torch.rand(3, 16, 16) for _ in range(7)]
    out = list(make_fast(model).infer_sequence(frames))
    assert len(out) == 7 and out[0].shape == (64, 64, 3)
