"""Tensor operations that TecoGAN-PyTorch's generator is defined by.

Their exact conventions (channel order of space-to-depth, pixel-unit backward warping with
`align_corners=True`, TF's legacy bicubic upsampler, reflect padding of the flow) decide whether
published weights reproduce published outputs, so each one is pinned down here and tested.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError, InputShapeError

DEGRADATIONS = ("BD", "BI")


def space_to_depth(x: torch.Tensor, s: int) -> torch.Tensor:
    """(N, C, sH, sW) -> (N, s*s*C, H, W) in TensorFlow's channel order.

    HR pixel (s*i+dy, s*j+dx) of channel c goes to channel (dy*s + dx)*C + c. This differs from
    `F.pixel_unshuffle` (c*s*s + dy*s + dx), whose order would scramble SRNet's `conv_in` weights.
    """
    n, c, hh, ww = x.shape
    if hh % s or ww % s:
        raise InputShapeError(f"space_to_depth: spatial size {hh}x{ww} is not a multiple of the scale {s}")
    h, w = hh // s, ww // s
    return x.reshape(n, c, h, s, w, s).permute(0, 3, 5, 1, 2, 4).reshape(n, s * s * c, h, w)


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `x` at `p + flow(p)` (flow in pixels, channel 0 = horizontal, 1 = vertical).

    Bilinear with border padding on an `align_corners=True` grid, as TecoGAN-PyTorch does.
    Sampling runs in at least fp32: a half-precision grid would misplace samples by ~W/4000 pixels.
    """
    n, _, h, w = x.shape
    if flow.shape[0] != n or flow.shape[1] != 2 or flow.shape[2:] != x.shape[2:]:
        raise InputShapeError(f"backward_warp: flow of shape {tuple(flow.shape)} does not fit image {tuple(x.shape)}")
    dtype = torch.promote_types(x.dtype, torch.float32)
    flow = flow.to(dtype)
    gx = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=dtype).view(1, 1, 1, w).expand(n, 1, h, w)
    gy = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=dtype).view(1, 1, h, 1).expand(n, 1, h, w)
    grid = torch.cat([gx, gy], 1)
    flow = torch.cat([flow[:, 0:1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], 1)
    grid = (grid + flow).permute(0, 2, 3, 1)
    out = F.grid_sample(x.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


def bicubic_taps(scale: int, a: float = -0.75) -> torch.Tensor:
    """Cubic-convolution weights (scale, 4) for phases t = d/scale, taps at offsets -1, 0, +1, +2."""
    t = torch.arange(scale, dtype=torch.float64) / scale
    taps = torch.stack(
        [
            a * t - 2 * a * t**2 + a * t**3,
            1 - (a + 3) * t**2 + (a + 2) * t**3,
            -a * t + (2 * a + 3) * t**2 - (a + 2) * t**3,
            a * t**2 - a * t**3,
        ],
        dim=1,
    )
    return taps.float()


class BicubicUpsampler(nn.Module):
    """TF1 legacy `resize_bicubic` (a = -0.75, top-left aligned, replicate borders), separable.

    Output pixel f*i + d = sum_k kernels[d, k] * in[clamp(i - 1 + k)], along H then along W. The
    taps live in the persistent buffer `kernels` because published BD checkpoints store them.
    """

    def __init__(self, scale: int, a: float = -0.75) -> None:
        super().__init__()
        if scale < 1:
            raise ConfigError(f"BicubicUpsampler: scale must be >= 1, got {scale}")
        self.scale = scale
        self.register_buffer("kernels", bicubic_taps(scale, a))

    def _along_h(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.scale
        padded = F.pad(x.reshape(n * c, 1, h, w), (0, 0, 1, 2), mode="replicate")
        weight = self.kernels.to(x.dtype).view(s, 1, 4, 1)
        out = F.conv2d(padded, weight)  # (n*c, s, h, w): phase d of every input row
        return out.permute(0, 2, 1, 3).reshape(n, c, h * s, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._along_h(x)
        return self._along_h(x.transpose(2, 3)).transpose(2, 3)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def bilinear_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """BI-mode 'U': half-pixel bilinear interpolation (what TecoGAN-PyTorch uses for BI)."""
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def get_upsampling_func(scale: int, degradation: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The 'U' of the skip connection, flow upsampling and the discriminator's conditional input.

    BD returns a `BicubicUpsampler` module (with the `kernels` buffer); BI returns a plain function.
    """
    if degradation == "BD":
        return BicubicUpsampler(scale)
    if degradation == "BI":
        return functools.partial(bilinear_upsample, scale=scale)
    raise ConfigError(f"degradation must be one of {DEGRADATIONS}, got {degradation!r}")


def pad_flow(flow: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Reflect-pad an FNet flow (size floored to a multiple of 8) back to h x w, bottom and right."""
    fh, fw = flow.shape[-2:]
    pad_h, pad_w = h - fh, w - fw
    if pad_h < 0 or pad_w < 0 or pad_h >= max(fh, 1) or pad_w >= max(fw, 1):
        raise InputShapeError(f"pad_flow: cannot reflect-pad a {fh}x{fw} flow to {h}x{w}")
    if pad_h == 0 and pad_w == 0:
        return flow
    return F.pad(flow, (0, pad_w, 0, pad_h), mode="reflect")
