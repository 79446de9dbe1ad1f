"""Degradations, PNG frames, test-set readers and the built-in synthetic set."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from prunekit.errors import DataError
from tecogan_plugin.data.degrade import bd_downsample, bd_train_pair, bi_downsample, gaussian_kernel
from tecogan_plugin.data.frames import list_frames, read_frame, read_sequence, write_frame
from tecogan_plugin.data.readers import open_folder, open_reds, open_test_set, reds_split
from tecogan_plugin.data.synthetic import PARTS, ensure_builtin, generate, load_manifest


# ---------------------------------------------------------------- degradations

def test_kernel_taps_match_reference_values():
    k = gaussian_kernel(1.5)
    assert k.shape == (9, 9)
    ref = [0.00761, 0.03608, 0.10959, 0.21345, 0.26656, 0.21345, 0.10959, 0.03608, 0.00761]
    row = k.sum(dim=0)  # marginal of the separable kernel = 1-D taps
    assert torch.allclose(row, torch.tensor(ref, dtype=torch.float64), atol=5e-6)
    assert torch.allclose(k, torch.outer(row, row), atol=1e-12)
    assert math.isclose(float(k.sum()), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize("scale,hr,lr_pad,lr_train", [(4, 136, 34, 32), (2, 136, 68, 64), (4, 30, 8, 6)])
def test_bd_output_sizes(scale, hr, lr_pad, lr_train):
    x = torch.rand(1, 2, 3, hr, hr)
    assert bd_downsample(x, scale, pad=True).shape == (1, 2, 3, lr_pad, lr_pad)
    assert bd_downsample(x, scale, pad=False).shape == (1, 2, 3, lr_train, lr_train)


def test_bd_train_pair_sizes_and_alignment():
    gt = torch.zeros(1, 3, 3, 136, 136)
    # a delta at GT-centre pixel (4*5, 4*7) must land on LR pixel (5, 7) with the kernel's centre tap
    gt[0, 1, 2, 4 + 20, 4 + 28] = 1.0
    lr, gt_c = bd_train_pair(gt)
    assert lr.shape == (1, 3, 3, 32, 32) and gt_c.shape == (1, 3, 3, 128, 128)
    assert gt_c[0, 1, 2, 20, 28] == 1.0
    k = gaussian_kernel(1.5)
    assert torch.isclose(lr[0, 1, 2, 5, 7], k[4, 4].float())
    assert lr[0, 1, 2].argmax() == 5 * 32 + 7
    assert lr[0, 1, :2].abs().max() == 0  # channels do not mix
    x2, _ = bd_train_pair(gt, scale=2)
    assert x2.shape[-1] == 64


def test_bd_test_path_alignment_and_reflect_padding():
    hr = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    hr[0, 0, 8, 12] = 1.0
    lr = bd_downsample(hr, 4, pad=True)
    k = gaussian_kernel(1.5)
    assert lr.shape == (1, 1, 4, 4)
    assert torch.isclose(lr[0, 0, 2, 3], k[4, 4])  # LR (2,3) centred on HR (8,12)
    # a delta at HR (0, 1) is mirrored without repeating the edge: padded index -1 -> HR 1,
    # so LR (0,0) sees it at offsets +1 and -1 in x: taps k[4,5] + k[4,3]
    hr2 = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    hr2[0, 0, 0, 1] = 1.0
    lr2 = bd_downsample(hr2, 4, pad=True)
    assert torch.isclose(lr2[0, 0, 0, 0], k[4, 5] + k[4, 3])
    # constant images stay constant (weights sum to 1, reflect padding keeps the value)
    assert torch.allclose(bd_downsample(torch.full((1, 3, 20, 24), 0.3), 4), torch.tensor(0.3))


def test_bd_equals_reference_2d_convolution():
    # the reference: one 9x9 conv per channel (block-diagonal weight), stride s, no padding
    x = torch.rand(2, 3, 3, 40, 44, dtype=torch.float64)
    k = gaussian_kernel(1.5)
    ref = torch.nn.functional.conv2d(x.reshape(6, 3, 40, 44), k.expand(3, 1, 9, 9), stride=4, groups=3)
    assert torch.allclose(bd_downsample(x, 4, pad=False), ref.reshape(2, 3, 3, 8, 9), atol=1e-13)


def test_bd_accepts_uint8_and_rejects_bad_shapes():
    x = torch.full((1, 3, 16, 16), 255, dtype=torch.uint8)
    assert torch.allclose(bd_downsample(x), torch.tensor(1.0))
    with pytest.raises(Exception, match="expected"):
        bd_downsample(torch.rand(3, 16, 16))


def _matlab_bicubic_1d(signal: np.ndarray, scale: int) -> np.ndarray:
    """Independent loop implementation of imresize's antialiased bicubic along one axis."""
    n = len(signal)
    s = 1.0 / scale
    out = []

    def cubic(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x**3 - 2.5 * x**2 + 1
        if x < 2:
            return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
        return 0.0

    for j in range(1, n // scale + 1):
        u = j / s + 0.5 * (1 - 1 / s)
        num, den = 0.0, 0.0
        for p in range(int(math.floor(u - 2 / s)) - 1, int(math.ceil(u + 2 / s)) + 2):
            w = s * cubic(s * (u - p))
            q = p
            while q < 1 or q > n:  # symmetric mirror, edge repeated
                q = 1 - q if q < 1 else 2 * n + 1 - q
            num += w * signal[q - 1]
            den += w
        out.append(num / den)
    return np.array(out)


@pytest.mark.parametrize("scale", [2, 4])
def test_bi_matches_independent_matlab_definition(scale):
    rng = np.random.default_rng(1)
    img = rng.random((12, 16))
    ref = np.stack([_matlab_bicubic_1d(r, scale) for r in img])  # along W
    ref = np.stack([_matlab_bicubic_1d(c, scale) for c in ref.T]).T  # then along H
    got = bi_downsample(torch.from_numpy(img)[None, None], scale)[0, 0].numpy()
    assert got.shape == (12 // scale, 16 // scale)
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_bi_known_values_and_modcrop():
    # x2 on a ramp: away from the borders the symmetric weights reproduce the value at the sample
    # point, output j (0-based) sits between input pixels 2j and 2j+1 -> 2j + 0.5
    ramp = torch.arange(32, dtype=torch.float64).repeat(4, 1)[None, None]
    out = bi_downsample(ramp, 2)[0, 0, 0]
    np.testing.assert_allclose(out[3:13].numpy(), 2 * np.arange(3, 13) + 0.5, atol=1e-12)
    assert abs(out[0] - 0.5) > 1e-3  # the mirrored border does pull the first sample
    assert bi_downsample(torch.rand(1, 3, 2, 18, 23), 4).shape == (1, 3, 2, 4, 5)


# ---------------------------------------------------------------- frames

def _png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def test_list_frames_official_order_and_ignored_files(tmp_path):
    for name in ["frame10.png", "frame9.png", "f_0001_x2.png", "IB0005.png", "notes.txt", "b.PNG", "a.jpg"]:
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in list_frames(tmp_path)]
    assert names == ["frame9.png", "frame10.png", "f_0001_x2.png"]  # keys 9, 10, 12


def test_list_frames_rejects_png_without_digits(tmp_path):
    (tmp_path / "cover.png").write_bytes(b"")
    with pytest.raises(DataError, match="cover.png"):
        list_frames(tmp_path)


def test_write_read_roundtrip_is_rgb(tmp_path):
    img = np.zeros((5, 7, 3), np.uint8)
    img[..., 0] = 200  # red
    write_frame(tmp_path / "a" / "0001.png", img)
    back = read_frame(tmp_path / "a" / "0001.png")
    np.testing.assert_array_equal(back, img)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["0001.png"]  # no temp file left


@pytest.mark.parametrize("kind", ["gray", "rgba", "gray16", "rgb16", "palette"])
def test_read_frame_converts_with_warning(tmp_path, kind):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    path = tmp_path / "0000.png"
    if kind == "gray":
        _png(path, rgb[..., 0])
        expect = np.repeat(rgb[..., :1], 3, 2)
    elif kind == "rgba":
        _png(path, np.concatenate([rgb[..., ::-1], rgb[..., :1]], 2))
        expect = rgb
    elif kind == "gray16":
        _png(path, rgb[..., 0].astype(np.uint16) * 257 + 3)
        expect = np.repeat(rgb[..., :1], 3, 2)
    elif kind == "rgb16":
        _png(path, rgb[..., ::-1].astype(np.uint16) * 256 + 255)
        expect = rgb
    else:
        from PIL import Image

        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
        expect = np.asarray(Image.open(path).convert("RGB"))
    with pytest.warns(UserWarning, match=r"0000\.png.*(replicated|dropped|16-bit|palette)"):
        out = read_frame(path)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, expect)


def test_read_frame_plain_rgb_has_no_warning(tmp_path):
    path = _png(tmp_path / "0.png", np.zeros((4, 4, 3), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_frame(path)


def test_truncated_and_garbage_png_name_the_file(tmp_path):
    good = _png(tmp_path / "s" / "0001.png", np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    data = good.read_bytes()
    (tmp_path / "s" / "0002.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "s" / "0003.png").write_bytes(b"hello, not an image")
    with pytest.raises(DataError, match=r"0002\.png.*truncated"):
        read_frame(tmp_path / "s" / "0002.png")
    with pytest.raises(DataError, match=r"0003\.png.*not a PNG"):
        read_frame(tmp_path / "s" / "0003.png")
    with pytest.raises(DataError, match=r"0002\.png"):
        read_sequence(tmp_path / "s")


# ---------------------------------------------------------------- readers

def _make_set(root: Path, seqs=("a", "b"), frames=7, hw=(32, 40), lr_folder="Gaussian4xLR", lr_hw=None):
    rng = np.random.default_rng(0)
    h, w = hw
    lh, lw = lr_hw or (h // 4, w // 4)
    for s in seqs:
        for i in range(frames):
            _png(root / "GT" / s / f"im{i + 1}.png", rng.integers(0, 255, (h, w, 3), np.uint8))
            if lr_folder:
                _png(root / lr_folder / s / f"im{i + 1}.png", rng.integers(0, 255, (lh, lw, 3), np.uint8))
    return root


def test_open_test_set_reads_gt_and_lr(tmp_path):
    seqs = open_test_set(_make_set(tmp_path), "BD")
    assert [s.name for s in seqs] == ["a", "b"]
    s = seqs[0]
    assert s.gt.shape == (7, 32, 40, 3) and s.lr.shape == (7, 8, 10, 3) and s.lr.dtype == np.uint8
    np.testing.assert_array_equal(s.gt[0], read_frame(tmp_path / "GT" / "a" / "im1.png"))
    assert s.lr_tensor().shape == (7, 3, 8, 10)


def test_bd_lr_generated_when_folder_absent(tmp_path):
    _make_set(tmp_path, lr_folder=None, hw=(30, 41))
    s = open_test_set(tmp_path, "BD", sequences=["b"])[0]
    assert s.lr_paths is None
    assert isinstance(s.lr, torch.Tensor) and s.lr.shape == (7, 3, 8, 11)
    expect = bd_downsample(s.gt_tensor()[None], 4)[0]
    assert torch.allclose(s.lr, expect)


def test_bi_requires_lr_folder(tmp_path):
    _make_set(tmp_path, lr_folder=None)
    with pytest.raises(DataError, match="Bicubic4xLR"):
        open_test_set(tmp_path, "BI")


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="nope"):
        open_test_set(tmp_path / "nope")
    with pytest.raises(DataError, match="nope"):
        open_folder(tmp_path / "nope")


def test_empty_sequence(tmp_path):
    _make_set(tmp_path)
    (tmp_path / "GT" / "c").mkdir()
    (tmp_path / "GT" / "c" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"GT/c.*empty"):
        open_test_set(tmp_path)


def test_frame_count_mismatch(tmp_path):
    _make_set(tmp_path)
    (tmp_path / "Gaussian4xLR" / "b" / "im7.png").unlink()
    with pytest.raises(DataError, match=r"Gaussian4xLR/b.*6 LR frames but 7"):
        open_test_set(tmp_path)


def test_sizes_not_in_scale_ratio(tmp_path):
    _make_set(tmp_path, lr_hw=(8, 12))
    with pytest.raises(DataError, match=r"im1\.png.*not 1/4"):
        open_test_set(tmp_path)


def test_mixed_frame_sizes(tmp_path):
    _make_set(tmp_path)
    _png(tmp_path / "GT" / "a" / "im3.png", np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(DataError, match=r"im3\.png.*differs"):
        open_test_set(tmp_path)


def test_truncated_png_found_when_opening(tmp_path):
    _make_set(tmp_path)
    p = tmp_path / "GT" / "b" / "im4.png"
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"b/im4\.png.*truncated"):
        open_test_set(tmp_path)


def test_non_image_files_are_ignored(tmp_path):
    _make_set(tmp_path)
    (tmp_path / "GT" / "a" / "Thumbs.db").write_bytes(b"\x00\x01")
    (tmp_path / "GT" / "a" / "IB_preview1.png").write_bytes(b"junk")
    assert len(open_test_set(tmp_path)[0]) == 7


def test_sequence_too_short_for_warmup(tmp_path):
    _make_set(tmp_path, frames=5)
    with pytest.raises(DataError, match="5 frames, fewer than the 6"):
        open_test_set(tmp_path)
    assert len(open_test_set(tmp_path, min_frames=3)) == 2


def test_open_folder_and_reds(tmp_path):
    rng = np.random.default_rng(0)
    for s in ["000", "011", "015", "020", "001"]:
        for i in range(6):
            _png(tmp_path / "REDS" / "Raw" / s / f"{i:08d}.png", rng.integers(0, 255, (16, 24, 3), np.uint8))
    reds = open_reds(tmp_path / "REDS", "test")
    assert [s.name for s in reds] == ["000", "011", "015", "020"]
    assert reds[0].lr.shape == (6, 3, 4, 6)
    assert len(reds_split("train")) == 266 and "011" not in reds_split("train")
    assert [s.name for s in open_folder(tmp_path / "REDS" / "Raw")] == ["000", "001", "011", "015", "020"]


# ---------------------------------------------------------------- synthetic set

@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> Path:
    return ensure_builtin(tmp_path_factory.getbasetemp() / "tecogan-builtin")  # shared by both files


def test_builtin_layout_and_readable(builtin):
    test = open_test_set(builtin / "test", "BD")
    part = {p.name: p for p in PARTS}["test"]
    assert len(test) == len(part.photos)
    s = test[0]
    assert s.gt.shape == (part.frames, part.height, part.width, 3)
    assert s.lr.shape == (part.frames, part.height // 4, part.width // 4, 3)
    # stored BD LR = round(255 * BD(GT))
    gt64 = torch.from_numpy(s.gt).permute(0, 3, 1, 2).double() / 255
    expect = (bd_downsample(gt64[None], 4)[0] * 255).round().permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(s.lr.astype(np.float64), expect)
    assert len(open_test_set(builtin / "train", "BI")) == 8


def test_builtin_is_idempotent(builtin):
    before = (builtin / "manifest.json").stat().st_mtime_ns
    assert ensure_builtin(builtin) == builtin
    assert (builtin / "manifest.json").stat().st_mtime_ns == before
    with pytest.raises(DataError, match="seed"):
        ensure_builtin(builtin, seed=1)


def test_builtin_env_var_default(tmp_path, monkeypatch):
    from tecogan_plugin.data import synthetic

    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path / "home"))
    assert synthetic.default_root() == tmp_path / "home" / "tecogan-builtin-v2"


def test_builtin_deterministic_bytes(builtin, tmp_path, monkeypatch):
    from tecogan_plugin.data import synthetic

    # regenerate only the test part, to keep this fast
    monkeypatch.setattr(synthetic, "PARTS", tuple(p for p in PARTS if p.name == "test"))
    other = generate(tmp_path / "again", seed=0)
    for p in sorted((builtin / "test").rglob("*.png")):
        assert p.read_bytes() == (other / "test" / p.relative_to(builtin / "test")).read_bytes(), p
    monkeypatch.setattr(synthetic, "PARTS", tuple(p for p in PARTS if p.name == "test"))
    third = generate(tmp_path / "seed1", seed=1)
    a = read_frame(builtin / "test" / "GT" / "00_coffee" / "0000.png")
    b = read_frame(third / "test" / "GT" / "00_coffee" / "0000.png")
    assert not np.array_equal(a, b)


def test_builtin_has_motion_and_recoverable_camera_shift(builtin):
    manifest = load_manifest(builtin)
    seqs = manifest["parts"]["train"]["sequences"]
    name = next(n for n, r in seqs.items() if r["camera"] == "pan")
    gt = read_sequence(builtin / "train" / "GT" / name).astype(np.float64)
    assert all(np.abs(gt[t + 1] - gt[t]).mean() > 1.0 for t in range(len(gt) - 1))
    mats = np.array(seqs[name]["frame_to_source"])
    steps = np.arange(-4, 4.01, 0.25)
    for t in (0, 9, 17):
        a = cv2.cvtColor(gt[t].astype(np.float32), cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(gt[t + 1].astype(np.float32), cv2.COLOR_RGB2GRAY)
        # robust search: the shift of frame t that best explains frame t+1 on most pixels
        # (median error, so the independently moving cut-outs do not count)
        best = min(
            ((np.median(np.abs(cv2.warpAffine(a, np.float32([[1, 0, dx], [0, 1, dy]]), a.shape[::-1])
                               - b)[8:-8, 8:-8]), dx, dy) for dx in steps for dy in steps)
        )
        true = -(mats[t + 1][:, 2] - mats[t][:, 2])  # content moves opposite to the camera
        assert np.hypot(best[1] - true[0], best[2] - true[1]) < 0.5, (best, true)
