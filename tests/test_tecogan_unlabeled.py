"""Healing without ground truth: the `unlabeled` footage dataset (PNG folders, video files, LR and HR
roles) and the schedule loop that distils a pruned FRNet towards its dense teacher on it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from prunekit.errors import ConfigError, DataError
from prunekit.schedule import run
from tecogan_plugin.data.frames import write_frame
from tecogan_plugin.data.unlabeled import FootageFrames, LRClips, unlabeled
from tecogan_plugin.nets import FRNet
from tecogan_plugin.train import TecoGANTask


def _moving_frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """A smooth random texture panning one pixel per frame (so flow and detail both matter)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (h + n, w + n, 3)).astype(np.float32), (0, 0), 1.2)
    return [np.clip(base[i:i + h, i:i + w], 0, 255).astype(np.uint8) for i in range(n)]


def _png_folder(folder: Path, n: int = 6, h: int = 24, w: int = 28, seed: int = 0) -> Path:
    for i, frame in enumerate(_moving_frames(n, h, w, seed)):
        write_frame(folder / f"frame_{i:03d}.png", frame)
    return folder


def _video(path: Path, n: int = 6, h: int = 24, w: int = 32) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for frame in _moving_frames(n, h, w, seed=5):
        writer.write(frame[:, :, ::-1])
    writer.release()
    return path


def test_footage_from_folder_video_and_mixed_root(tmp_path):
    single = FootageFrames(_png_folder(tmp_path / "one"))
    assert single.sequences == {"one": (6, 24, 28)}
    video = FootageFrames(_video(tmp_path / "clip.avi"), max_frames=4)
    assert video.sequences == {"clip": (4, 24, 32)}
    mixed = tmp_path / "mixed"
    _png_folder(mixed / "a", n=5)
    _video(mixed / "b.avi")
    (mixed / "notes.txt").write_text("not footage")
    both = FootageFrames(mixed)
    assert set(both.sequences) == {"a", "b"} and both.frames("b", [0, 3])[1].shape == (24, 32, 3)


def test_lr_clips_are_lr_crops_without_gt_and_seeded(tmp_path):
    clips = unlabeled(root=_png_folder(tmp_path / "f"), split="train", scale=4, tempo_extent=3, gt_crop=64, seed=3)
    assert isinstance(clips, LRClips) and not clips.has_gt and len(clips) == 6
    clip = clips[2]
    assert clip.shape == (3, 3, 16, 16) and clip.dtype == torch.uint8
    assert torch.equal(clip, clips[2])
    clips.set_epoch(1)
    assert not torch.equal(clip, clips[2])


def test_hr_role_degrades_footage_to_get_gt(tmp_path):
    folder = _png_folder(tmp_path / "hr", n=4, h=80, w=80)
    task = TecoGANTask(nf=8, nb=2, gt_crop=32, tempo_extent=3, train_data="unlabeled", train_root=str(folder),
                       unlabeled_role="hr")
    lr, gt = next(task.train_batches(seed=0, rank=0, world_size=1, batch_size=1))
    assert lr.shape == (1, 3, 3, 8, 8) and gt.shape == (1, 3, 3, 32, 32)
    loss, logs = task.loss(task.train_module(task.build_model()), (lr, gt))
    assert "pixel" in logs and torch.isfinite(loss)


def test_bad_footage_and_options_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        FootageFrames(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no footage found"):
        FootageFrames(tmp_path / "empty")
    small = _png_folder(tmp_path / "small", h=12, w=12)
    with pytest.raises(DataError, match="smaller than the 16 px LR crop"):
        unlabeled(root=small, gt_crop=64, tempo_extent=3)
    with pytest.raises(DataError, match="training"):
        unlabeled(root=small, split="test")
    with pytest.raises(ConfigError, match="needs ground truth"):
        TecoGANTask(objective="gan", train_data="unlabeled", train_root=str(small), feature_loss=False)
    task = TecoGANTask(nf=8, nb=2, gt_crop=32, tempo_extent=3, train_data="unlabeled", train_root=str(small))
    batch = next(task.train_batches(seed=0, rank=0, world_size=1, batch_size=1))
    assert batch[1] is None
    with pytest.raises(ConfigError, match="distill"):
        task.loss(task.train_module(task.build_model()), batch)


def _distance_to_teacher(student: FRNet, teacher: FRNet, frames: list[np.ndarray]) -> float:
    """Mean |student - teacher| over a recurrent run on held-out frames (uint8 outputs, in [0, 1])."""
    s = np.stack(list(student.eval().infer_sequence(frames))).astype(np.float64)
    t = np.stack(list(teacher.eval().infer_sequence(frames))).astype(np.float64)
    return float(np.abs(s - t).mean() / 255.0)


def test_gt_free_healing_moves_the_pruned_model_towards_the_teacher(tmp_path):
    """A published-format dense generator, pruned to 1 of 3 blocks, then fine-tuned on a folder of LR
    frames with distillation as the only reconstruction signal: on held-out footage the healed model
    is closer to the dense teacher than the unhealed one, and the distillation loss falls."""
    torch.manual_seed(0)
    dense = FRNet(nf=8, nb=3)
    with torch.no_grad():  # make the blocks matter, so removing two of them costs something to heal
        for p in dense.srnet.resblocks.parameters():
            p.mul_(2.0)
    pth = tmp_path / "G_dense.pth"
    torch.save(dense.state_dict(), pth)
    footage = _png_folder(tmp_path / "footage" / "shot1", n=8, h=24, w=24)
    _png_folder(tmp_path / "footage" / "shot2", n=8, h=24, w=24, seed=1)
    held_out = _moving_frames(8, 24, 24, seed=9)

    def config(out: str, iterations: int) -> dict:
        return {
            "task": {"name": "tecogan.frvsr", "options": {
                "nf": 8, "nb": 3, "gt_crop": 64, "tempo_extent": 3, "train_data": "unlabeled",
                "train_root": str(footage.parent), "eval_sequences": ["00_coffee"], "eval_max_frames": 6,
                "eval_metrics": ["psnr"]}},
            "seed": 0, "out_dir": str(tmp_path / out), "progress": False, "init_checkpoint": str(pth),
            "log_every": 1,
            "stages": [
                {"kind": "prune", "strategy": "block_influence", "target": {"kind": "keep_blocks", "n": 1},
                 "calibration": 2},
                {"kind": "finetune", "iterations": iterations, "batch": 2, "optimizer": {"lr": 2e-3},
                 "distill": {"weight": 1.0}},
            ],
        }

    unhealed = run(config("unhealed", 0)).model
    healed = run(config("healed", 40))
    assert len(healed.model.srnet.resblocks) == 1
    rows = [h for h in healed.history if "distill_out" in h]
    assert len(rows) == 40 and all("pixel" not in h for h in rows)
    first, last = np.mean([h["distill_out"] for h in rows[:5]]), np.mean([h["distill_out"] for h in rows[-5:]])
    assert last < first
    before = _distance_to_teacher(unhealed, dense, held_out)
    after = _distance_to_teacher(healed.model, dense, held_out)
    assert after < 0.8 * before, (before, after)


def test_guide_workflow_runs_from_a_published_pth(tmp_path):
    """docs/guide/compress-your-footage.md end to end at tiny scale: `prunekit convert`, its YAML (sizes,
    paths and iterations shrunk), then `prunekit upscale` with the compressed model."""
    import re

    import yaml

    from prunekit.cli import main

    guide = Path(__file__).resolve().parents[1] / "docs" / "guide" / "compress-your-footage.md"
    cfg = yaml.safe_load(re.search(r"```yaml\n(.*?)```", guide.read_text(), re.S).group(1))
    torch.manual_seed(0)
    torch.save(FRNet(nf=8, nb=3).state_dict(), tmp_path / "G.pth")
    assert main(["convert", "tecogan", str(tmp_path / "G.pth"), str(tmp_path / "dense")]) == 0
    footage = _png_folder(tmp_path / "footage", n=8, h=24, w=32)
    options = cfg["task"]["options"]
    options.update(nf=8, nb=3, train_root=str(footage), gt_crop=64, calibration_gt_crop=64, tempo_extent=3,
                   eval_sequences=["00_coffee"], eval_max_frames=6)
    prune, tune = cfg["stages"]
    assert prune["replace"][0]["name"] == "tecogan.subpixel_head" and tune["distill"]["weight"] > 0
    assert prune["refit"] > 0
    prune.update(calibration=2, refit=2)
    prune["target"].update(keep=0.9, shape={"arg0": [1, 3, 32, 48], "arg1": [1, 3, 32, 48], "arg2": [1, 3, 128, 192]})
    tune.update(iterations=3, batch=1, eval_every=None)
    prune["latency_cache"] = str(tmp_path / "latency_cache")
    cfg.update(out_dir=str(tmp_path / "run"), init_checkpoint=str(tmp_path / "dense"), progress=False)
    result = run(cfg)
    assert result.plan.replaced[0].name == "tecogan.subpixel_head" and result.plan.latency is not None
    assert ",refit_layers," in (tmp_path / "run" / "metrics.csv").read_text()
    out = tmp_path / "up"
    assert main(["upscale", str(footage), "--model", str(tmp_path / "run" / "final"), "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 8
