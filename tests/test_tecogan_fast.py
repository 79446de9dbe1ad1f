"""The fast inference path must reproduce the plain FRNet (fp32: max abs difference <= 1e-4)."""

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from tecogan_plugin.fast import SubPixelConvTranspose2d, half_precision_error, make_fast, rewrite_conv_transpose
from tecogan_plugin.nets import FRNet


@pytest.mark.parametrize("cin,cout,h,w", [(64, 64, 5, 7), (3, 5, 1, 4), (8, 2, 6, 6)])
def test_subpixel_conv_equals_conv_transpose(cin, cout, h, w):
    convt = nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1)
    x = torch.randn(2, cin, h, w)
    with torch.no_grad():
        torch.testing.assert_close(SubPixelConvTranspose2d(convt)(x), convt(x), atol=1e-5, rtol=0)


def test_subpixel_conv_keeps_device_and_dtype():
    """The rewritten conv lives where the ConvT did (a CPU conv inside a CUDA model would fail at run time)."""
    convt = nn.ConvTranspose2d(4, 4, 3, 2, 1, output_padding=1).double()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    sub = SubPixelConvTranspose2d(convt)
    assert sub.conv.weight.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(sub(x), convt(x), atol=1e-12, rtol=0)


def test_subpixel_rejects_other_transposed_convs():
    with pytest.raises(ConfigError, match="sub-pixel"):
        SubPixelConvTranspose2d(nn.ConvTranspose2d(4, 4, 4, 2, 1))


def _inputs(h=20, w=28, s=4):
    return torch.rand(1, 3, h, w), torch.rand(1, 3, h, w), torch.rand(1, 3, s * h, s * w)


@pytest.mark.parametrize("subpixel", [True, False])
@pytest.mark.parametrize(
    "options",
    [dict(nb=10), dict(nb=3), dict(nb=1, nf=40), dict(nb=2, scale=2, degradation="BI")],
    ids=["dense", "pruned-blocks", "pruned-width", "x2-BI"],
)
def test_fast_equals_plain(options, subpixel):
    model = FRNet(**options).eval()
    fast = make_fast(model, subpixel=subpixel)
    n_convt = sum(isinstance(m, nn.ConvTranspose2d) for m in fast.modules())
    assert n_convt == (0 if subpixel else int(np.log2(model.scale)))
    x = _inputs(s=model.scale)
    with torch.no_grad():
        expected = model(*x)
    got = fast(*x)
    assert (got - expected).abs().max().item() <= 1e-4
    assert any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())  # original untouched


def test_fast_streaming_matches_plain_streaming():
    model = FRNet(nb=2).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (8, 16, 3), dtype=np.uint8) for _ in range(4)]
    plain = list(model.infer_sequence(frames, num_pad_front=2))
    fast = list(make_fast(model, subpixel=True).infer_sequence(frames, num_pad_front=2))
    assert len(fast) == 4
    for a, b in zip(plain, fast):  # float differences of ~1e-6 may flip a rounding at a .5 boundary
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_rewrite_counts_and_half_needs_cuda():
    model = FRNet(nb=1)
    assert rewrite_conv_transpose(model) == 2
    with pytest.raises(ConfigError, match="CUDA"):
        make_fast(FRNet(nb=1), half=True)
    with pytest.raises(ConfigError, match="cuda_graph=True needs the model on a CUDA device"):
        make_fast(FRNet(nb=1), cuda_graph=True)


@pytest.mark.cuda
def test_cuda_graph_replay_equals_eager_and_recaptures_per_shape():
    torch.manual_seed(0)
    model = FRNet(nb=2).cuda().eval()
    eager, graphed = make_fast(model, cuda_graph=False), make_fast(model)
    assert graphed._graphed is not None  # on by default on CUDA
    for h, w in [(16, 24), (16, 24), (24, 16)]:
        x = (torch.rand(1, 3, h, w, device="cuda"), torch.rand(1, 3, h, w, device="cuda"),
             torch.rand(1, 3, 4 * h, 4 * w, device="cuda"))
        first, second = graphed(*x), graphed(*x)
        assert first.data_ptr() != second.data_ptr()  # outputs are copies, not the graph's static buffer
        torch.testing.assert_close(first, eager(*x), atol=1e-5, rtol=0)
    assert len(graphed._graphed.graphs) == 2
    frames = [np.random.default_rng(i).integers(0, 256, (16, 24, 3), dtype=np.uint8) for i in range(4)]
    streamed = list(graphed.infer_sequence(frames, num_pad_front=2))
    for a, b in zip(model.infer_sequence(frames, num_pad_front=2), streamed):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.cuda
def test_half_precision_error_is_small_on_cuda():
    model = FRNet(nb=2).cuda().eval()
    err = half_precision_error(model, torch.rand(4, 3, 32, 32))
    assert 0 < err["max_abs"] < 5e-2
