"""Protocol rules of the TecoGAN video metrics on small constructed sequences whose values are known
by hand or computed independently (OpenCV / scikit-image / the lpips package called directly)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from prunekit.errors import ConfigError, DataError
from tecogan_plugin.metrics import VideoMetrics
from tecogan_plugin.metrics.protocol import crop_8x8_box

Y_SUM = 0.256788235294118 + 0.504129411764706 + 0.097905882352941  # Y change for +1 on R, G and B

H, W = 96, 128  # crop_8x8 -> 64 x 96 at (16, 16)
CROP = (slice(16, 80), slice(16, 112))


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB texture in [40, 200] (no clipping when offset by a few levels)."""
    rng = np.random.default_rng(seed)
    base = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    big = cv2.resize(base, (w + 16, h + 16), interpolation=cv2.INTER_CUBIC)
    return np.clip(40 + 160 * big, 40, 200).astype(np.uint8)


def sequence(n: int, h: int = H, w: int = W, shift: int = 0, seed: int = 0) -> np.ndarray:
    """n frames cut from one texture, moving `shift` px to the right per frame."""
    tex = texture(h + 8, w + 8 + shift * n, seed)
    return np.stack([tex[4 : 4 + h, shift * (n - i) : shift * (n - i) + w] for i in range(n)])


@pytest.mark.parametrize(
    "size, box",
    [
        ((576, 720), (544, 704, 16, 8)),  # calendar
        ((576, 704), (544, 672, 16, 16)),  # city
        ((480, 720), (448, 704, 16, 8)),  # foliage / walk
        ((536, 1280), (512, 1248, 12, 16)),  # ToS3
        ((720, 1280), (704, 1248, 8, 16)),  # REDS
    ],
)
def test_crop_8x8_matches_reference_table(size, box):
    assert crop_8x8_box(*size) == box


def test_crop_8x8_refuses_tiny_frames():
    with pytest.raises(DataError, match="too small"):
        crop_8x8_box(40, 720)


def test_constant_offset_gives_known_psnr_and_frame_counts():
    gt = sequence(9)
    pred = gt + np.uint8(3)
    with VideoMetrics(metrics=("psnr", "ssim", "tof"), tof_workers=0) as vm:
        seq = vm.update("a", pred, gt)
    expected = 20 * math.log10(255 / (3 * Y_SUM))
    assert seq.count("psnr") == 9 - 4 and seq.count("ssim") == 9 - 4 and seq.count("tof") == 9 - 5
    assert seq.frames["psnr"] == [2, 3, 4, 5, 6] and seq.frames["tof"] == [3, 4, 5, 6]
    assert seq.values["psnr"].dtype == np.float32
    np.testing.assert_array_equal(seq.values["psnr"], np.float32(expected))
    # A uniform offset leaves the structure: SSIM just below 1, and identical motion gives tOF ~ 0.
    assert np.all(seq.values["ssim"] > 0.99)
    assert np.all(seq.values["tof"] < 0.05)


def test_psnr_and_ssim_use_only_the_border_crop():
    gt = sequence(5)
    pred = gt.copy()
    pred[:, :16] = 0  # damage only the border that crop_8x8 removes
    pred[:, :, :16] = 0
    noisy = pred.copy()
    noisy[2, 40, 50, 0] = np.uint8(gt[2, 40, 50, 0] + 10)  # one pixel inside the crop, R only
    with VideoMetrics(metrics=("psnr", "ssim"), tof_workers=0) as vm:
        seq = vm.update("a", noisy, gt)
    n_pix = 64 * 96
    expected = 20 * math.log10(255 / math.sqrt((10 * 0.256788235294118) ** 2 / n_pix))
    assert seq.values["psnr"][0] == np.float32(expected)
    y = lambda im: im.astype(np.float64) @ np.array([0.256788235294118, 0.504129411764706, 0.097905882352941]) + 16
    yg, yp = y(gt[2][CROP]), y(noisy[2][CROP])
    assert seq.values["ssim"][0] == np.float32(structural_similarity(yg, yp, data_range=yp.max() - yp.min()))


def test_known_shift_gives_independent_farneback_difference():
    gt = sequence(7, shift=1)  # target moves 1 px per frame
    pred = np.repeat(gt[:1], 7, axis=0)  # output frozen on frame 0
    with VideoMetrics(metrics=("tof",), tof_workers=0) as vm:
        seq = vm.update("a", pred, gt)
    expected = []
    for i in range(3, 5):  # frames i > cut, i < N - cut
        g0, g1 = (cv2.cvtColor(gt[j], cv2.COLOR_RGB2GRAY) for j in (i - 1, i))
        p0, p1 = (cv2.cvtColor(pred[j], cv2.COLOR_RGB2GRAY) for j in (i - 1, i))
        fg = cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, 3, 15, 3, 5, 1.2, 0)[CROP]
        fp = cv2.calcOpticalFlowFarneback(p0, p1, None, 0.5, 3, 15, 3, 5, 1.2, 0)[CROP]
        expected.append(np.linalg.norm(fg - fp, axis=-1).mean())
    np.testing.assert_allclose(seq.values["tof"], expected, rtol=1e-6)
    assert seq.values["tof"] == pytest.approx([1.0, 1.0], abs=0.2)  # a 1 px motion the output missed


def test_tof_uses_full_frames_before_cropping_flows():
    """Motion that exists only in the border still changes the flow inside the crop (Farneback's
    15 px window reaches across), so cropping frames first would give a different value."""
    gt = sequence(6, shift=2)
    pred = gt.copy()
    pred[:, :, :12] = pred[:1, :, :12]  # freeze a strip inside the removed border only
    with VideoMetrics(metrics=("tof",), tof_workers=0) as vm:
        seq = vm.update("a", pred, gt)
    g0, g1 = (cv2.cvtColor(gt[j], cv2.COLOR_RGB2GRAY) for j in (2, 3))
    p0, p1 = (cv2.cvtColor(pred[j], cv2.COLOR_RGB2GRAY) for j in (2, 3))
    full = np.linalg.norm(
        cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, 3, 15, 3, 5, 1.2, 0)[CROP]
        - cv2.calcOpticalFlowFarneback(p0, p1, None, 0.5, 3, 15, 3, 5, 1.2, 0)[CROP],
        axis=-1,
    ).mean()
    assert seq.values["tof"][0] == pytest.approx(full, rel=1e-6)


def test_frame_average_and_sequence_average_differ_on_unequal_lengths():
    a_gt, b_gt = sequence(7, seed=1), sequence(10, seed=2)
    with VideoMetrics(metrics=("psnr",), tof_workers=0) as vm:
        vm.update("a", a_gt + np.uint8(2), a_gt)
        vm.update("b", b_gt + np.uint8(8), b_gt)
        report = vm.compute()
    pa, pb = (20 * math.log10(255 / (d * Y_SUM)) for d in (2, 8))
    assert report.count("psnr") == 3 + 6
    assert report.frame_avg("psnr") == pytest.approx((3 * pa + 6 * pb) / 9, abs=1e-5)
    assert report.sequence_avg("psnr") == pytest.approx((pa + pb) / 2, abs=1e-5)
    assert report.sequence("a").mean("psnr") == pytest.approx(pa, abs=1e-5)
    vm.reset()
    assert vm.compute().sequences == []


def test_means_are_float64_over_float32_sums_as_the_official_script():
    """Per-frame values and each sequence's sum stay float32; the means and both averages are float64.
    Each value below differs when the means are kept in float32."""
    from tecogan_plugin.metrics.report import MetricsReport, SequenceScores

    def scores(name, values):
        v = np.asarray(values, dtype=np.float32)
        return SequenceScores(name=name, n_frames=len(v) + 4, values={"psnr": v}, frames={"psnr": list(range(len(v)))})

    big, one, third = scores("big", [2.0**24]), scores("one", [1.0]), scores("third", [1.0, 0.0, 0.0])
    assert float(third.mean("psnr")) == 1 / 3  # float32 division: 0.3333333432674408
    report = MetricsReport(("psnr",), [big, one])
    assert float(report.frame_avg("psnr")) == 2.0**23 + 0.5  # float32 accumulation loses the 1: 2**23
    assert float(report.sequence_avg("psnr")) == 2.0**23 + 0.5
    # PSNR-like values: the float64 mean of the float32 sum (the float32 sum itself is kept)
    rng = np.random.default_rng(0)
    vals = (26 + rng.random(155)).astype(np.float32)
    seq = scores("calendar", vals)
    assert seq.mean("psnr") == np.float64(vals.sum()) / 155
    assert seq.mean("psnr") != float(vals.sum() / np.float32(155))
    assert MetricsReport(("psnr",), [seq]).to_dict()["frame_avg"]["psnr"] == np.float64(vals.sum()) / 155


def test_tensor_path_equals_png_path(tmp_path):
    from tecogan_plugin.metrics import evaluate_folders

    gen = torch.Generator().manual_seed(3)
    gt = torch.from_numpy(sequence(7)).permute(0, 3, 1, 2).float() / 255
    pred = gt + 0.03 * torch.randn(gt.shape, generator=gen)  # leaves [0,1] in places
    for name, seq in (("pred", pred), ("gt", gt)):
        folder = tmp_path / name / "clip"
        folder.mkdir(parents=True)
        u8 = np.clip(np.round(seq.permute(0, 2, 3, 1).numpy() * 255), 0, 255).astype(np.uint8)
        for i, frame in enumerate(u8):
            cv2.imwrite(str(folder / f"{i:04d}.png"), frame[:, :, ::-1])
    opts = dict(metrics=("psnr", "ssim", "tof"), tof_workers=0)
    files = evaluate_folders(tmp_path / "pred", tmp_path / "gt", **opts)
    with VideoMetrics(**opts) as vm:
        vm.update("clip", pred, gt)
        memory = vm.compute()
    for m in opts["metrics"]:
        np.testing.assert_array_equal(files.sequence("clip").values[m], memory.sequence("clip").values[m])


def test_worker_pool_gives_the_same_values_as_in_process():
    gt = sequence(11, shift=1)
    pred = np.clip(gt.astype(np.int16) + np.random.default_rng(0).integers(-6, 7, gt.shape), 0, 255).astype(np.uint8)
    results = []
    for workers in (0, 2):
        with VideoMetrics(metrics=("psnr", "ssim", "tof"), tof_workers=workers) as vm:
            results.append(vm.update("a", pred, gt).values)
    for m in results[0]:
        np.testing.assert_array_equal(results[0][m], results[1][m])


def test_bad_input_is_refused_or_cropped_as_documented():
    gt = sequence(8)
    with VideoMetrics(metrics=("psnr",), tof_workers=0) as vm:
        with pytest.raises(DataError, match="7 frames but target has 8"):
            vm.update("a", gt[:7], gt)
        with pytest.raises(DataError, match="frame"):
            vm.update("one", gt[:1], gt[:1])
        with pytest.raises(DataError, match="at most 16 px"):
            vm.update("lr", gt[:, :24, :32], gt)
        with pytest.raises(DataError, match="uint8"):
            vm.update("f", gt.astype(np.float32), gt)
        # A larger output (target side not a multiple of the scale) is cropped top-left.
        big = np.concatenate([gt, gt[:, :3]], axis=1)
        cropped = vm.update("big", big, gt).values["psnr"]
        assert np.all(np.isinf(cropped))
        with pytest.raises(DataError, match="already added"):
            vm.update("big", big, gt)



def test_bad_device_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        VideoMetrics(metrics=("psnr",), device="gpu0", tof_workers=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            VideoMetrics(metrics=("psnr",), device="cuda", tof_workers=0)

def test_five_frame_sequence_has_spatial_but_no_temporal_values():
    gt = sequence(5)
    with VideoMetrics(metrics=("psnr", "tof"), tof_workers=0) as vm:
        vm.update("short", gt + np.uint8(1), gt)
        vm.update("long", sequence(7) + np.uint8(1), sequence(7))
        report = vm.compute()
    short = report.sequence("short")
    assert short.count("psnr") == 1 and short.count("tof") == 0 and short.mean("tof") is None
    assert report.count("tof") == 2
    assert report.sequence_avg("tof") == pytest.approx(float(report.sequence("long").mean("tof")))
    assert any("short" in n for n in report.notes)


def test_worker_modules_do_not_import_torch():
    """Spawned tOF/PSNR/SSIM workers start in about a second only if their modules avoid torch."""
    import subprocess
    import sys

    code = "import sys, tecogan_plugin.metrics.frame_jobs; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_batched_torch_psnr_and_ssim_match_numpy_and_skimage():
    from tecogan_plugin.metrics.device_ops import psnr_y_torch, ssim_y_torch
    from tecogan_plugin.metrics.psnr import psnr_y
    from tecogan_plugin.metrics.ssim import ssim_y

    gt = sequence(3, 64, 96, shift=2)
    pred = np.clip(gt.astype(np.int16) + np.random.default_rng(1).integers(-9, 10, gt.shape), 0, 255).astype(np.uint8)
    t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2)
    np.testing.assert_allclose(psnr_y_torch(t(gt), t(pred)).numpy(), [psnr_y(g, p) for g, p in zip(gt, pred)], rtol=1e-12)
    np.testing.assert_allclose(ssim_y_torch(t(gt), t(pred)).numpy(), [ssim_y(g, p) for g, p in zip(gt, pred)], rtol=1e-9)


@pytest.mark.cuda
def test_cuda_path_matches_cpu_path():
    gt = sequence(8, shift=1)
    pred = np.clip(gt.astype(np.int16) + np.random.default_rng(2).integers(-9, 10, gt.shape), 0, 255).astype(np.uint8)
    out = {}
    for device in ("cpu", "cuda"):
        with VideoMetrics(metrics=("psnr", "ssim", "tof"), device=device, tof_workers=0) as vm:
            out[device] = vm.update("a", pred, gt).values
    np.testing.assert_allclose(out["cuda"]["psnr"], out["cpu"]["psnr"], atol=1e-5)  # float32 storage: 1 ulp
    np.testing.assert_allclose(out["cuda"]["ssim"], out["cpu"]["ssim"], atol=1e-7)
    np.testing.assert_array_equal(out["cuda"]["tof"], out["cpu"]["tof"])
    # float tensors already on the GPU are quantised there like PNG saving
    cuda_in = torch.from_numpy(pred).permute(0, 3, 1, 2).cuda().float() / 255
    with VideoMetrics(metrics=("psnr",), device="cuda", tof_workers=0) as vm:
        np.testing.assert_array_equal(vm.update("a", cuda_in, gt).values["psnr"], out["cuda"]["psnr"])
