"""LPIPS / tLP plumbing with a stand-in AlexNet backbone (randomly initialised torchvision AlexNet
saved under the real file name), checked against the `lpips` package's own per-image calls; the
missing-weights behaviour; the `prunekit eval` command."""

from __future__ import annotations

import csv
import json
import warnings

import cv2
import lpips
import numpy as np
import pytest
import torch
import torchvision

from prunekit.cli import main
from prunekit.errors import CheckpointError, MissingWeightsError
from tecogan_plugin.metrics import VideoMetrics
from tecogan_plugin.metrics.lpips_metric import ALEXNET_FILE

CROP = (slice(16, 80), slice(16, 112))  # crop_8x8 of 96 x 128


@pytest.fixture(autouse=True)
def _empty_hub(tmp_path, monkeypatch):
    """No real weights can leak in from a user's torch hub cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture
def stand_in(tmp_path):
    torch.manual_seed(7)
    path = tmp_path / "weights" / ALEXNET_FILE
    path.parent.mkdir()
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def frames(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 220, (n, 14, 18, 3)).astype(np.uint8)
    return np.stack([cv2.resize(f, (128, 96), interpolation=cv2.INTER_LINEAR) for f in small])


def reference_model(backbone_file) -> lpips.LPIPS:
    """lpips.LPIPS with the stand-in trunk, loaded by mapping torchvision's features.N keys to the
    package's slice layout (slices hold features 0-1, 2-4, 5-7, 8-9, 10-11)."""
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    bounds = [2, 5, 8, 10, 12]
    state = {}
    for key, value in torch.load(backbone_file, weights_only=True).items():
        if key.startswith("features."):
            idx = int(key.split(".")[1])
            slice_no = next(i for i, b in enumerate(bounds) if idx < b) + 1
            state[f"slice{slice_no}.{key[len('features.'):]}"] = value
    model.net.load_state_dict(state)
    return model.eval()


def test_batched_lpips_and_tlp_equal_per_image_package_calls(stand_in):
    gt, pred = frames(9, 0), frames(9, 1)
    with VideoMetrics(metrics=("lpips", "tlp"), lpips_weights=stand_in, device="cpu", chunk_frames=2) as vm:
        seq = vm.update("a", pred, gt)
    ref = reference_model(stand_in)
    t = lambda img: lpips.im2tensor(np.ascontiguousarray(img[CROP]))
    with torch.no_grad():
        exp_lpips = [ref(t(gt[i]), t(pred[i])).item() for i in range(2, 7)]
        exp_tlp = [
            abs(ref(t(gt[i - 1]), t(gt[i])).item() - ref(t(pred[i - 1]), t(pred[i])).item()) * 100 for i in range(3, 7)
        ]
    assert seq.count("lpips") == 5 and seq.count("tlp") == 4
    np.testing.assert_allclose(seq.values["lpips"], exp_lpips, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(seq.values["tlp"], exp_tlp, rtol=1e-4, atol=1e-5)
    assert min(exp_lpips) > 0  # different images: a non-trivial check


def test_identical_sequences_have_zero_lpips_and_tlp(stand_in):
    gt = frames(7, 0)
    with VideoMetrics(metrics=("lpips", "tlp"), lpips_weights=stand_in.parent, device="cpu") as vm:
        seq = vm.update("a", gt.copy(), gt)
    assert np.all(seq.values["lpips"] == 0) and np.all(seq.values["tlp"] == 0)


def test_missing_backbone_reports_unavailable_and_others_still_run():
    gt = frames(6, 0)
    with VideoMetrics(tof_workers=0, device="cpu") as vm:
        vm.update("a", frames(6, 1), gt)
        report = vm.compute()
    assert set(report.unavailable) == {"lpips", "tlp"}
    assert ALEXNET_FILE in report.unavailable["lpips"]
    assert report.available == ("psnr", "ssim", "tof")
    assert report.frame_avg("psnr") is not None
    assert "unavailable" in report.format_table() and ALEXNET_FILE in report.format_table()
    assert report.format_table().count("unavailable") == 1  # one reason for LPIPS and tLP, said once
    assert "LPIPS, tLP100: unavailable" in report.format_table()
    with pytest.raises(MissingWeightsError, match=ALEXNET_FILE):
        VideoMetrics(require_lpips=True, tof_workers=0)



def test_unreadable_backbone_file_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / ALEXNET_FILE
    bad.write_text("not a checkpoint")  # torch.load raises a bare KeyError on this
    with pytest.raises(CheckpointError, match=ALEXNET_FILE):
        VideoMetrics(metrics=("lpips",), lpips_weights=bad, tof_workers=0, device="cpu")

def _write_sequences(root, seqs: dict[str, np.ndarray]) -> None:
    for name, seq in seqs.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i, frame in enumerate(seq):
            cv2.imwrite(str(folder / f"frame_{i + 1}.png"), frame[:, :, ::-1])
        cv2.imwrite(str(folder / "IB_ignored.png"), seq[0])  # the official listing skips IB*


def test_eval_command_prints_table_and_writes_json_and_csv(tmp_path, stand_in, capsys):
    gt = {"walk": frames(7, 0), "city": frames(9, 2)}
    pred = {k: np.clip(v.astype(np.int16) + 4, 0, 255).astype(np.uint8) for k, v in gt.items()}
    _write_sequences(tmp_path / "gt", gt)
    _write_sequences(tmp_path / "pred", pred)
    out_json, out_csv = tmp_path / "out" / "m.json", tmp_path / "out" / "m.csv"
    code = main(
        ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--lpips-weights", str(stand_in),
         "--workers", "0", "--device", "cpu", "--json", str(out_json), "--csv", str(out_csv)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "walk" in text and "city" in text and "frame avg" in text and "sequence avg" in text
    data = json.loads(out_json.read_text())
    assert data["count"] == {"psnr": 3 + 5, "ssim": 8, "lpips": 8, "tof": 2 + 4, "tlp": 6}
    assert [s["name"] for s in data["sequences"]] == ["city", "walk"]
    rows = list(csv.reader(out_csv.open()))
    assert rows[0][:3] == ["sequence", "frames", "PSNR"]
    assert rows[-2][0] == "frame_avg" and float(rows[-2][2]) == pytest.approx(data["frame_avg"]["psnr"])


def test_eval_command_errors_name_the_problem(tmp_path, capsys):
    _write_sequences(tmp_path / "gt", {"a": frames(6, 0)})
    (tmp_path / "pred").mkdir()
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--workers", "0"]) == 2
    assert "no output folder for 1 of the 1 sequences" in capsys.readouterr().err
    _write_sequences(tmp_path / "pred", {"a": frames(5, 0)})
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--workers", "0"]) == 2
    assert "5 frames" in capsys.readouterr().err
    code = main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--require-lpips"])
    assert code == 2 and ALEXNET_FILE in capsys.readouterr().err


def test_eval_with_fewer_outputs_than_targets_suggests_sequences(tmp_path, capsys):
    _write_sequences(tmp_path / "gt", {"a": frames(6, 0), "b": frames(6, 1), "c": frames(6, 2)})
    _write_sequences(tmp_path / "pred", {"a": frames(6, 3), "c": frames(6, 4)})
    args = ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--workers", "0", "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 of the 3 sequences" in err and "(b)" in err and "--sequences a,c" in err
    assert main([*args, "--sequences", "a,c"]) == 0  # what it suggested works
    out = capsys.readouterr().out
    assert "LPIPS, tLP100: unavailable" in out and out.count("unavailable") == 1


@pytest.mark.cuda
def test_cuda_lpips_matches_cpu(stand_in):
    gt, pred = frames(8, 0), frames(8, 1)
    out = {}
    for device in ("cpu", "cuda"):
        with VideoMetrics(metrics=("lpips", "tlp"), lpips_weights=stand_in, device=device) as vm:
            out[device] = vm.update("a", pred, gt).values
    np.testing.assert_allclose(out["cuda"]["lpips"], out["cpu"]["lpips"], rtol=1e-4, atol=1e-6)  # no TF32
    np.testing.assert_allclose(out["cuda"]["tlp"], out["cpu"]["tlp"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("workers", [0, 2])
def test_cached_target_gives_identical_values_and_is_reused_only_for_the_same_target(stand_in, workers, monkeypatch):
    """Scoring several outputs against one target reuses its flows and features without changing a
    value; a different target under the same name is recomputed, not served from the cache."""
    gt, other_gt = frames(9, 0), frames(9, 5)
    outputs = [frames(9, seed) for seed in (1, 2)]
    opts = dict(lpips_weights=stand_in, device="cpu", tof_workers=workers, chunk_frames=2)
    with VideoMetrics(**opts) as fresh:
        expected = [fresh.update(f"m{i}", pred, gt).values for i, pred in enumerate(outputs)]
        expected_other = fresh.update("other", outputs[0], other_gt).values

    import tecogan_plugin.metrics.frame_jobs as jobs
    import tecogan_plugin.metrics.tof as tof_module
    calls = []
    counting = lambda prev, cur, real=tof_module.cropped_flow: calls.append(1) or real(prev, cur)
    monkeypatch.setattr(jobs, "cropped_flow", counting)  # counted only in-process (workers=0)
    with VideoMetrics(cache_targets=True, **opts) as vm:
        for pred, exp in zip(outputs, expected):
            vm.reset()
            got = vm.update("a", pred, gt).values
            for m in exp:
                np.testing.assert_array_equal(got[m], exp[m], err_msg=m)
        assert vm.cached_target_bytes() > 0
        got_other = vm.update("a2", outputs[0], other_gt).values  # new name: new entry
        vm.reset()
        got_swapped = vm.update("a", outputs[0], other_gt).values  # same name, new content: recomputed
    for m in expected_other:
        np.testing.assert_array_equal(got_other[m], expected_other[m], err_msg=m)
        np.testing.assert_array_equal(got_swapped[m], expected_other[m], err_msg=m)
    if workers == 0:  # 4 tOF frames: 8 flows for the first output, 4 for the second, 8 + 8 for the new targets
        assert len(calls) == 8 + 4 + 8 + 8


@pytest.mark.cuda
def test_cached_target_on_cuda_gives_identical_values(stand_in):
    gt, outputs = frames(9, 0), [frames(9, 1), frames(9, 2)]
    with VideoMetrics(lpips_weights=stand_in, device="cuda", tof_workers=0) as fresh:
        expected = [fresh.update(f"m{i}", pred, gt).values for i, pred in enumerate(outputs)]
    with VideoMetrics(lpips_weights=stand_in, device="cuda", tof_workers=0, cache_targets=True) as vm:
        for pred, exp in zip(outputs, expected):
            vm.reset()
            got = vm.update("a", pred, gt).values
            for m in exp:
                np.testing.assert_allclose(got[m], exp[m], rtol=1e-6, atol=1e-7, err_msg=m)
