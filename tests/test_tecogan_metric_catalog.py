"""A metric is described once (tecogan_plugin.metrics.catalog): registering a descriptor is all it takes
for the evaluator, `prunekit eval`, the training task's options, the benchmark and the reports to carry it."""

from __future__ import annotations

import numpy as np
import pytest

from prunekit.cli import main
from prunekit.errors import ConfigError
from prunekit.registry import EVALUATORS
from tecogan_plugin.metrics import VideoMetrics, catalog

Y_SUM = 0.256788235294118 + 0.504129411764706 + 0.097905882352941  # Y change for +1 on R, G and B


def mean_abs_y(y_gt: np.ndarray, y_pred: np.ndarray) -> float:
    """The toy metric: mean |Y difference| of one cropped frame."""
    return float(np.abs(y_gt - y_pred).mean())


TOY = catalog.Metric("maey", "MAE-Y", False, "y", f"{__name__}:mean_abs_y")


@pytest.fixture
def toy(monkeypatch):
    """TOY registered for this test only."""
    monkeypatch.setitem(EVALUATORS._items, TOY.name, TOY)
    return TOY


def frames(n: int = 7, h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(40, 200, size=(n, h, w, 3), dtype=np.uint8)


def test_builtin_descriptors_in_table_order():
    assert catalog.names()[:5] == ("psnr", "ssim", "lpips", "tof", "tlp")
    assert [catalog.get(m).temporal for m in ("psnr", "tof", "tlp")] == [False, True, True]
    assert catalog.get("psnr").higher_is_better and not catalog.get("lpips").higher_is_better
    assert catalog.get("tof").runs_on == "cpu" and catalog.get("lpips").runs_on == "device"
    with pytest.raises(ConfigError, match="unknown metric 'nope'.*psnr, ssim"):
        catalog.get("nope")
    with pytest.raises(ConfigError, match=r"unknown \['nope'\]"):
        VideoMetrics(metrics=("psnr", "nope"))
    with pytest.raises(ValueError, match="temporal"):
        catalog.Metric("bad", "Bad", False, "flow", f"{__name__}:mean_abs_y")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_registered_metric_is_scored_by_default_in_and_out_of_process(toy, workers):
    gt = frames()
    with VideoMetrics(tof_workers=workers) as vm:  # default: every registered metric
        assert vm.metrics[-1] == "maey"
        vm.update("clip", gt + np.uint8(3), gt)
        report = vm.compute()
    assert report.sequence("clip").values["maey"] == pytest.approx([3 * Y_SUM] * 3, rel=1e-6)
    assert report.frame_avg("maey") == pytest.approx(3 * Y_SUM, rel=1e-6)
    assert "MAE-Y" in report.format_table() and "MAE-Y 3" in report.format_table()


def test_eval_command_and_training_task_carry_a_registered_metric(toy, tmp_path, capsys):
    from tecogan_plugin.data.frames import write_frame
    from tecogan_plugin.train import TecoGANTask

    gt = frames()
    for root, seq in (("gt", gt), ("pred", gt + np.uint8(2))):
        for i, f in enumerate(seq):
            write_frame(tmp_path / root / "clip" / f"{i:03d}.png", f)
    code = main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--metrics", "psnr,maey",
                 "--workers", "0", "--csv", str(tmp_path / "m.csv")])
    out = capsys.readouterr().out
    assert code == 0
    assert "MAE-Y" in out and f"{2 * Y_SUM:.4f}" in out
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "sequence,frames,PSNR,MAE-Y,n_psnr,n_maey"
    assert TecoGANTask(eval_metrics=["maey"]).opt.eval_metrics == ["maey"]
    with pytest.raises(ConfigError, match="eval_metrics"):
        TecoGANTask(eval_metrics=["nope"])


def test_benchmark_preset_and_report_carry_a_registered_metric(toy):
    from tecogan_plugin.bench.presets import QUICK
    from tecogan_plugin.bench.report import BenchRow, flat_rows, markdown_tables

    assert QUICK.metrics == list(catalog.BUILTIN_NAMES)  # the quick preset's settings do not change
    preset = QUICK.model_validate({**QUICK.model_dump(), "metrics": ["psnr", "maey"]})
    assert preset.metrics == ["psnr", "maey"]
    with pytest.raises(ValueError, match="nope"):
        QUICK.model_validate({**QUICK.model_dump(), "metrics": ["nope"]})
    row = BenchRow(key="dense", strategy="dense", finetune="-", blocks=10, params_total=10, params_srnet=4,
                   gmacs=1.0, train_wall_s=0.0, metrics={"test": {"psnr": 30.0, "maey": 1.23456}})
    row = row.timed({"median_ms": 2.0, "p25_ms": 1.0, "p75_ms": 3.0, "min_ms": 1.0, "max_ms": 3.0}, 1.0, row)
    table = markdown_tables([row], "8x8")
    assert "| PSNR | SSIM | LPIPS | tOF | tLP100 | MAE-Y |" in table
    assert "| 30.000 | n/a | n/a | n/a | n/a | 1.2346 |" in table
    assert flat_rows([row])[0]["maey"] == 1.23456
