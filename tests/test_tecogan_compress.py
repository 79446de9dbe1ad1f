"""The compression pieces of the bench: series syntax, the bicubic reference row, the Torch-Pruning
baseline (bisection, replacement replayed on load), crops, and a tiny grid with a sub-pixel series,
a latency series and the baseline end to end."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import prunekit as pk
from prunekit.errors import ConfigError
from tecogan_plugin.bench.baselines import BicubicModel, match_latency, tp_uniform
from tecogan_plugin.bench.presets import QUICK, Series
from tecogan_plugin.bench.report import BenchRow, crop_figure, detail_box, series_label
from tecogan_plugin.data.degrade import bd_downsample
from tecogan_plugin.nets import FRNet, frnet_example_inputs
from tecogan_plugin.ops import BicubicUpsampler


@pytest.mark.parametrize("spec,fields,key", [
    ("positional:plain", {"strategy": "positional", "finetune": "plain"}, "positional-plain"),
    ("block_influence:distill:lat0.33", {"strategy": "block_influence", "finetune": "distill", "latency": 0.33},
     "block_influence-distill-lat0.33"),
    ("block_influence:distill:lat0.33:subpixel", {"strategy": "block_influence", "finetune": "distill",
                                                   "latency": 0.33, "subpixel": 3},
     "block_influence-distill-lat0.33-subpixel3"),
    ("positional:none:subpixel5:w0.25", {"strategy": "positional", "finetune": "none", "width": 0.25, "subpixel": 5},
     "positional-none-w0.25-subpixel5"),
    ("tp:distill:lat0.5", {"strategy": "tp", "finetune": "distill", "latency": 0.5}, "tp-distill-lat0.5"),
    ("tp:plain:lat0.33:refit", {"strategy": "tp", "finetune": "plain", "latency": 0.33, "refit": True},
     "tp-plain-lat0.33-refit"),
    ("block_influence:plain:lat0.33:sensitivity:refit", {"strategy": "block_influence", "finetune": "plain",
                                                         "latency": 0.33, "move_cost": "sensitivity", "refit": True},
     "block_influence-plain-lat0.33-sensitivity-refit"),
    ("block_influence:plain:lat0.33:uniform:refit", {"strategy": "block_influence", "finetune": "plain",
                                                     "latency": 0.33, "uniform": True, "refit": True},
     "block_influence-plain-lat0.33-uniform-refit"),
])
def test_series_syntax(spec, fields, key):
    series = Series.parse(spec)
    assert series.model_dump() == fields  # options left at their defaults are not serialised
    assert series.key == key


@pytest.mark.parametrize("spec,message", [
    ("positional:plain:lat0", "latFRACTION"), ("positional:plain:lat1.5", "latFRACTION"),
    ("positional:plain:w0.5:lat0.5", "chooses the widths"), ("positional:plain:lat0.5:lat0.4", "twice"),
    ("positional:plain:subpixel4", "kernel"), ("positional:plain:fast", "unknown option"),
    ("tp:plain", "tp:HEAL:latFRACTION"), ("tp:plain:lat0.5:subpixel", "tp:HEAL:latFRACTION"),
    ("tp:plain:refit", "tp:HEAL:latFRACTION"), ("positional:plain:refit:refit", "twice"),
    ("positional:plain:uniform", "add latFRACTION"), ("tp:plain:lat0.5:uniform", "tp:HEAL:latFRACTION"),
    ("positional", "expected STRATEGY"),
])
def test_bad_series_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        Series.parse(spec)


def test_series_labels():
    row = BenchRow.model_construct(strategy="block_influence", finetune="distill", latency_target=0.33, subpixel=3,
                                   blocks=4)
    assert series_label(row) == "block_influence (distill, lat0.33, subpixel k3) nb=4"
    assert series_label(BenchRow.model_construct(strategy="bicubic", finetune="-")) == "bicubic"


def test_bicubic_row_samples_on_the_bd_grid():
    """BD keeps HR pixel 4i (top-left aligned): upsampling on that grid beats OpenCV's half-pixel
    bicubic, which is misaligned with it by 1.5 HR pixels; and it is exactly the skip's upsampler."""
    rng = np.random.default_rng(0)
    hr = cv2.GaussianBlur(rng.uniform(0, 1, (96, 96, 3)).astype(np.float32), (0, 0), 3.0)
    hr_t = torch.from_numpy(hr).permute(2, 0, 1)[None]
    lr = bd_downsample(hr_t, scale=4, pad=True)
    model = BicubicModel(4)
    up = model(lr, lr, torch.zeros_like(hr_t))
    assert torch.equal(up, BicubicUpsampler(4)(lr))
    inner = (slice(8, -8), slice(8, -8))

    def psnr(x: np.ndarray) -> float:
        return float(10 * np.log10(1.0 / ((x[inner] - hr[inner]) ** 2).mean()))

    ours = psnr(up[0].permute(1, 2, 0).numpy())
    opencv = psnr(cv2.resize(lr[0].permute(1, 2, 0).numpy(), (96, 96), interpolation=cv2.INTER_CUBIC))
    assert ours > opencv + 3
    frames = list(model.infer_sequence([lr[0]] * 7))
    assert len(frames) == 7 and frames[0].shape == (96, 96, 3)


def test_tp_bisection_finds_the_smallest_ratio_meeting_the_latency():
    model = FRNet(nf=16, nb=1)

    def fake_latency(pruned: FRNet) -> float:  # latency falls with the fraction of SRNet channels removed
        return 1.0 - 0.8 * (1 - pruned.srnet.conv_in[0].out_channels / 16)

    ratio, trace = match_latency(model, 0.6, fake_latency, steps=6, high=0.8)
    assert len(trace) == 7 and trace[0]["ratio"] == 0.8
    # the least ratio that reaches 0.6 x (8 of 16 channels removed), to the bisection's 0.8 / 2^6
    assert fake_latency(tp_uniform(model, ratio)) <= 0.6 < fake_latency(tp_uniform(model, ratio - 0.8 / 64))
    with pytest.raises(ConfigError, match="above the target"):
        match_latency(model, 0.1, fake_latency, steps=2, high=0.8)


def test_tp_replacement_is_recorded_and_replayed_on_load(tmp_path):
    torch.manual_seed(0)
    model = FRNet(nf=16, nb=2)
    ex = frnet_example_inputs((16, 16))
    graph = pk.analyze(model, ex)
    plan = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(n=2),
                   replace={"name": "tecogan.tp_uniform", "paths": ["fnet", "srnet"], "kwargs": {"ratio": 0.5}})
    small = pk.apply(model, plan, ex, calibration=[ex])
    direct = tp_uniform(model, 0.5)
    assert [p.shape for p in small.parameters()] == [p.shape for p in direct.parameters()]
    assert small.srnet.conv_in[0].out_channels == 8 and small.fnet.flow[2].out_channels == 2
    pk.save(small, plan, tmp_path / "tp")
    again = pk.load(tmp_path / "tp", build=lambda: FRNet(nf=16, nb=2))
    with torch.no_grad():
        assert torch.equal(again(*ex), small(*ex))


def test_detail_box_and_crop_figure(tmp_path):
    gt = np.full((80, 100, 3), 128, np.uint8)
    gt[40:72, 50:82] = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    y, x = detail_box(gt, 32)
    assert abs(y - 40) <= 1 and abs(x - 50) <= 1
    crop = gt[y:y + 32, x:x + 32]
    crop_figure(crop, [("model", np.clip(crop.astype(int) + 10, 0, 255).astype(np.uint8))], tmp_path / "c.png")
    image = cv2.imread(str(tmp_path / "c.png"))
    assert image is not None and image.shape[0] > 200


def test_tiny_grid_with_subpixel_latency_and_tp_series(tmp_path):
    """End to end: a sub-pixel series over block counts, a latency series and the Torch-Pruning baseline
    at the same latency target, refit to the dense model, healed, timed interleaved and reported (tiny
    model, LR 48x64 timing)."""
    from tecogan_plugin.bench.grid import run_bench

    preset = QUICK.model_copy(update={
        "task": {**QUICK.task, "nf": 16, "nb": 3, "gt_crop": 32, "tempo_extent": 3},
        "train": {**QUICK.train, "iterations": 3}, "finetune": {**QUICK.finetune, "iterations": 2},
        "blocks": [2], "metrics": ["psnr"], "latency_repeats": 3, "calibration": 2, "refit_calibration": 2,
        "threads": 1,
        "latency_lr_size": (48, 64), "surgery_gt_crop": 64, "tp_bisection_steps": 3,
        "series": [Series.parse(s) for s in ("positional:distill:subpixel", "block_influence:none:lat0.8",
                                             "tp:plain:lat0.8:refit")],
    })
    result = run_bench(preset, tmp_path / "b", progress=False)
    rows = {r["key"]: r for r in result["rows"]}
    assert sorted(rows) == ["bicubic", "block_influence-none-lat0.8", "dense", "dense-control",
                            "positional-distill-subpixel3-nb2", "tp-plain-lat0.8-refit"]
    sub = rows["positional-distill-subpixel3-nb2"]
    assert (sub["tail"], sub["blocks"], sub["subpixel"]) == ("subpixel k3", 2, 3)
    assert sub["gmacs"] < rows["dense"]["gmacs"]
    assert rows["block_influence-none-lat0.8"]["latency_target"] == 0.8
    tp = rows["tp-plain-lat0.8-refit"]
    assert 0 < tp["tp_ratio"] < 0.95 and tp["params_total"] < rows["dense"]["params_total"] and tp["refit"]
    assert "refit" not in rows["block_influence-none-lat0.8"]
    log = (tmp_path / "b" / "runs" / "tp-plain-lat0.8-refit" / "metrics.csv").read_text()
    refit = [line for line in log.splitlines() if ",refit_layers," in line]
    assert refit and float(refit[0].rsplit(",", 1)[1]) > 10  # FNet's and SRNet's convolutions
    for r in rows.values():
        assert r["latency_min_ms"] <= r["latency_p25_ms"] <= r["latency_ms"] <= r["latency_p75_ms"]
        assert r["metrics"]["builtin-test"]["psnr"] > 5
    report = (tmp_path / "b" / "report.md").read_text()
    assert "| tp | plain | 0 | 0.80 | convT |" in report and "subpixel k3" in report
    assert (tmp_path / "b" / "crops.png").is_file() and (tmp_path / "b" / "tp" / "lat0.8.json").is_file()
