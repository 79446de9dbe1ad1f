"""Schedule engine on a tiny residual conv net: stages, pruning, resume bit-for-bit, distillation,
NaN handling, checkpoint rotation, CSV metrics. The toy task here is also used by the DDP and config
tests (imported by name, so spawned processes can build it)."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import prunekit as pk
from prunekit.errors import TrainingDivergedError
from prunekit.schedule import ModelTask, run
from prunekit.schedule.checkpoint import list_checkpoints
from prunekit.schedule.distill import renumbered_path


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ToyNet(nn.Module):
    def __init__(self, n_blocks: int = 4, channels: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(channels) for _ in range(n_blocks)])
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.blocks(self.head(x)))


class ToyTask:
    """Denoise-like regression: learn a fixed blur of the input. Batches come from `seed` only."""

    def __init__(self, n_blocks: int = 4, channels: int = 8, size: int = 8, n_data: int = 32,
                 nan_at: int | None = None) -> None:
        self.n_blocks, self.channels, self.nan_at = n_blocks, channels, nan_at
        gen = torch.Generator().manual_seed(1234)
        self.x = torch.rand(n_data, 3, size, size, generator=gen)
        kernel = torch.full((3, 1, 3, 3), 1 / 9)
        self.y = nn.functional.conv2d(self.x, kernel, padding=1, groups=3)
        self.calls = 0

    def build_model(self) -> nn.Module:
        return ToyNet(self.n_blocks, self.channels)

    def example_inputs(self) -> torch.Tensor:
        return self.x[:1]

    def train_batches(self, seed: int, rank: int, world_size: int, batch_size: int = 4) -> Iterator[Any]:
        gen = torch.Generator().manual_seed(seed)
        while True:  # one global batch per step; each rank takes its slice
            idx = torch.randint(0, len(self.x), (batch_size * world_size,), generator=gen)
            mine = idx[rank * batch_size:(rank + 1) * batch_size]
            yield self.x[mine], self.y[mine]

    def loss(self, model: nn.Module, batch: Any, teacher: nn.Module | None = None, step: int = 0):
        self.calls += 1
        x, y = batch
        loss = (model(x) - y).abs().mean()
        if self.nan_at is not None and self.calls == self.nan_at:
            loss = loss * float("nan")
        return loss, {"l1": float(loss.detach())}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        mse = float(((model(self.x) - self.y) ** 2).mean())
        return {"psnr": 10 * math.log10(1 / max(mse, 1e-12)), "mse": mse}

    def calibration(self, n: int) -> list[torch.Tensor]:
        return [self.x[i:i + 1] for i in range(n)]


TOY = "test_schedule:ToyTask"


def config(out: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "task": {"name": TOY, "options": {"n_blocks": 4}},
        "seed": 3,
        "device": "cpu",  # the toy task keeps its data on the CPU; resume is bit-identical there
        "out_dir": str(out),
        "ckpt_every": 3,
        "keep_last": 2,
        "progress": False,
        "stages": [
            {"kind": "train", "iterations": 6, "batch": 4,
             "optimizer": {"name": "adam", "lr": 3e-3},
             "lr_schedule": {"kind": "multistep", "milestones": [4], "gamma": 0.5}},
            {"kind": "prune", "strategy": "magnitude", "target": {"kind": "keep_blocks", "n": 2},
             "iterative": {"remove": 1, "finetune": {"kind": "finetune", "iterations": 3, "batch": 4,
                                                      "optimizer": {"lr": 2e-3}}}},
            {"kind": "finetune", "iterations": 5, "batch": 4, "optimizer": {"lr": 1e-3},
             "lr_schedule": {"kind": "cosine"}, "distill": {"weight": 0.5, "features": True, "feature_weight": 0.1}},
        ],
    }
    cfg.update(over)
    return cfg


def _losses(history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(h["global_step"], h["loss"]) for h in history if "loss" in h]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_full_schedule_prunes_iteratively_and_writes_run_folder(tmp_path):
    result = run(config(tmp_path / "run"))
    assert len(result.model.blocks) == 2
    assert len(result.plan.removed) == 2 and all(p.startswith("blocks.") for p in result.plan.removed)
    # 6 train + 2 iterative steps x 3 + 5 finetune
    assert _losses(result.history)[-1][0] == 17
    phases = {h["phase"] for h in result.history}
    assert {"train", "prune", "prune1_finetune", "prune2_finetune", "finetune"} <= phases
    assert "eval_psnr" in result.metrics
    run_dir = result.run_dir
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert {"loss", "lr", "distill_out", "distill_feat", "eval_psnr"} <= {r["name"] for r in rows}
    assert len(list_checkpoints(run_dir / "checkpoints")) == 2
    # the final folder replays on a freshly built dense model
    from prunekit.checkpoint import load

    again = load(run_dir / "final", build=lambda: ToyNet(4, 8))
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(again(x), result.model(x), rtol=0, atol=0)
    # lr schedule applied: multistep halves after iteration 4 of the train stage
    lrs = [h["lr"] for h in result.history if h["phase"] == "train" and "lr" in h]
    assert lrs[:4] == [3e-3] * 4 and lrs[4:] == [1.5e-3] * 2


def test_iterative_ratio_target_stays_relative_to_the_dense_model(tmp_path):
    stages = [{"kind": "prune", "strategy": "magnitude", "calibration": 0,
               "target": {"kind": "params_ratio", "keep": 0.6},
               "iterative": {"remove": 1, "finetune": {"kind": "finetune", "iterations": 1, "batch": 2}}}]
    result = run(config(tmp_path / "ratio", stages=stages))
    dense = sum(p.numel() for p in ToyNet(4, 8).parameters())
    assert len(result.model.blocks) == 2  # one block per step: 5115 -> 3947 -> 2779 <= 0.6 * 5115
    assert sum(1 for h in result.history if h["phase"] == "prune" and "removed" in h) == 2
    assert result.plan.stats.params_before == dense
    assert result.plan.stats.params_after <= 0.6 * dense
    assert result.plan.stats.flops_after < result.plan.stats.flops_before


def test_one_shot_block_and_channel_targets_then_reload(tmp_path):
    stages = [{"kind": "prune", "strategy": "magnitude", "calibration": 0,
               "target": [{"kind": "keep_blocks", "n": 3}, {"kind": "channel_ratio", "prune": 0.5}]},
              {"kind": "finetune", "iterations": 2, "batch": 2, "distill": {"weight": 1.0, "features": True}}]
    result = run(config(tmp_path / "width", stages=stages))
    assert len(result.model.blocks) == 3 and result.plan.channels
    from prunekit.checkpoint import load

    again = load(tmp_path / "width" / "final", build=lambda: ToyNet(4, 8))
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(again(x), result.model(x), rtol=0, atol=0)


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("crash_at", [5, 8, 16])
def test_resume_after_crash_is_bit_identical(tmp_path, crash_at):
    """Kill at global step `crash_at` (in the train stage, inside an iterative prune step, in the
    distilled fine-tune), resume, compare losses and weights with an uninterrupted run."""
    full = run(config(tmp_path / "full"))

    def crash(info):
        if info.global_step == crash_at:
            raise Crash(f"killed at {crash_at}")

    cfg = config(tmp_path / "crashed")
    with pytest.raises(Crash):
        run(cfg, on_step=crash)
    resumed = run(cfg, resume=True)
    assert _losses(resumed.history) == _losses(full.history)
    a, b = _state(full.model), _state(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.plan.removed == full.plan.removed
    assert resumed.metrics == full.metrics


def test_nan_loss_stops_with_stage_and_iteration_and_keeps_last_checkpoint(tmp_path):
    cfg = config(tmp_path / "nan", task={"name": TOY, "options": {"n_blocks": 4, "nan_at": 5}})
    with pytest.raises(TrainingDivergedError, match=r"stage 0 \(stage0:train\), iteration 5: the loss is nan"):
        run(cfg)
    ckpts = list_checkpoints(tmp_path / "nan" / "checkpoints")
    assert ckpts and ckpts[-1].name.startswith("ckpt-000000003")
    weights = load_file(str(ckpts[-1] / "model" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_fresh_run_refuses_existing_run_folder(tmp_path):
    from prunekit.errors import ConfigError

    cfg = config(tmp_path / "r", stages=[{"kind": "train", "iterations": 3, "batch": 2}])
    run(cfg)
    with pytest.raises(ConfigError, match="already holds a run"):
        run(cfg)


def test_resume_refuses_a_changed_schedule(tmp_path):
    from prunekit.errors import ConfigError

    cfg = config(tmp_path / "r", stages=[{"kind": "train", "iterations": 3, "batch": 2}])
    run(cfg)
    cfg["stages"][0]["iterations"] = 5
    with pytest.raises(ConfigError, match="stages: differ from the run being resumed"):
        run(cfg, resume=True)


def test_distillation_pulls_student_toward_teacher(tmp_path):
    """With only the distillation term weighted strongly, the pruned student's output moves closer to
    the teacher's than plain fine-tuning on the task loss does."""
    base = [{"kind": "prune", "strategy": "positional", "target": {"kind": "keep_blocks", "n": 2}, "calibration": 0}]
    tune = {"kind": "finetune", "iterations": 15, "batch": 4, "optimizer": {"lr": 3e-3}}
    plain = run(config(tmp_path / "plain", stages=base + [tune]))
    dist = run(config(tmp_path / "dist", stages=base + [{**tune, "distill": {"weight": 20.0}}]))
    from prunekit.checkpoint import load

    teacher = load(tmp_path / "dist" / "teacher", build=lambda: ToyNet(4, 8))
    x = ToyTask().x
    with torch.no_grad():
        gap_plain = (plain.model(x) - teacher(x)).abs().mean()
        gap_dist = (dist.model(x) - teacher(x)).abs().mean()
    assert gap_dist < gap_plain


def test_distiller_counts_training_calls_only():
    from prunekit.schedule.config import DistillConfig
    from prunekit.schedule.distill import Distiller

    teacher, student = ToyNet(3, 4), ToyNet(3, 4)
    d = Distiller(student, teacher, DistillConfig(weight=2.0, features=True), {"blocks.1": "blocks.1"})
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        student(x)  # an evaluation: no distillation term
    loss, logs = d.pop_loss()
    assert float(loss) == 0.0
    student(x)
    loss, logs = d.pop_loss()
    expected = torch.sqrt((student(x) - teacher(x)) ** 2 + 1e-6).mean()
    d.pop_loss()
    torch.testing.assert_close(logs["distill_out"], float(expected.detach()))
    assert float(loss.detach()) > 2.0 * logs["distill_out"] - 1e-6 and logs["distill_feat"] > 0
    d.close()
    student(x)
    assert float(d.pop_loss()[0]) == 0.0


def test_renumbered_path_maps_through_removed_sequential_members():
    dense = ToyNet(5, 4)
    removed = ["blocks.0", "blocks.2"]
    assert renumbered_path("blocks.1.body.0", removed, dense) == "blocks.0.body.0"
    assert renumbered_path("blocks.3", removed, dense) == "blocks.1"
    assert renumbered_path("blocks.2.body", removed, dense) is None
    assert renumbered_path("tail", removed, dense) == "tail"


def test_plan_compose_maps_a_second_step_back_to_dense_paths():
    """Two removals in a row (each on the model the previous one produced) compose into one plan from
    the dense model that replays to the same architecture and says where kept modules went."""
    dense = ToyNet(5, 4)
    x = torch.rand(1, 3, 8, 8)
    graph = pk.analyze(dense, x)
    first = pk.plan(dense, graph, strategy="positional", target=pk.KeepBlocks(4))
    first = first.model_copy(update={"removed": ["blocks.0"]})  # the first block, so later ones re-index
    once = pk.apply(dense, first)
    step = pk.plan(once, pk.analyze(once, x), strategy="positional", target=pk.KeepBlocks(2))
    twice = pk.apply(once, step)
    whole = first.compose(step, dense, sum(p.numel() for p in twice.parameters()))
    assert step.removed == ["blocks.2", "blocks.3"] and whole.removed == ["blocks.0", "blocks.3", "blocks.4"]
    assert whole.stats.params_before == first.stats.params_before
    replayed = pk.apply(dense, whole)
    assert all(torch.equal(a, b) for a, b in zip(replayed.state_dict().values(), twice.state_dict().values()))
    assert whole.path_after("blocks.2.body", dense) == "blocks.1.body" and whole.path_after("blocks.3", dense) is None


def test_task_hooks_are_the_tasks_own_or_the_defaults():
    from prunekit.schedule.task import TaskHooks

    plain = TaskHooks.of(ToyTask())
    model = ToyNet(2, 4)
    assert plain.layout is None and plain.distill_output is None and plain.state_dict() is None
    assert plain.train_module(model) is model and plain.setup(None) is None

    class WithHooks(ToyTask):
        layout = "a layout"

        def state_dict(self):
            return {"step": 3}

    own = TaskHooks.of(WithHooks())
    assert own.layout == "a layout" and own.state_dict() == {"step": 3}


def test_model_task_prunes_a_user_trained_model(tmp_path):
    """The no-plugin path: a model trained elsewhere, given as weights + data + loss."""
    task_src = ToyTask()
    trained = ToyNet(4, 8)
    data = [(task_src.x[i:i + 4], task_src.y[i:i + 4]) for i in range(0, 32, 4)]
    task = ModelTask(build=lambda: ToyNet(4, 8), weights=_state(trained), data=data,
                     loss_fn=lambda out, y: (out - y).abs().mean())
    cfg = {"seed": 0, "out_dir": str(tmp_path / "user"), "progress": False, "stages": [
        {"kind": "prune", "strategy": "block_influence", "target": {"kind": "keep_blocks", "n": 3}, "calibration": 2},
        {"kind": "finetune", "iterations": 4, "distill": {"weight": 1.0}}]}
    result = run(cfg, task=task)
    assert len(result.model.blocks) == 3
    assert "eval_loss" in result.metrics
    assert torch.equal(task.build_model().head.weight, trained.head.weight)


def test_data_stream_is_reproducible_per_seed():
    t = ToyTask()
    a = list(itertools.islice(t.train_batches(5, 0, 1, batch_size=2), 3))
    b = list(itertools.islice(t.train_batches(5, 0, 1, batch_size=2), 3))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))


def test_init_checkpoint_that_does_not_fit_raises_checkpoint_error(tmp_path):
    from safetensors.torch import save_file

    from prunekit.errors import CheckpointError

    wrong = tmp_path / "wrong.safetensors"
    save_file({"head.weight": torch.zeros(1)}, str(wrong))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    stages = [{"kind": "train", "iterations": 1, "batch": 2}]
    with pytest.raises(CheckpointError, match=r"wrong\.safetensors.*missing: .*head\.bias"):
        run(config(tmp_path / "a", stages=stages, init_checkpoint=str(wrong)))
    with pytest.raises(CheckpointError, match=r"cannot read .*garbage\.pth as a weights-only state_dict file"):
        run(config(tmp_path / "b", stages=stages, init_checkpoint=str(garbage)))


def test_model_task_weights_that_do_not_fit_raise_checkpoint_error(tmp_path):
    from prunekit.errors import CheckpointError

    data = [(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))]
    bad = ModelTask(build=lambda: ToyNet(4, 8), weights=_state(ToyNet(2, 8)), data=data,
                    loss_fn=lambda out, y: (out - y).abs().mean())
    with pytest.raises(CheckpointError, match=r"ModelTask\.weights.*missing: blocks\.2"):
        bad.build_model()
    with pytest.raises(CheckpointError, match=r"cannot read .*nope\.pt as a weights-only state_dict file"):
        ModelTask(build=lambda: ToyNet(4, 8), weights=tmp_path / "nope.pt", data=data,
                  loss_fn=lambda out, y: (out - y).abs().mean()).build_model()


def test_rng_state_leaves_cuda_alone_until_the_process_has_used_it(monkeypatch):
    """A CPU run on a GPU machine must not create a CUDA context to save an unused CUDA random stream
    (in a process forked from one that used CUDA, asking fails outright)."""
    from prunekit.schedule import checkpoint as ckpt

    def forbidden():
        raise RuntimeError("Cannot re-initialize CUDA in forked subprocess")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", forbidden)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert "cuda" not in ckpt.rng_state()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.zeros(8, dtype=torch.uint8)])
    assert len(ckpt.rng_state()["cuda"]) == 1


def test_prune_stage_passes_channel_importance_and_round_to(tmp_path):
    stages = [{"kind": "prune", "strategy": "magnitude", "calibration": 2, "channel_importance": "activation",
               "round_to": 3, "target": {"kind": "channel_ratio", "prune": 0.4}}]
    result = run(config(tmp_path / "imp", stages=stages))
    assert result.plan.channel_importance == "activation" and result.plan.round_to == 3
    widths = [m.out_channels for m in result.model.modules() if isinstance(m, nn.Conv2d)]
    assert 6 in widths and 8 not in widths  # 8 x 0.6 = 4.8 -> nearest multiple of 3
