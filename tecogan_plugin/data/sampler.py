"""Training clips for FRVSR/TecoGAN: `tempo_extent` consecutive frames from a random start, with
the reference augmentations (random crop, flips, BD temporal flip, rot90, moving-first-frame).

Randomness comes from a generator seeded by (seed, epoch, index), never from global or
per-worker state, so a clip is the same whatever the number of DataLoader workers."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from prunekit.errors import DataError
from tecogan_plugin.data.degrade import bd_border
from tecogan_plugin.data.frames import list_frames, png_info, read_sized
from tecogan_plugin.data.lmdb_store import LmdbFrames, sequence_folders

__all__ = ["FrameSource", "FolderFrames", "open_source", "TrainingClips", "reflect_index"]


class FrameSource(Protocol):
    """Where training frames come from: `sequences` maps name -> (frames, height, width)."""

    sequences: dict[str, tuple[int, int, int]]

    def frames(self, seq: str, indices: Sequence[int]) -> list[np.ndarray]: ...


class FolderFrames:
    """Frames from `<root>/<seq>/*.png` (sizes read from headers; pixels read on demand)."""

    def __init__(self, root: str | Path, sequences: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.paths: dict[str, list[Path]] = {}
        self.sequences: dict[str, tuple[int, int, int]] = {}
        for d in sequence_folders(self.root, sequences):
            paths = list_frames(d)
            if not paths:
                raise DataError(f"{d}: empty sequence (no .png frames)")
            info = png_info(paths[0])
            self.paths[d.name] = paths
            self.sequences[d.name] = (len(paths), info.height, info.width)

    def frames(self, seq: str, indices: Sequence[int]) -> list[np.ndarray]:
        _, h, w = self.sequences[seq]
        return read_sized(self.paths[seq], indices, h, w)


def open_source(source, sequences: Sequence[str] | None = None, lr: bool = False, scale: int = 4) -> FrameSource:
    """A FrameSource from an object, "builtin"/None, an LMDB folder or a folder of PNG sequences.
    With `lr`, the matching LR source (BI): `<root>/Bicubic{s}xLR[.lmdb]` next to `GT`."""
    if source is None or source == "builtin":
        from tecogan_plugin.data.synthetic import ensure_builtin

        source = ensure_builtin() / "train"
    if not isinstance(source, (str, Path)):
        return source
    root = Path(source)
    if lr:
        for cand in (root / f"Bicubic{scale}xLR", root.parent / f"Bicubic{scale}xLR.lmdb"):
            if cand.is_dir():
                return open_source(cand, sequences)
        raise DataError(f"{root}: BI training needs LR frames in {root / f'Bicubic{scale}xLR'} "
                        f"or {root.parent / f'Bicubic{scale}xLR.lmdb'}")
    if (root / "meta_info.json").is_file() or (root / "meta_info.pkl").is_file() or root.suffix == ".lmdb":
        store = LmdbFrames(root)
        if sequences is not None:
            missing = [s for s in sequences if s not in store.sequences]
            if missing:
                raise DataError(f"{root}: sequences not in the store: {', '.join(missing)}")
            store.sequences = {s: store.sequences[s] for s in sequences}
        return store
    return FolderFrames(root, sequences)


def reflect_index(j: int, n: int) -> int:
    """Reference rule for frames past the end: j -> 2n - j - 2 (mirror without repeating the last)."""
    if n == 1:
        return 0
    period = 2 * n - 2
    j = j % period
    return j if j < n else period - j


class TrainingClips(Dataset):
    """Clips for training. BD: uint8 GT tensors (T,3,gt_crop+2b,gt_crop+2b) with b = the BD kernel
    border (136 for crop 128); the LR is made on the device by `bd_train_pair`. BI: (lr, gt) uint8
    tensors (T,3,gt_crop/s,gt_crop/s) and (T,3,gt_crop,gt_crop) from a paired LR source.

    Length = total frames (every frame is a possible start). Call `set_epoch(e)` each epoch for new
    draws (with persistent DataLoader workers, pass the epoch through a fresh DataLoader instead)."""

    def __init__(
        self,
        source=None,
        tempo_extent: int = 10,
        gt_crop: int = 128,
        scale: int = 4,
        degradation: str = "BD",
        seed: int = 0,
        moving_first_frame: bool = True,
        moving_factor: float = 0.7,
        sequences: Sequence[str] | None = None,
        lr_source=None,
        sigma: float = 1.5,
    ) -> None:
        self.degradation = degradation.upper()
        if self.degradation not in ("BD", "BI"):
            raise DataError(f"degradation must be 'BD' or 'BI', got {degradation!r}")
        if gt_crop % scale:
            raise DataError(f"gt_crop={gt_crop} must be a multiple of scale={scale}")
        self.gt = open_source(source, sequences)
        self.lr = None
        if self.degradation == "BI":
            self.lr = open_source(lr_source, sequences) if lr_source is not None else \
                open_source(source, sequences, lr=True, scale=scale)
        self.tempo_extent, self.scale, self.seed = tempo_extent, scale, seed
        self.moving_first_frame, self.moving_factor = moving_first_frame, moving_factor
        self.gt_crop = gt_crop
        self.border = bd_border(sigma) if self.degradation == "BD" else 0
        self.patch = gt_crop + 2 * self.border
        self.epoch = 0
        self.index: list[tuple[str, int]] = []
        for name, (t, h, w) in sorted(self.gt.sequences.items()):
            if min(h, w) < self.patch:
                raise DataError(f"sequence {name!r}: frames {w}x{h} are smaller than the {self.patch} px crop")
            if self.lr is not None:
                if name not in self.lr.sequences:
                    raise DataError(f"sequence {name!r} has no LR frames in the BI source")
                lt, lh, lw = self.lr.sequences[name]
                if lt != t or (lh, lw) != (h // scale, w // scale):
                    raise DataError(f"sequence {name!r}: LR {lt} frames {lw}x{lh} do not match GT {t} frames "
                                    f"{w}x{h} at scale {scale}")
            self.index.extend((name, i) for i in range(t))
        if not self.index:
            raise DataError("training source holds no frames")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def _moving(self, rng: np.random.Generator, seq: str, start: int):
        """Reference moving-first-frame: per-frame integer offsets floor(U(lo, hi)) (HR px for BD,
        LR px for BI), cumulatively summed; every window is cut from the first frame, cropped to
        the area common to all. None when that area is smaller than the crop (then a normal clip
        is used), which only happens for frames less than ~36 px larger than the crop."""
        bi = self.lr is not None
        lo, hi = (-1.5, 1.5) if bi else (-3.5, 4.5)
        off = np.floor(rng.uniform(lo, hi, size=(self.tempo_extent, 2))).astype(np.int64)
        pos = np.cumsum(off, axis=0)
        pos -= pos.min(axis=0)
        span = pos.max(axis=0)
        base = self.lr.sequences[seq] if bi else self.gt.sequences[seq]
        h, w = base[1] - span[0], base[2] - span[1]
        if min(h, w) < (self.gt_crop // self.scale if bi else self.patch):
            return None
        gt0 = self.gt.frames(seq, [start])[0]
        if not bi:
            return np.stack([gt0[y:y + h, x:x + w] for y, x in pos]), None
        lr0, s = self.lr.frames(seq, [start])[0], self.scale
        gt = np.stack([gt0[y * s:(y + h) * s, x * s:(x + w) * s] for y, x in pos])
        return gt, np.stack([lr0[y:y + h, x:x + w] for y, x in pos])

    def __getitem__(self, idx: int):
        seq, start = self.index[idx]
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        n = self.gt.sequences[seq][0]
        bi = self.lr is not None
        clip = None
        if self.moving_first_frame and rng.uniform() > self.moving_factor:
            clip = self._moving(rng, seq, start)
        if clip is None:
            frames = [reflect_index(start + j, n) for j in range(self.tempo_extent)]
            gt = np.stack(self.gt.frames(seq, frames))
            lr = np.stack(self.lr.frames(seq, frames)) if bi else None
        else:
            gt, lr = clip
        if bi:
            lc = self.gt_crop // self.scale
            y = int(rng.integers(0, lr.shape[1] - lc + 1))
            x = int(rng.integers(0, lr.shape[2] - lc + 1))
            lr = lr[:, y:y + lc, x:x + lc]
            s = self.scale
            gt = gt[:, y * s:(y + lc) * s, x * s:(x + lc) * s]
        else:
            y = int(rng.integers(0, gt.shape[1] - self.patch + 1))
            x = int(rng.integers(0, gt.shape[2] - self.patch + 1))
            gt = gt[:, y:y + self.patch, x:x + self.patch]
        flip = int(rng.integers(3))  # 0 none, 1 vertical, 2 horizontal
        reverse = (not bi) and rng.uniform() < 0.5
        k = int(rng.integers(4))
        clips = [gt, lr] if bi else [gt]
        out = []
        for c in clips:
            if flip:
                c = np.flip(c, axis=flip)  # axis 1 = rows (vertical flip), axis 2 = columns
            if reverse:
                c = c[::-1]
            c = np.rot90(c, k, axes=(1, 2))
            out.append(torch.from_numpy(np.ascontiguousarray(c.transpose(0, 3, 1, 2))))
        return (out[1], out[0]) if bi else out[0]

