"""The TecoGAN training task in the schedule engine, on a tiny FRNet and the built-in data:
FRVSR train -> prune -> distilled fine-tune; the GAN objective with a stand-in VGG19 (D updates,
D state resumed bit-for-bit); missing VGG weights; bad options; a published-generator start."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from prunekit.errors import CheckpointError, ConfigError, MissingWeightsError
from prunekit.schedule import run
from tecogan_plugin.losses import VGG19_FILE, VGGFeatureLoss
from tecogan_plugin.nets import FRNet
from tecogan_plugin.train import TecoGANTask

TINY = {"nf": 8, "nb": 3, "gt_crop": 32, "tempo_extent": 3, "eval_sequences": ["00_coffee"],
        "eval_max_frames": 6, "calibration_lr_size": 16}


@pytest.fixture
def vgg_hub(tmp_path, monkeypatch) -> Path:
    """A randomly initialised VGG19 feature stack saved under the real file name in a temp hub cache."""
    from torchvision.models.vgg import cfgs, make_layers

    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    feats = make_layers(cfgs["E"])
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, home / "hub" / "checkpoints" / VGG19_FILE)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _config(out: Path, task: str = "tecogan.frvsr", device: str = "cpu", **options: Any) -> dict[str, Any]:
    """CPU unless asked: resume is bit-identical only on CPU (cuDNN kernels are not deterministic)."""
    return {
        "task": {"name": task, "options": {**TINY, **options}}, "seed": 0, "out_dir": str(out), "progress": False,
        "ckpt_every": 1, "device": device,
        "stages": [
            {"kind": "train", "iterations": 2, "batch": 1, "optimizer": {"lr": 1e-3}},
            {"kind": "prune", "strategy": "block_influence", "target": {"kind": "keep_blocks", "n": 2},
             "calibration": 2},
            {"kind": "finetune", "iterations": 2, "batch": 1, "optimizer": {"lr": 5e-4},
             "distill": {"weight": 1.0, "features": True}},
        ],
    }


def _crash_at_step_3_then_resume(cfg: dict[str, Any], out: Path):
    """Run `cfg` in `out` until an interrupt at global step 3, then resume it to the end."""
    crashed = dict(copy.deepcopy(cfg), out_dir=str(out))

    def crash(info):
        if info.global_step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(crashed, on_step=crash)
    return run(crashed, resume=True)


def test_frvsr_train_prune_distill_finetune(tmp_path):
    result = run(_config(tmp_path / "frvsr"))
    assert isinstance(result.model, FRNet)
    assert len(result.model.srnet.resblocks) == 2
    assert result.plan.removed and all(p.startswith("srnet.resblocks.") for p in result.plan.removed)
    assert 10 < result.metrics["eval_psnr"] < 60 and 0 < result.metrics["eval_ssim"] <= 1
    names = {k for h in result.history for k in h}
    assert {"pixel", "warp", "distill_out", "distill_feat"} <= names
    assert "pingpong" not in names  # FRVSR objective


def test_gan_objective_updates_d_and_resumes_identically(tmp_path, vgg_hub):
    cfg = _config(tmp_path / "gan", task="tecogan.gan", eval_metrics=["psnr"])
    cfg["stages"] = cfg["stages"][:1] + [dict(cfg["stages"][0], kind="finetune", iterations=2)]
    full = run(cfg)
    names = {k for h in full.history for k in h}
    assert {"pingpong", "vgg", "gan_g", "d_loss", "d_distance", "d_updated"} <= names
    assert any(h.get("d_updated") == 1.0 for h in full.history)

    resumed = _crash_at_step_3_then_resume(cfg, tmp_path / "gan2")
    assert [h.get("loss") for h in resumed.history] == [h.get("loss") for h in full.history]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_missing_vgg_weights_fail_clearly_and_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(MissingWeightsError, match=r"vgg19-dcbb9e9d\.pth.*feature_loss: false"):
        run(_config(tmp_path / "r", task="tecogan.gan"))
    assert not (tmp_path / "r").exists()
    task = TecoGANTask(objective="gan", feature_loss=False, **TINY)
    assert task.vgg is None



def test_unreadable_vgg_weights_are_a_checkpoint_error(tmp_path):
    bad = tmp_path / "vgg19-dcbb9e9d.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"vgg19-dcbb9e9d\.pth"):
        VGGFeatureLoss(bad)

@pytest.mark.parametrize("options,match", [
    ({"nbb": 3}, r"task\.options\.nbb: unknown key"),
    ({"objective": "wgan"}, r"task\.options\.objective: .*'frvsr' or 'gan'"),
    ({"gt_crop": 36}, r"task\.options\.gt_crop: 36 must be a multiple of 32"),
    ({"train_data": "imagenet"}, r"task\.options\.train_data: unknown dataset 'imagenet'"),
    ({"train_data": "folder", "train_root": "/no/such/folder"}, r"task\.options\.train_root: .*does not exist"),
])
def test_bad_task_options_name_the_field(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        run(_config(tmp_path / "r", **options))
    assert not (tmp_path / "r").exists()


def test_starts_from_a_published_generator_file(tmp_path):
    torch.manual_seed(7)
    published = FRNet(nf=8, nb=3)
    torch.save(published.state_dict(), tmp_path / "G_iter400000.pth")
    cfg = _config(tmp_path / "init")
    cfg["init_checkpoint"] = str(tmp_path / "G_iter400000.pth")
    cfg["stages"] = [{"kind": "prune", "strategy": "positional", "target": {"kind": "keep_blocks", "n": 2},
                      "calibration": 0}]
    result = run(cfg)
    removed = {int(p.rsplit(".", 1)[1]) for p in result.plan.removed}
    kept = [i for i in range(3) if i not in removed]
    for new, old in enumerate(kept):
        assert torch.equal(result.model.srnet.resblocks[new].conv[0].weight, published.srnet.resblocks[old].conv[0].weight)
    assert torch.equal(result.model.fnet.flow[2].weight, published.fnet.flow[2].weight)


def test_batches_are_reproducible_and_start_skips_exactly():
    task = TecoGANTask(**TINY)
    it = task.train_batches(5, 0, 1, batch_size=2)
    first = [next(it) for _ in range(3)]
    jumped = next(task.train_batches(5, 0, 1, batch_size=2, start=2))
    assert torch.equal(first[2][0], jumped[0]) and torch.equal(first[2][1], jumped[1])
    lr, gt = first[0]
    assert lr.shape == (2, 3, 3, 8, 8) and gt.shape == (2, 3, 3, 32, 32)
    rank1 = next(task.train_batches(5, 1, 2, batch_size=1))
    assert torch.equal(rank1[1][0], first[0][1][1])  # rank 1 of 2 gets the second clip of the global batch


@pytest.mark.parametrize("strategy", ["taylor", "ablation"])
def test_calibration_carries_targets_for_loss_based_strategies(tmp_path, strategy):
    """The task's calibration holds GT targets and the pixel loss, so `taylor` (which needs a task
    loss) runs through the prune stage, and `ablation` scores by the loss instead of output drift."""
    calib = TecoGANTask(**TINY).calibration(2)
    assert calib.has_task_loss and len(calib.targets) == 2
    lr_curr, _, hr_prev = calib.inputs[0]
    assert calib.targets[0].shape == hr_prev.shape and lr_curr.shape[-1] * 4 == hr_prev.shape[-1]
    cfg = _config(tmp_path / strategy)
    cfg["stages"] = [cfg["stages"][0], {**cfg["stages"][1], "strategy": strategy}]
    result = run(cfg)
    assert len(result.plan.removed) == 1
    assert sorted(result.plan.scores) == [f"srnet.resblocks.{i}" for i in range(3)]


def test_open_fnet_lets_a_prune_stage_narrow_fnet(tmp_path):
    """By default the task's layout keeps FNet whole; `open_fnet: true` lets a channel target reach it,
    while the 2-channel flow head stays 2 channels and the model still runs."""
    assert TecoGANTask(**TINY).layout.protect == ["fnet"]
    dense = FRNet(nf=8, nb=3)
    cfg = _config(tmp_path / "open", open_fnet=True)
    cfg["stages"] = [{"kind": "prune", "strategy": "positional", "calibration": 0,
                      "target": [{"kind": "keep_blocks", "n": 2}, {"kind": "channel_ratio", "prune": 0.5}]}]
    result = run(cfg)
    model = result.model
    assert len(model.srnet.resblocks) == 2
    assert model.fnet.flow[2].weight.shape[0] == 2
    fnet_params = sum(p.numel() for p in model.fnet.parameters())
    assert fnet_params < 0.5 * sum(p.numel() for p in dense.fnet.parameters())
    assert any(p.startswith("fnet.") for p in {s.layer for s in result.plan.channels})
    lr = torch.rand(1, 1, 3, 8, 8)
    assert model.forward_sequence(lr)["hr"].shape == (1, 1, 3, 32, 32)


@pytest.mark.cuda
def test_train_prune_finetune_and_resume_on_cuda(tmp_path):
    """The whole schedule on the GPU: batches, calibration and evaluation follow the model's device, and a
    resumed run matches an uninterrupted one to float tolerance (cuDNN is not bit-deterministic)."""
    cfg = _config(tmp_path / "full", device="cuda")
    full = run(cfg)
    assert all(p.device.type == "cuda" for p in full.model.parameters())
    assert len(full.model.srnet.resblocks) == 2 and 10 < full.metrics["eval_psnr"] < 60

    resumed = _crash_at_step_3_then_resume(cfg, tmp_path / "crashed")
    losses = [[h["loss"] for h in r.history if "loss" in h] for r in (full, resumed)]
    assert len(losses[0]) == len(losses[1]) == 4
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-3, atol=1e-6)
