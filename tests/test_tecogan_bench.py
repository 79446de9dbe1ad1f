"""The bundled benchmark end to end on a tiny FRNet: report files, row accounting, resume, determinism."""


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
    assert [r["key"] for r in rows] == ["dense", "positional-plain-nb2", "positional-plain-nb1",
                                        "magnitude-distill-nb2", "magnitude-distill-nb1"]
    dense = rows[0]
    per_block = 2 * (8 * 8 * 9 + 8)  # one residual block of nf=8: two 3x3 convs with bias
    for r in rows[1:]:
        assert r["params_total"] == dense["params_total"] - (3 - r["blocks"]) * per_block
        assert r["params_srnet"] == dense["params_srnet"] - (3 - r["blocks"]) * per_block
        assert 0 < r["flops_removed_pct"] < 100
        assert r["metrics"]["builtin-test"]["psnr"] > 5
    # LPIPS needs AlexNet ImageNet weights, absent here: reported as unavailable with the file to provide
    assert "lpips" in result["meta"]["unavailable_metrics"]
    assert "alexnet" in result["meta"]["unavailable_metrics"]["lpips"].lower()
    report = (out / "report.md").read_text()
    assert "positional" in report and "SRNet" in report and "unavailable" in report


def test_rerun_resumes_and_same_seed_gives_same_table(first_run, tmp_path):
    out, result = first_run
    again = run_bench(TINY, out, progress=False)  # everything is on disk: nothing is recomputed
    assert _table(again) == _table(result)
    fresh = run_bench(TINY, tmp_path / "second", progress=False)
    assert _table(fresh) == _table(result)


def test_other_settings_in_same_folder_are_refused(first_run):
    out, _ = first_run
    with pytest.raises(ConfigError, match="other settings"):
        run_bench(TINY.model_copy(update={"seed": 1}), out, progress=False)


def test_cli_rejects_bad_options(capsys):
    assert main(["bench", "tecogan", "--blocks", "12"]) == 2
    assert "--blocks" in capsys.readouterr().err
    assert main(["bench", "tecogan", "--series", "positional:sometimes"]) == 2
    assert main(["bench", "tecogan", "--preset", "huge"]) == 2
    assert main(["bench", "tecogan", "--preset", "paper"]) == 2  # needs --data-root
    assert "--data-root" in capsys.readouterr().err
