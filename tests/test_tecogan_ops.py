"""Conventions of the TecoGAN helper ops, checked against hand-built examples and direct formulas."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError, InputShapeError
from tecogan_plugin.ops import BicubicUpsampler, backward_warp, get_upsampling_func, pad_flow, space_to_depth


# reference tap table for x4 (rows d = 0..3, taps at offsets -1, 0, +1, +2)
TAPS_X4 = [
    [0.0, 1.0, 0.0, 0.0],
    [-0.10547, 0.87891, 0.26172, -0.03516],
    [-0.09375, 0.59375, 0.59375, -0.09375],
    [-0.03516, 0.26172, 0.87891, -0.10547],
]


def test_space_to_depth_uses_tf_channel_order():
    s, c, h, w = 2, 3, 2, 3
    x = torch.arange(c * s * h * s * w, dtype=torch.float32).view(1, c, s * h, s * w)
    out = space_to_depth(x, s)
    assert out.shape == (1, s * s * c, h, w)
    for dy in range(s):
        for dx in range(s):
            for ch in range(c):
                for i in range(h):
                    for j in range(w):
                        assert out[0, (dy * s + dx) * c + ch, i, j] == x[0, ch, s * i + dy, s * j + dx]
    assert not torch.equal(out, F.pixel_unshuffle(x, s))


def test_space_to_depth_rejects_indivisible_size():
    with pytest.raises(InputShapeError, match="multiple"):
        space_to_depth(torch.zeros(1, 3, 9, 8), 4)


def test_backward_warp_integer_flow_shifts_by_that_many_pixels():
    x = torch.rand(2, 3, 12, 16)
    flow = torch.zeros(2, 2, 12, 16)
    flow[:, 0] = 3.0  # sample 3 px to the right
    flow[:, 1] = -2.0  # and 2 px up
    out = backward_warp(x, flow)
    # interior: out(y, x) = in(y - 2, x + 3)
    torch.testing.assert_close(out[:, :, 2:, :13], x[:, :, :10, 3:], atol=1e-5, rtol=0)
    # border padding: positions sampled outside the image take the nearest edge pixel
    torch.testing.assert_close(out[:, :, 2:, 13:], x[:, :, :10, 15:16].expand(-1, -1, -1, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, :, :2, :13], x[:, :, 0:1, 3:].expand(-1, -1, 2, -1), atol=1e-5, rtol=0)


def test_backward_warp_half_pixel_flow_is_bilinear():
    x = torch.rand(1, 1, 6, 8)
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0] = 0.5
    out = backward_warp(x, flow)
    torch.testing.assert_close(out[..., :7], 0.5 * (x[..., :7] + x[..., 1:]), atol=1e-5, rtol=0)


def test_backward_warp_rejects_mismatched_flow():
    with pytest.raises(InputShapeError, match="flow"):
        backward_warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 9))


@pytest.mark.parametrize("scale", [4, 2])
def test_bicubic_taps_match_reference_table(scale):
    up = BicubicUpsampler(scale)
    expected = torch.tensor(TAPS_X4)[:: 4 // scale]
    assert up.kernels.shape == (scale, 4)
    torch.testing.assert_close(up.kernels, expected, atol=6e-6, rtol=0)
    assert "kernels" in up.state_dict()


def _bicubic_direct(x: torch.Tensor, taps: list[list[float]], s: int) -> torch.Tensor:
    """Output pixel s*i+d = sum_k taps[d][k] * in[clamp(i-1+k)], along H then W (loop form)."""

    def along_rows(img: torch.Tensor) -> torch.Tensor:
        h = img.shape[0]
        rows = []
        for i in range(h):
            for d in range(s):
                rows.append(sum(taps[d][k] * img[min(max(i - 1 + k, 0), h - 1)] for k in range(4)))
        return torch.stack(rows)

    return along_rows(along_rows(x).T).T


def test_bicubic_upsampler_matches_direct_definition():
    x = torch.rand(1, 1, 5, 7, dtype=torch.float64)
    up = BicubicUpsampler(4).double()
    expected = _bicubic_direct(x[0, 0], up.kernels.tolist(), 4)
    torch.testing.assert_close(up(x)[0, 0], expected, atol=1e-12, rtol=0)
    # it is neither torch's bicubic (half-pixel centres) nor nearest: the first output row is the input row
    torch.testing.assert_close(up(x)[0, 0, ::4, ::4], x[0, 0])
    assert not torch.allclose(up(x), F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False))


def test_upsampling_funcs_per_degradation():
    assert isinstance(get_upsampling_func(4, "BD"), nn.Module)
    bi = get_upsampling_func(2, "BI")
    assert not isinstance(bi, nn.Module)
    x = torch.rand(1, 3, 5, 6)
    torch.testing.assert_close(bi(x), F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    with pytest.raises(ConfigError, match="degradation"):
        get_upsampling_func(4, "XX")


def test_pad_flow_reflects_bottom_and_right():
    flow = torch.rand(1, 2, 16, 24)
    out = pad_flow(flow, 21, 27)
    assert out.shape == (1, 2, 21, 27)
    torch.testing.assert_close(out[..., :16, :24], flow)
    # reflect (edge not repeated): padded row 16+k equals row 14-k, column 24+k equals column 22-k
    for k in range(5):
        torch.testing.assert_close(out[..., 16 + k, :24], flow[..., 14 - k, :])
    for k in range(3):
        torch.testing.assert_close(out[..., :16, 24 + k], flow[..., :, 22 - k])
    assert pad_flow(flow, 16, 24) is flow
    with pytest.raises(InputShapeError):
        pad_flow(flow, 15, 24)
