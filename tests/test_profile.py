import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import profile
from prunekit.errors import ConfigError, InputShapeError

from zoo import ConvResidual


def test_conv_flops_match_formula():
    conv = nn.Conv2d(3, 8, 3, padding=1, stride=2)
    x = torch.randn(2, 3, 10, 12)
    # MACs: N * Cout * Hout * Wout * Cin * k * k (bias not counted)
    assert profile.flops(conv, x) == 2 * 8 * 5 * 6 * 3 * 3 * 3


def test_grouped_conv_flops_match_formula():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    x = torch.randn(1, 8, 6, 6)
    assert profile.flops(conv, x) == 1 * 8 * 6 * 6 * (8 // 4) * 9


def test_conv_transpose_counted_at_input_or_output_resolution():
    convt = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
    x = torch.randn(1, 4, 5, 7)
    per_pixel = 4 * 6 * 3 * 3
    assert profile.flops(convt, x) == per_pixel * 5 * 7
    assert profile.flops(convt, x, conv_transpose="output") == per_pixel * 10 * 14


def test_bicubic_bilinear_and_grid_sample_counted_per_output_tap():
    class Up(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            grid = torch.zeros(x.shape[0], 3, 5, 2)
            return (
                F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False),
                F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False),
                F.grid_sample(x, grid, mode="bilinear", align_corners=False),
                F.grid_sample(x, grid, mode="nearest", align_corners=False),
            )

    x = torch.randn(1, 3, 4, 4)
    report = profile.flop_report(Up(), x)
    assert report.by_operator["upsample_bicubic2d"] == 16 * 3 * 8 * 8
    assert report.by_operator["upsample_bilinear2d"] == 4 * 3 * 12 * 12
    assert report.by_operator["grid_sampler"] == 4 * 3 * 3 * 5 + 1 * 3 * 3 * 5
    assert report.unsupported == {}


def test_residual_add_counted_and_pixel_shuffle_free():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = ConvResidual(4)
            self.shuffle = nn.PixelShuffle(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.shuffle(self.block(x))

    x = torch.randn(1, 4, 6, 6)
    report = profile.flop_report(Net(), x)
    conv = 4 * 6 * 6 * 4 * 9
    add = 4 * 6 * 6
    assert report.by_operator["add"] == add
    assert report.total == conv + add
    assert report.by_module["block"] == conv + add
    assert report.by_module["block.conv"] == conv
    assert report.by_module["shuffle"] == 0
    assert report.unsupported == {}


def test_unsupported_ops_reported_and_logged(caplog):
    class Cumsummer(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(x, dim=1)

    with caplog.at_level(logging.WARNING, logger="prunekit.profile"):
        report = profile.flop_report(Cumsummer(), torch.randn(1, 3, 2, 2))
    assert report.unsupported == {"aten::cumsum": 1}
    assert "aten::cumsum" in caplog.text


def test_dict_inputs_and_module_names():
    class TwoIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(2, 2, 1)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.a(x) * y

    x, y = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    by_dict = profile.flops_by_module(TwoIn(), {"y": y, "x": x})
    by_tuple = profile.flops_by_module(TwoIn(), (x, y))
    assert by_dict == by_tuple
    assert by_dict["a"] == 2 * 2 * 9
    assert by_dict[""] == 2 * 2 * 9 + 2 * 9


def test_flops_restore_train_mode_and_keep_bn_stats():
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
    net.train()
    net[1].eval()
    before = net[1].running_mean.clone()
    profile.flops(net, torch.randn(2, 3, 4, 4) + 5)
    assert net.training and not net[1].training and net[0].training
    assert torch.equal(net[1].running_mean, before)


def test_params_counts():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), ConvResidual(4))
    counts = profile.params_by_module(net)
    assert counts["0"] == 3 * 4 * 9 + 4
    assert counts["1"] == counts["1.conv"] == 4 * 4 * 9 + 4
    assert counts[""] == profile.count_params(net) == counts["0"] + counts["1"]


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(InputShapeError, match="example_inputs"):
        profile.flops(nn.Conv2d(1, 1, 1), "not a tensor")
    with pytest.raises(InputShapeError, match="fails on the example inputs"):
        profile.flops(nn.Conv2d(3, 1, 1), torch.randn(1, 5, 4, 4))
    with pytest.raises(ConfigError, match="conv_transpose"):
        profile.flops(nn.Conv2d(1, 1, 1), torch.randn(1, 1, 2, 2), conv_transpose="middle")


def test_latency_stats_are_ordered():
    net = nn.Conv2d(3, 3, 3, padding=1)
    stats = profile.latency(net, torch.randn(1, 3, 16, 16), warmup=1, repeats=5)
    assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= stats["max_ms"]
    assert stats["repeats"] == 5 and stats["device"] == "cpu"
    with pytest.raises(ConfigError):
        profile.latency(net, torch.randn(1, 3, 4, 4), repeats=0)


@pytest.mark.cuda
def test_latency_on_cuda_copy_leaves_model_on_cpu():
    net = nn.Conv2d(3, 3, 3, padding=1)
    stats = profile.latency(net, torch.randn(1, 3, 16, 16), repeats=3, device="cuda")
    assert stats["device"].startswith("cuda")
    assert next(net.parameters()).device.type == "cpu"


def test_shared_module_reported_under_every_path():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.inner = nn.Sequential(self.conv)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    by_module = profile.flops_by_module(Shared(), torch.randn(1, 2, 3, 3))
    assert by_module["conv"] == by_module["inner.0"] == 2 * 2 * 9


class TinyViT(nn.Module):
    """Patch embedding, pre-norm blocks with qkv-Linear attention through scaled_dot_product_attention
    (or nn.MultiheadAttention), a per-token head."""

    def __init__(self, dim: int = 32, heads: int = 4, depth: int = 2, mha: bool = False) -> None:
        super().__init__()
        self.heads, self.mha = heads, mha
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            block = nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "norm2": nn.LayerNorm(dim),
                "fc1": nn.Linear(dim, 4 * dim), "fc2": nn.Linear(4 * dim, dim),
            })
            if mha:
                block["attn"] = nn.MultiheadAttention(dim, heads, batch_first=True)
            else:
                block["qkv"], block["proj"] = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.blocks.append(block)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        b, n, d = x.shape
        for blk in self.blocks:
            h = blk["norm1"](x)
            if self.mha:
                a = blk["attn"](h, h, h, need_weights=False)[0]
            else:
                q, k, v = blk["qkv"](h).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
                a = blk["proj"](F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
            x = x + a
            x = x + blk["fc2"](F.gelu(blk["fc1"](blk["norm2"](x))))
        return self.head(x)


@pytest.mark.parametrize("mha", [False, True])
def test_small_vit_counts_within_two_percent_of_a_hand_count(mha):
    """Hand count of the multiply-adds: patch conv, per block q/k/v and output projections,
    Q K^T and A V, the MLP, the head (96% of the total); then the conventions' small remainder:
    LayerNorm 5 per element, residual adds and softmax 1 per element."""
    dim, heads, depth, n = 32, 4, 2, 64  # 32x32 image, 4x4 patches -> 64 tokens
    model = TinyViT(dim, heads, depth, mha).eval()
    macs = n * dim * 3 * 16  # patch embedding
    macs += depth * (n * dim * 3 * dim + 2 * n * n * dim + n * dim * dim + 2 * n * dim * 4 * dim)
    macs += n * dim * 10
    rest = depth * (2 * 5 * n * dim + 2 * n * dim + heads * n * n)
    report = profile.flop_report(model, torch.randn(1, 3, 32, 32))
    assert report.unsupported == {}
    assert macs <= report.total <= 1.04 * macs
    assert report.total == macs + rest


def test_softmax_and_pooling_handles():
    class Pools(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return torch.softmax(x, dim=1), F.avg_pool2d(x, 2), F.adaptive_avg_pool2d(x, 1)

    x = torch.randn(1, 3, 4, 4)
    report = profile.flop_report(Pools(), x)
    assert report.by_operator == {"softmax": 48, "avg_pool2d": 4 * 12, "adaptive_avg_pool2d": 48}
    assert report.unsupported == {}


def test_deform_conv2d_handle():
    ops = pytest.importorskip("torchvision.ops")
    conv = ops.DeformConv2d(4, 6, 3, padding=1)
    x, offset = torch.randn(1, 4, 5, 5), torch.zeros(1, 2 * 9, 5, 5)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
            return self.conv(x, offset)

    report = profile.flop_report(Net(), (x, offset))
    assert report.unsupported == {}
    assert report.total == 6 * 4 * 9 * 25 + 4 * 4 * 9 * 25  # convolution + 4 bilinear taps per sample


def test_hook_fallback_counts_layers_and_names_what_it_misses(caplog):
    class Untraceable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.norm = nn.BatchNorm2d(4)
            self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.norm(self.conv(x)) * {x.size(0) - 1: 1.0}[0]
            t = y.flatten(2).transpose(1, 2)
            return self.attn(t, t, t)[0]

    x = torch.randn(1, 3, 5, 5)
    with caplog.at_level(logging.WARNING, logger="prunekit.profile"):
        report = profile.flop_report(Untraceable(), x)
    assert report.method == "hooks" and "KeyError" in caplog.text
    assert report.by_module["conv"] == 4 * 25 * 3 * 9 and report.by_module["norm"] == 2 * 4 * 25
    n, e = 25, 4
    assert report.by_module["attn"] == 4 * n * e * e + 2 * n * n * e + 2 * n * n
    assert report.total == sum(report.by_module[k] for k in ("conv", "norm", "attn"))
    assert any("forward()" in u for u in report.uncounted)
