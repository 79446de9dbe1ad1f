"""Training clips from a user's own footage, with no ground truth: the `unlabeled` dataset.

ROOT may be one video file, one folder of frames, or a folder holding video files and/or frame
folders (each one sequence). Frame folders are PNGs ordered like test sets (`list_frames`); videos
are decoded with OpenCV (`tecogan_plugin.upscale.video`), at most `max_frames` consecutive frames
each, kept in memory as uint8.

Two roles:
- `lr` (default): the footage is what the user will upscale. Clips are LR crops of
  `gt_crop / scale` pixels and carry no GT; healing distils the dense teacher's output on them.
- `hr`: the footage is high-resolution. It is sampled like any training set and BD-degraded on the
  device (`bd_train_pair`), so the clips have GT as well as LR frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from prunekit.errors import DataError
from tecogan_plugin.data.frames import list_frames, png_info, read_sized
from tecogan_plugin.data.sampler import TrainingClips, reflect_index

ROLES = ("lr", "hr")
DEFAULT_MAX_FRAMES = 300


def _is_video(path: Path) -> bool:
    from tecogan_plugin.upscale.video import VIDEO_SUFFIXES

    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def _decode(path: Path, max_frames: int) -> np.ndarray:
    """The first `max_frames` frames of a video as (T,H,W,3) uint8 RGB."""
    from tecogan_plugin.upscale.video import open_source

    frames = []
    for frame in open_source(path):
        frames.append(frame)
        if len(frames) == max_frames:
            break
    if not frames:
        raise DataError(f"{path}: no frame could be decoded from this video")
    return np.stack(frames)


class FootageFrames:
    """A FrameSource (see data.sampler) over the sequences found under `root`: PNG folders are read
    on demand, videos decoded once into memory."""

    def __init__(self, root: str | Path, max_frames: int = DEFAULT_MAX_FRAMES) -> None:
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise DataError(f"{self.root}: footage path does not exist (expected a video file, a folder of "
                            ".png frames, or a folder of videos / frame folders)")
        if max_frames < 1:
            raise DataError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = max_frames
        self.sequences: dict[str, tuple[int, int, int]] = {}
        self._decoded: dict[str, np.ndarray] = {}
        self._paths: dict[str, list[Path]] = {}
        if _is_video(self.root):
            self._add_video(self.root)
        elif self.root.is_dir() and list_frames(self.root):  # one frame folder: one sequence named after it
            self._add_folder(self.root)
        elif self.root.is_dir():
            for child in sorted(self.root.iterdir()):
                if _is_video(child):
                    self._add_video(child)
                elif child.is_dir() and list_frames(child):
                    self._add_folder(child)
        if not self.sequences:
            raise DataError(f"{self.root}: no footage found (a video file, or .png frames in this folder or in "
                            "its sub-folders, or video files in it)")

    def _name(self, path: Path) -> str:
        return path.stem if path.stem not in self.sequences else path.name

    def _add_folder(self, folder: Path) -> None:
        paths = list_frames(folder)[: self.max_frames]
        info = png_info(paths[0])
        name = self._name(folder)
        self._paths[name] = paths
        self.sequences[name] = (len(paths), info.height, info.width)

    def _add_video(self, path: Path) -> None:
        frames = _decode(path, self.max_frames)
        name = self._name(path)
        self._decoded[name] = frames
        self.sequences[name] = (frames.shape[0], frames.shape[1], frames.shape[2])

    def frames(self, seq: str, indices: Sequence[int]) -> list[np.ndarray]:
        if seq in self._decoded:
            return [self._decoded[seq][i] for i in indices]
        _, h, w = self.sequences[seq]
        return read_sized(self._paths[seq], indices, h, w)


class LRClips(Dataset):
    """LR-only training clips (T,3,crop,crop) uint8 from footage: a random start and crop, then a
    random flip, temporal reversal and rot90, drawn from a generator seeded by (seed, epoch, index)
    like `TrainingClips`. Frames past a sequence's end are mirrored (`reflect_index`)."""

    has_gt = False

    def __init__(self, source: FootageFrames, tempo_extent: int, crop: int, seed: int = 0) -> None:
        self.source, self.tempo_extent, self.crop, self.seed = source, tempo_extent, crop, seed
        self.epoch = 0
        self.index: list[tuple[str, int]] = []
        for name, (t, h, w) in sorted(source.sequences.items()):
            if min(h, w) < crop:
                raise DataError(f"footage {name!r}: frames {w}x{h} are smaller than the {crop} px LR crop "
                                "(lower task.options.gt_crop, which is scale x the LR crop)")
            self.index.extend((name, i) for i in range(t))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int) -> torch.Tensor:
        seq, start = self.index[idx]
        n, h, w = self.source.sequences[seq]
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        clip = np.stack(self.source.frames(seq, [reflect_index(start + j, n) for j in range(self.tempo_extent)]))
        y, x = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        clip = clip[:, y:y + self.crop, x:x + self.crop]
        flip = int(rng.integers(3))  # 0 none, 1 vertical, 2 horizontal
        if flip:
            clip = np.flip(clip, axis=flip)
        if rng.uniform() < 0.5:
            clip = clip[::-1]
        clip = np.rot90(clip, int(rng.integers(4)), axes=(1, 2))
        return torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2)))


def unlabeled(root=None, split="train", degradation="BD", scale=4, sequences=None, role="lr",
              max_frames=DEFAULT_MAX_FRAMES, tempo_extent=10, gt_crop=128, seed=0, **kwargs):
    """The `unlabeled` dataset: the user's footage at `root` (see the module docstring for `role`).
    Training only: footage without GT cannot score a test set."""
    if root is None:
        raise DataError("dataset 'unlabeled' needs root=<a video file or a folder of frames / videos>")
    if split != "train":
        raise DataError("dataset 'unlabeled' has no ground truth, so it is for training (healing) only; "
                        "evaluate on a test set with GT (eval_data)")
    if role not in ROLES:
        raise DataError(f"dataset 'unlabeled': role must be one of {ROLES}, got {role!r}")
    if sequences:
        raise DataError("dataset 'unlabeled' takes every sequence under root; select footage by path instead")
    source = FootageFrames(root, max_frames=max_frames)
    if role == "lr":
        if gt_crop % scale:
            raise DataError(f"gt_crop={gt_crop} must be a multiple of scale={scale}")
        return LRClips(source, tempo_extent=tempo_extent, crop=gt_crop // scale, seed=seed)
    if degradation.upper() != "BD":
        raise DataError("dataset 'unlabeled' with role 'hr' makes LR frames by BD degradation; set degradation BD")
    return TrainingClips(source, tempo_extent=tempo_extent, gt_crop=gt_crop, scale=scale, degradation="BD",
                         seed=seed, **kwargs)


__all__ = ["FootageFrames", "LRClips", "unlabeled", "ROLES"]
