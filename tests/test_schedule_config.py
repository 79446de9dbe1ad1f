"""Bad run configs fail before any work starts (no training step, no checkpoint), with the field named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from prunekit.cli import main
from prunekit.config import load_config
from prunekit.errors import ConfigError
from prunekit.schedule import RunConfig, run

from test_schedule import config


def _fails_before_work(cfg: dict[str, Any], match: str, tmp_path: Path) -> None:
    steps: list[int] = []
    with pytest.raises(ConfigError, match=match):
        run(cfg, on_step=lambda info: steps.append(info.global_step))
    assert steps == []
    assert not (Path(cfg.get("out_dir", tmp_path / "none")) / "checkpoints").exists()


def _edit(cfg: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return cfg


@pytest.mark.parametrize("path,value,match", [
    (["stages", 0, "iteratons"], 5, r"stages\[0\]\.train\.iteratons: unknown key"),
    (["stages", 0, "optimizer", "momentun"], 0.9, r"stages\[0\]\.train\.optimizer\.momentun: unknown key"),
    (["seeed"], 1, r"seeed: unknown key"),
    (["stages", 0, "optimizer", "lr"], "fast", r"stages\[0\]\.train\.optimizer\.lr: .*got 'fast'"),
    (["stages", 0, "iterations"], -3, r"stages\[0\]\.train\.iterations: .*greater than or equal to 0.*got -3"),
    (["stages", 0, "optimizer", "name"], "lion", r"stages\[0\]\.train\.optimizer\.name: .*'adam' or 'sgd'"),
    (["stages", 0, "lr_schedule", "milestones"], [4, 9], r"stages\[0\]\.train: .*milestones \[9\].*iterations=6"),
    (["stages", 1, "kind"], "trim", r"stages\[1\]: .*'train', 'prune', 'finetune'"),
    (["keep_last"], 0, r"keep_last: .*greater than 0"),
    (["stages", 1, "target"], {"kind": "keep_half"}, r"stages\[1\]\.prune\.target: .*'keep_half'"),
    (["stages", 1, "target"], {"kind": "params_ratio", "keep": 1.5}, r"stages\[1\]\.prune\.target.*ParamsRatio: keep must be <= 1\.0, got 1\.5"),
    (["stages", 1, "target"], {"kind": "channel_flops", "keep": 0},
     r"stages\[1\]\.prune\.target.*ChannelFlops: keep must be > 0"),
    (["init_checkpoint"], "/nonexistent/G_iter400000.pth", r"init_checkpoint: .*does not exist"),
    (["stages", 1, "uniform"], True, r"stages\[1\]\.prune: .*uniform steers the latency planner"),
    (["stages", 1, "refit"], -1, r"stages\[1\]\.prune\.refit: .*greater than or equal to 0"),
])
def test_schema_errors_name_the_field(tmp_path, path, value, match):
    _fails_before_work(_edit(config(tmp_path / "r"), path, value), match, tmp_path)


def test_distillation_without_a_prune_stage_is_rejected(tmp_path):
    cfg = config(tmp_path / "r")
    cfg["stages"] = [cfg["stages"][2], cfg["stages"][1]]
    _fails_before_work(cfg, r"stages\[0\]\.distill needs a teacher", tmp_path)


@pytest.mark.parametrize("path,value,match", [
    (["stages", 1, "target"], {"kind": "keep_blocks", "n": 9}, r"stages\[1\]\.target: .*only 4 removable blocks"),
    (["stages", 1, "strategy"], "oracle", r"stages\[1\]\.strategy: .*oracle"),
    (["stages", 1, "target"], {"kind": "params_ratio", "keep": 0.05},
     r"stages\[1\]\.target: .*needs at most .* still leaves"),
    (["stages", 1, "iterative", "finetune", "batch"], 0, r"stages\[1\]\.prune\.iterative\.finetune\.batch"),
    (["task", "name"], "no.such.task", r"task\.name: .*no\.such\.task"),
    (["task", "options"], {"n_blocks": 4, "colour": "red"}, r"task\.options: .*colour"),
])
def test_impossible_schedules_fail_before_training(tmp_path, path, value, match):
    _fails_before_work(_edit(config(tmp_path / "r"), path, value), match, tmp_path)


def test_second_prune_stage_counts_blocks_left_by_the_first(tmp_path):
    cfg = config(tmp_path / "r")
    cfg["stages"].insert(2, {"kind": "prune", "target": {"kind": "keep_blocks", "n": 3}})
    _fails_before_work(cfg, r"stages\[2\]\.target: keep 3 blocks is unreachable.*2 removable", tmp_path)


def test_yaml_and_toml_files_load_to_the_same_config(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        "task: {name: 'test_schedule:ToyTask'}\nseed: 2\nstages:\n"
        "  - {kind: train, iterations: 3, optimizer: {lr: 0.01, betas: [0.5, 0.9]}}\n"
        "  - {kind: prune, target: {kind: params_ratio, keep: 0.6}}\n")
    toml_file = tmp_path / "run.toml"
    toml_file.write_text(
        "seed = 2\n[task]\nname = 'test_schedule:ToyTask'\n"
        "[[stages]]\nkind = 'train'\niterations = 3\noptimizer = {lr = 0.01, betas = [0.5, 0.9]}\n"
        "[[stages]]\nkind = 'prune'\ntarget = {kind = 'params_ratio', keep = 0.6}\n")
    a, b = load_config(RunConfig, yaml_file), load_config(RunConfig, toml_file)
    assert a == b
    assert a.stages[0].optimizer.betas == (0.5, 0.9)


def test_channel_flops_is_a_width_target_in_a_prune_stage(tmp_path):
    cfg = config(tmp_path / "r")
    cfg["stages"][1] = {"kind": "prune", "strategy": "magnitude",
                        "target": [{"kind": "keep_blocks", "n": 2}, {"kind": "channel_flops", "keep": 0.6}]}
    stage = RunConfig.model_validate(cfg).stages[1]
    assert [t.kind for t in stage.targets()] == ["keep_blocks", "channel_flops"]
    # a later stage that removes blocks after this width target is rejected before any work
    cfg["stages"].insert(2, {"kind": "prune", "target": {"kind": "keep_blocks", "n": 1}})
    _fails_before_work(cfg, r"stages\[2\]\.target: removing blocks after channels", tmp_path)


def test_broken_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [kind: train\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        load_config(RunConfig, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(RunConfig, tmp_path / "missing.toml")
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x80\x81\xfe\xff")
    with pytest.raises(ConfigError, match="weights.yaml.*cannot be read as UTF-8"):
        load_config(RunConfig, binary)


def test_cli_reports_the_field_and_exits_2(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"task: {{name: 'test_schedule:ToyTask'}}\nout_dir: {tmp_path / 'out'}\n"
                   "stages:\n  - {kind: train, iterations: ten}\n")
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "stages[0].train.iterations" in err and "'ten'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_a_gpu_is_a_config_error_even_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: the check must come before joining a group
    cfg = config(tmp_path / "r", device="cuda", stages=[{"kind": "train", "iterations": 1, "batch": 2}])
    with pytest.raises(ConfigError, match="device: 'cuda' was asked for"):
        run(cfg)
