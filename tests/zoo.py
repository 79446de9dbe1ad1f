"""Tiny members of common super-resolution / transformer families, for discovery and surgery tests.

Each builder takes small widths so a forward pass on an 8x8 image costs microseconds. The module
names follow the public architectures (EDSR `body`, RCAN residual groups, ESRGAN `RRDB`), because
tests assert exact unit paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ConvResidual(nn.Module):
    """x + conv3(x): the smallest removable unit."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class TwoConvResidual(nn.Module):
    """x + conv2(relu(conv1(x))): a residual block with an inner channel group."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class Upsampler(nn.Sequential):
    """conv -> PixelShuffle(2)."""

    def __init__(self, nf: int) -> None:
        super().__init__(conv3(nf, nf * 4), nn.PixelShuffle(2))


class EDSRBlock(nn.Module):
    def __init__(self, nf: int, res_scale: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3(nf, nf), nn.ReLU(inplace=True), conv3(nf, nf))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """head -> body (blocks + conv) with a long skip -> PixelShuffle tail."""

    def __init__(self, nf: int = 8, nb: int = 4, res_scale: float = 0.1) -> None:
        super().__init__()
        self.head = conv3(3, nf)
        self.body = nn.Sequential(*[EDSRBlock(nf, res_scale) for _ in range(nb)], conv3(nf, nf))
        self.tail = nn.Sequential(Upsampler(nf), conv3(nf, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.tail(self.body(x) + x)


class ChannelAttention(nn.Module):
    def __init__(self, nf: int, reduction: int = 4) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(nf, nf // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(nf // reduction, nf, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.squeeze(x)


class RCAB(nn.Module):
    def __init__(self, nf: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3(nf, nf), nn.ReLU(inplace=True), conv3(nf, nf), ChannelAttention(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    def __init__(self, nf: int, n_blocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[RCAB(nf) for _ in range(n_blocks)], conv3(nf, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        res += x
        return res


class RCAN(nn.Module):
    """Residual groups of channel-attention blocks: two levels of units."""

    def __init__(self, nf: int = 8, n_groups: int = 2, n_blocks: int = 2) -> None:
        super().__init__()
        self.head = conv3(3, nf)
        self.body = nn.Sequential(*[ResidualGroup(nf, n_blocks) for _ in range(n_groups)], conv3(nf, nf))
        self.tail = nn.Sequential(Upsampler(nf), conv3(nf, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        res = self.body(x)
        res += x
        return self.tail(res)


class SRResNetBlock(nn.Module):
    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act = conv3(nf, nf), nn.BatchNorm2d(nf), nn.PReLU()
        self.conv2, self.bn2 = conv3(nf, nf), nn.BatchNorm2d(nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """BatchNorm blocks in a plain nn.Sequential: the Sequential itself is a (container) unit."""

    def __init__(self, nf: int = 8, nb: int = 3) -> None:
        super().__init__()
        self.conv_in = nn.Sequential(nn.Conv2d(3, nf, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*[SRResNetBlock(nf) for _ in range(nb)])
        self.conv_mid = nn.Sequential(conv3(nf, nf), nn.BatchNorm2d(nf))
        self.upsample = nn.Sequential(Upsampler(nf), nn.PReLU())
        self.conv_out = nn.Conv2d(nf, 3, 9, padding=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_in(x)
        return self.conv_out(self.upsample(self.conv_mid(self.blocks(feat)) + feat))


class DenseBlock(nn.Module):
    """ESRGAN's residual dense block (3 convs here): x + 0.2 * conv(cat(x, earlier features))."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.conv1 = conv3(nf, gc)
        self.conv2 = conv3(nf + gc, gc)
        self.conv3 = conv3(nf + 2 * gc, nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.leaky_relu(self.conv1(x), 0.2)
        x2 = F.leaky_relu(self.conv2(torch.cat([x, x1], 1)), 0.2)
        return x + 0.2 * self.conv3(torch.cat([x, x1, x2], 1))


class RRDB(nn.Module):
    """Three dense blocks with an outer 0.2-scaled skip: out = x + 0.2 * rdb3(rdb2(rdb1(x))).

    With zero weights the dense blocks return x, so the RRDB returns 1.2 x; discovery finds it from
    its computation (an add of its input and a scaled branch), not from zero replay."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = DenseBlock(nf, gc), DenseBlock(nf, gc), DenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    def __init__(self, nf: int = 8, gc: int = 4, nb: int = 2) -> None:
        super().__init__()
        self.conv_first = conv3(3, nf)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = conv3(nf, nf)
        self.upsample = Upsampler(nf)
        self.conv_last = conv3(nf, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        return self.conv_last(F.leaky_relu(self.upsample(feat), 0.2))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) / (d // self.heads) ** 0.5
        att = att.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """Pre-norm block whose forward takes an extra key-padding `mask`."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, depth: int = 3, vocab_out: int = 5) -> None:
        super().__init__()
        self.embed = nn.Linear(4, dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(depth))
        self.head = nn.Linear(dim, vocab_out)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.head(x)


class PlainCNN(nn.Module):
    """No skip connections anywhere: no units."""

    def __init__(self, nf: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(conv3(3, nf), nn.ReLU(), conv3(nf, nf), nn.ReLU(), conv3(nf, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SRNetBlock(nn.Module):
    """TecoGAN-style residual block: conv(x) + x with conv = [Conv 64->64, ReLU, Conv 64->64]."""

    def __init__(self, nf: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv3(nf, nf), nn.ReLU(inplace=True), conv3(nf, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


class SRNetStack(nn.Module):
    """A local stand-in for TecoGAN's SRNet trunk (`resblocks` of 64-channel blocks)."""

    def __init__(self, nf: int = 64, nb: int = 10) -> None:
        super().__init__()
        self.conv_in = nn.Sequential(conv3(3, nf), nn.ReLU(inplace=True))
        self.resblocks = nn.Sequential(*[SRNetBlock(nf) for _ in range(nb)])
        self.conv_out = conv3(nf, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.resblocks(self.conv_in(x)))


def image(size: int = 8, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size)


def transformer_inputs(batch: int = 2, tokens: int = 6) -> dict[str, torch.Tensor]:
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[:, -2:] = False
    return {"tokens": torch.randn(batch, tokens, 4), "mask": mask}
