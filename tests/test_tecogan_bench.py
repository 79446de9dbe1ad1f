"""The bundled benchmark end to end on a tiny FRNet: report files, row accounting, resume, determinism,
a depth + width series."""

import shutil

import pytest

from prunekit.cli import main
from prunekit.errors import ConfigError
from tecogan_plugin.bench.grid import run_bench
from tecogan_plugin.bench.presets import QUICK, Series

TINY = QUICK.model_copy(update={
    "task": {**QUICK.task, "nf": 8, "nb": 3, "gt_crop": 32, "tempo_extent": 3},
    "train": {**QUICK.train, "iterations": 3},
    "finetune": {**QUICK.finetune, "iterations": 2},
    "blocks": [2, 1],
    "series": [Series(strategy="positional", finetune="plain"), Series(strategy="magnitude", finetune="distill")],
    "metrics": ["psnr", "ssim", "tof", "lpips"],
    "latency_repeats": 1,
    "calibration": 2,
    "threads": 1,
})


def _table(result):
    return [(r["key"], r["params_total"], r["metrics"]) for r in result["rows"]]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return out, run_bench(TINY, out, progress=False)


def test_report_files_and_rows(first_run):
    out, result = first_run
    for name in ("results.json", "results.csv", "report.md", "pareto_builtin-test.png", "crops.png"):
        assert (out / name).is_file(), name
    rows = result["rows"]
    assert [r["key"] for r in rows] == ["dense", "dense-control", "bicubic", "positional-plain-nb2",
                                        "positional-plain-nb1", "magnitude-distill-nb2", "magnitude-distill-nb1"]
    dense, control, bicubic = rows[0], rows[1], rows[2]
    # the control is the dense model trained for the healing budget more: same size, other weights
    assert (control["params_total"], control["blocks"], control["finetune"]) == (dense["params_total"], 3, "control")
    assert control["metrics"] != dense["metrics"]
    assert bicubic["params_total"] == 0 and bicubic["metrics"]["builtin-test"]["psnr"] > 5
    per_block = 2 * (8 * 8 * 9 + 8)  # one residual block of nf=8: two 3x3 convs with bias
    for r in rows[3:]:
        assert r["params_total"] == dense["params_total"] - (3 - r["blocks"]) * per_block
        assert r["params_srnet"] == dense["params_srnet"] - (3 - r["blocks"]) * per_block
        assert 0 < r["flops_removed_pct"] < 100
        assert r["metrics"]["builtin-test"]["psnr"] > 5
    # LPIPS needs AlexNet ImageNet weights, absent here: reported as unavailable with the file to provide
    assert "lpips" in result["meta"]["unavailable_metrics"]
    assert "alexnet" in result["meta"]["unavailable_metrics"]["lpips"].lower()
    report = (out / "report.md").read_text()
    assert "positional" in report and "SRNet" in report and "unavailable" in report


def test_rerun_resumes_and_same_seed_gives_same_table(first_run, tmp_path, capsys):
    out, result = first_run
    capsys.readouterr()
    again = run_bench(TINY, out, progress=False)  # everything is on disk: nothing is recomputed
    assert _table(again) == _table(result)
    said = capsys.readouterr().out
    for row in result["rows"]:  # the rerun names every step it skips and where the result lies
        assert f"{row['key']}: evaluated earlier ({out / 'rows' / (row['key'] + '.json')}, skipped)" in said
    assert "dense: trained earlier" in said and "latency: measured earlier for these 7 models" in said
    assert "0 of 4 pruned models computed now, 4 reused" in said and "training nb=" not in said
    fresh = run_bench(TINY, tmp_path / "second", progress=False)
    assert _table(fresh) == _table(result)


def test_other_settings_in_same_folder_are_refused(first_run):
    out, _ = first_run
    with pytest.raises(ConfigError, match="other settings"):
        run_bench(TINY.model_copy(update={"seed": 1}), out, progress=False)


def test_cli_rejects_bad_options(capsys, tmp_path):
    not_a_folder = tmp_path / "out.txt"
    not_a_folder.write_text("keep me")
    assert main(["bench", "tecogan", "--out", str(not_a_folder), "--fresh"]) == 2
    assert "is a file" in capsys.readouterr().err and not_a_folder.read_text() == "keep me"
    assert main(["bench", "tecogan", "--blocks", "12"]) == 2
    assert "--blocks" in capsys.readouterr().err
    assert main(["bench", "tecogan", "--series", "positional:sometimes"]) == 2
    assert main(["bench", "tecogan", "--series", "x:plain:w1.5"]) == 2
    # depth-only series keep their pre-width serialised form, so earlier runs' settings.json still match
    assert Series.parse("positional:plain").model_dump() == {"strategy": "positional", "finetune": "plain"}
    priced = Series.parse("block_influence:plain:lat0.33:sensitivity")
    assert priced.move_cost == "sensitivity" and priced.key == "block_influence-plain-lat0.33-sensitivity"
    assert "move_cost" not in Series.parse("block_influence:plain:lat0.33").model_dump()
    with pytest.raises(ConfigError, match="add latFRACTION"):
        Series.parse("block_influence:plain:sensitivity")
    floored = Series.parse("block_influence:plain:lat0.33:sensitivity:floor0.25")
    assert floored.min_keep == 0.25 and floored.key.endswith("-sensitivity-floor0.25")
    with pytest.raises(ConfigError, match="floorFRACTION"):
        Series.parse("block_influence:plain:lat0.33:floor2")
    assert "[0, 1)" in capsys.readouterr().err
    assert main(["bench", "tecogan", "--preset", "huge"]) == 2
    assert main(["bench", "tecogan", "--preset", "paper"]) == 2  # needs --data-root
    assert "--data-root" in capsys.readouterr().err


def test_unknown_strategy_fails_before_any_training(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "tecogan", "--series", "nosuch:plain", "--out", str(out), "--no-progress"]) == 2
    assert "unknown strategy 'nosuch'" in capsys.readouterr().err
    assert not out.exists()


def _reuse_first_run(out, dest):
    """`dest` holding the first run's dense, control and keep-1-block runs and rows (they do not depend
    on the rest of the series list), so a test computes only its new models."""
    for part in ("runs/dense", "runs/dense-control", "runs/positional-plain-nb1", "rows/dense.json",
                 "rows/dense-control.json", "rows/bicubic.json", "rows/positional-plain-nb1.json"):
        (dest / part).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (out / part).is_dir() else shutil.copy)(out / part, dest / part)
    return dest


def test_width_series_prunes_past_block_removal_and_resumes(first_run, tmp_path):
    """A `:w0.5` series on top of keep 1 block. The dense model and the depth-only nb1 row are the
    first run's (copied: they do not depend on the series list), so only the width model is computed."""
    out, result = first_run
    wide_out = _reuse_first_run(out, tmp_path / "wide")
    wide = TINY.model_copy(update={"blocks": [1], "series": [Series(strategy="positional", finetune="plain"),
                                                             Series.parse("positional:plain:w0.5")]})
    rows = {r["key"]: r for r in run_bench(wide, wide_out, progress=False)["rows"]}
    assert sorted(rows) == ["bicubic", "dense", "dense-control", "positional-plain-nb1", "positional-plain-w0.5-nb1"]
    depth, width = rows["positional-plain-nb1"], rows["positional-plain-w0.5-nb1"]
    timing = ("latency_ms", "latency_p25_ms", "latency_p75_ms", "latency_min_ms", "latency_max_ms", "latency_ratio")
    first_depth = next(r for r in result["rows"] if r["key"] == depth["key"])
    assert {k: v for k, v in depth.items() if k not in timing} == {k: v for k, v in first_depth.items()
                                                                   if k not in timing}
    assert (width["width"], width["blocks"]) == (0.5, 1)
    assert width["params_total"] < depth["params_total"]
    assert width["params_srnet"] < depth["params_srnet"] and width["params_fnet"] < depth["params_fnet"]
    assert width["params_total"] == width["params_srnet"] + width["params_fnet"]
    assert width["gmacs"] < depth["gmacs"] and width["metrics"]["builtin-test"]["psnr"] > 5
    assert "| positional | plain | 0.5 | n/a | convT | 1 |" in (wide_out / "report.md").read_text()
    (wide_out / "runs" / "positional-plain-w0.5-nb1" / "bench_wall.json").unlink()  # as if cut off after training
    (wide_out / "rows" / "positional-plain-w0.5-nb1.json").unlink()
    again = run_bench(wide, wide_out, progress=False)
    assert {r["key"]: r["params_total"] for r in again["rows"]} == {k: r["params_total"] for k, r in rows.items()}


def test_a_model_whose_target_cannot_be_met_is_reported_and_the_run_goes_on(first_run, tmp_path):
    out, _ = first_run
    run_out = _reuse_first_run(out, tmp_path / "unreachable")
    preset = TINY.model_copy(update={"blocks": [1], "series": [Series(strategy="positional", finetune="plain"),
                                                               Series.parse("positional:plain:lat0.001")]})
    result = run_bench(preset, run_out, progress=False)
    assert [r["key"] for r in result["rows"]] == ["dense", "dense-control", "bicubic", "positional-plain-nb1"]
    (key, why), = result["meta"]["failed_models"].items()
    assert key == "positional-plain-lat0.001" and "fastest model" in why
    assert f"`{key}`: not in the tables" in (run_out / "report.md").read_text()


def test_benchmark_scripts_share_the_machine_description_and_size_parsing(monkeypatch):
    import importlib
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    common = importlib.import_module("_common")
    assert common.parse_size("134x320") == (134, 320) and common.parse_size("320x134", "WxH") == (134, 320)
    for bad in ("134", "0x5", "ax5"):
        with pytest.raises(SystemExit, match=repr(bad)):
            common.parse_size(bad)
    info = common.machine_info("cpu", threads=1)
    assert info["device"] == "cpu" and info["torch_threads"] == 1 and info["cpu_count"] >= 1 and info["torch"]
    assert "1 torch thread(s)" in common.machine_text(threads=1)
    scripts = [p for p in (Path(__file__).parents[1] / "benchmarks").glob("*.py") if p.name != "_common.py"]
    for script in scripts:  # one helper: no script parses sizes or describes the machine itself
        text = script.read_text()
        assert "def parse_size" not in text and "platform." not in text, script.name
