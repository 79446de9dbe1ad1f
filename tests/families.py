"""Tiny members of the architecture families discovery, width pruning and profiling must handle
without model-specific code: post-activation residuals (ResNet, RegNet), post-norm and pre-norm
transformers (nn.MultiheadAttention and a Swin-style window attention with a relative-position bias
table), grouped convolutions, a recurrent video network concatenating flow-warped features
(BasicVSR-like) and a forward that torch.jit tracing cannot follow. Each takes small widths so a
forward pass costs microseconds. ESRGAN's RRDB and RCAN live in zoo.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """torchvision ResNet's BasicBlock without downsample: relu(x + bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class ResNetLike(nn.Module):
    """Stem, two post-activation blocks, pooled linear classifier."""

    def __init__(self, c: int = 8, nb: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(*[BasicBlock(c) for _ in range(nb)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer1(self.stem(x))).flatten(1))


class PostNormEncoder(nn.Module):
    """nn.TransformerEncoderLayer (post-norm: norm(x + f(x))) stack between two linear layers."""

    def __init__(self, dim: int = 16, heads: int = 2, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(4, dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True) for _ in range(depth)
        )
        self.head = nn.Linear(dim, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class MHABlock(nn.Module):
    """Pre-norm block around nn.MultiheadAttention (which returns a tuple) and an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class PreNormMHA(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(4, dim)
        self.blocks = nn.Sequential(*[MHABlock(dim, heads) for _ in range(depth)])
        self.head = nn.Linear(dim, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(tokens)))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, hidden, 1), nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class RegNetBlock(nn.Module):
    """RegNetY's block: 1x1 -> grouped 3x3 (group width `gw`) -> SE -> 1x1, then relu(x + f(x))."""

    def __init__(self, c: int, width: int, gw: int) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.b = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width // gw, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.se = SqueezeExcite(width, 4)
        self.c = nn.Sequential(nn.Conv2d(width, c, 1, bias=False), nn.BatchNorm2d(c))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.c(self.se(self.b(self.a(x)))))


class RegNetLike(nn.Module):
    def __init__(self, c: int = 16, width: int = 16, gw: int = 4, nb: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[RegNetBlock(c, width, gw) for _ in range(nb)])
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


class GroupedToy(nn.Module):
    """conv -> grouped conv (2 groups of 4) -> conv: plain torch-pruning handles it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(8, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WindowAttention(nn.Module):
    """Swin-style attention over one window: a qkv Linear split into heads, plus a learned bias
    per head indexed from a relative-position table."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = (attn + bias.permute(2, 0, 1).unsqueeze(0)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SwinIRLike(nn.Module):
    """Conv features -> tokens (one window over the 8x8 image) -> Swin blocks -> conv + PixelShuffle x2."""

    def __init__(self, dim: int = 16, heads: int = 2, window: int = 8, depth: int = 2) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, dim, 3, padding=1)
        self.blocks = nn.Sequential(*[SwinBlock(dim, heads, window) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.upsample = nn.Sequential(nn.Conv2d(dim, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        b, c, h, w = feat.shape
        tokens = self.norm(self.blocks(feat.flatten(2).transpose(1, 2)))
        return self.upsample(tokens.transpose(1, 2).reshape(b, c, h, w) + feat)


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def warp(feat: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp `feat` by `flow` (pixels, channel 0 = x) with bilinear grid sampling."""
    _, _, h, w = feat.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=feat.dtype), torch.arange(w, dtype=feat.dtype), indexing="ij")
    gx = 2 * (xs + flow[:, 0]) / max(w - 1, 1) - 1
    gy = 2 * (ys + flow[:, 1]) / max(h - 1, 1) - 1
    return F.grid_sample(feat, torch.stack([gx, gy], dim=-1), align_corners=True)


class BasicVSRLike(nn.Module):
    """Recurrent video SR: each frame's features are concatenated with the previous frame's
    propagated features, warped by a flow predicted from the two frames; x2 PixelShuffle output.
    The propagated state starts as `new_zeros(.., mid_channels, ..)`, as in BasicVSR."""

    def __init__(self, mid_channels: int = 8, nb: int = 2) -> None:
        super().__init__()
        self.mid_channels = mid_channels
        self.flow = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))
        self.fuse = nn.Conv2d(3 + mid_channels, mid_channels, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(mid_channels) for _ in range(nb)])
        self.upsample = nn.Sequential(nn.Conv2d(mid_channels, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, _, h, w = frames.shape
        feat = frames.new_zeros(b, self.mid_channels, h, w)
        outs = []
        for i in range(t):
            frame = frames[:, i]
            if i > 0:
                feat = warp(feat, self.flow(torch.cat([frame, frames[:, i - 1]], 1)))
            feat = self.blocks(self.fuse(torch.cat([frame, feat], 1)))
            base = F.interpolate(frame, scale_factor=2, mode="bilinear", align_corners=False)
            outs.append(self.upsample(feat) + base)
        return torch.stack(outs, 1)


class Untraceable(nn.Module):
    """Residual trunk whose forward indexes a dict by `x.size(0) - 1`: fine when run, a KeyError
    under torch.jit tracing (sizes are tensors there)."""

    def __init__(self, c: int = 8, nb: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(c) for _ in range(nb)])
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = {x.size(0) - 1: 1.0}[0]
        return self.tail(self.blocks(self.head(x))) * scale


def image(size: int = 8, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size)


def tokens(batch: int = 2, n: int = 6) -> torch.Tensor:
    return torch.randn(batch, n, 4)


def video(frames: int = 3, size: int = 8) -> torch.Tensor:
    return torch.rand(1, frames, 3, size, size)
