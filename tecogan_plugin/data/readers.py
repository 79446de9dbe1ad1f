"""Test-set readers: Vid4 / ToS3 style `<root>/{GT,Gaussian4xLR,Bicubic4xLR}/<seq>/*.png`, REDS
`Raw/000..269`, and any folder of sequences. Every sequence is validated when opened (frame counts,
sizes, scale ratio, complete PNGs, enough frames for the warm-up) from PNG headers, so errors come
early and name the file; pixels are decoded lazily on first access."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from prunekit.errors import DataError
from tecogan_plugin.data.degrade import bd_downsample
from tecogan_plugin.data.frames import list_frames, png_info, read_frames, sequence_dirs

__all__ = [
    "VideoSequence",
    "lr_folder_name",
    "open_test_set",
    "open_reds",
    "open_folder",
    "REDS4",
    "reds_split",
    "DEFAULT_MIN_FRAMES",
]

REDS4 = ("000", "011", "015", "020")
DEFAULT_MIN_FRAMES = 6  # the official protocol skips 2 frames at each end; tOF needs 2 more


def lr_folder_name(degradation: str, scale: int) -> str:
    """`Gaussian4xLR` for BD, `Bicubic4xLR` for BI (the digit follows the scale)."""
    deg = _check_degradation(degradation)
    return f"{'Gaussian' if deg == 'BD' else 'Bicubic'}{scale}xLR"


def _check_degradation(degradation: str) -> str:
    deg = degradation.upper()
    if deg not in ("BD", "BI"):
        raise DataError(f"degradation must be 'BD' or 'BI', got {degradation!r}")
    return deg


@dataclass
class VideoSequence:
    """One test sequence. `gt` is (T,H,W,3) uint8; `lr` is (T,h,w,3) uint8 when read from PNGs, or
    a float tensor (T,3,h,w) in [0,1] (unquantised, like the reference's REDS path) when made from
    the GT by BD on the fly. Arrays are decoded on first access and cached."""

    name: str
    gt_paths: list[Path]
    lr_paths: list[Path] | None
    scale: int = 4
    degradation: str = "BD"
    _gt: np.ndarray | None = field(default=None, repr=False)
    _lr: np.ndarray | torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.gt_paths)

    @property
    def gt(self) -> np.ndarray:
        if self._gt is None:
            self._gt = read_frames(self.gt_paths)
        return self._gt

    @property
    def lr(self) -> np.ndarray | torch.Tensor:
        if self._lr is None:
            if self.lr_paths is not None:
                self._lr = read_frames(self.lr_paths)
            else:
                gt = torch.from_numpy(self.gt).permute(0, 3, 1, 2)[None]
                self._lr = bd_downsample(gt, scale=self.scale, pad=True)[0]
        return self._lr

    def lr_tensor(self) -> torch.Tensor:
        """LR as a float (T,3,h,w) tensor in [0,1], whichever way it was obtained."""
        lr = self.lr
        if isinstance(lr, torch.Tensor):
            return lr
        return torch.from_numpy(lr).permute(0, 3, 1, 2).float() / 255.0

    def gt_tensor(self) -> torch.Tensor:
        """GT as a float (T,3,H,W) tensor in [0,1]."""
        return torch.from_numpy(self.gt).permute(0, 3, 1, 2).float() / 255.0


def _sizes(paths: list[Path]) -> tuple[int, int]:
    """Check all frames share one size (from headers; also rejects truncated files)."""
    first = png_info(paths[0])
    for p in paths[1:]:
        info = png_info(p)
        if (info.width, info.height) != (first.width, first.height):
            raise DataError(f"{p}: frame size {info.width}x{info.height} differs from "
                            f"{first.width}x{first.height} of {paths[0].name}")
    return first.height, first.width


def _in_ratio(hr: int, lr: int, scale: int) -> bool:
    """LR may be floor (modcrop, BI) or ceil (padded BD) of HR/scale."""
    return lr in (hr // scale, -(-hr // scale))


def _open_sequence(gt_dir: Path, lr_dir: Path | None, scale: int, degradation: str, min_frames: int) -> VideoSequence:
    gt_paths = list_frames(gt_dir)
    if not gt_paths:
        raise DataError(f"{gt_dir}: empty sequence (no .png frames)")
    if len(gt_paths) < min_frames:
        raise DataError(f"{gt_dir}: {len(gt_paths)} frames, fewer than the {min_frames} the evaluation "
                        f"warm-up needs (min_frames={min_frames})")
    h, w = _sizes(gt_paths)
    lr_paths = None
    if lr_dir is not None:
        if not lr_dir.is_dir():
            raise DataError(f"{lr_dir}: LR folder for sequence {gt_dir.name!r} is missing")
        lr_paths = list_frames(lr_dir)
        if len(lr_paths) != len(gt_paths):
            raise DataError(f"{lr_dir}: {len(lr_paths)} LR frames but {len(gt_paths)} GT frames in {gt_dir}")
        lh, lw = _sizes(lr_paths)
        if not (_in_ratio(h, lh, scale) and _in_ratio(w, lw, scale)):
            raise DataError(f"{lr_paths[0]}: LR size {lw}x{lh} is not 1/{scale} of GT size {w}x{h} "
                            f"({gt_paths[0]})")
    return VideoSequence(gt_dir.name, gt_paths, lr_paths, scale=scale, degradation=degradation)


def open_test_set(
    root: str | Path,
    degradation: str = "BD",
    scale: int = 4,
    sequences: Sequence[str] | None = None,
    min_frames: int = DEFAULT_MIN_FRAMES,
) -> list[VideoSequence]:
    """Open `<root>/GT/<seq>` with its LR from `<root>/Gaussian{s}xLR` (BD) or `Bicubic{s}xLR` (BI).

    BD without an LR folder makes the LR from the GT (reflect-padded BD, float). BI requires the
    LR folder. `sequences` picks and orders sequences (default: all folders under GT, sorted)."""
    root = Path(root)
    deg = _check_degradation(degradation)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root does not exist")
    gt_root = root / "GT"
    if not gt_root.is_dir():
        raise DataError(f"{gt_root}: no GT folder (expected <root>/GT/<sequence>/*.png)")
    lr_root = root / lr_folder_name(deg, scale)
    if not lr_root.is_dir():
        if deg == "BI":
            raise DataError(f"{lr_root}: BI needs pre-computed LR frames (MATLAB bicubic); folder missing")
        lr_root = None
    out = []
    for gt_dir in sequence_dirs(gt_root, sequences):
        lr_dir = None if lr_root is None else lr_root / gt_dir.name
        out.append(_open_sequence(gt_dir, lr_dir, scale, deg, min_frames))
    return out


def open_folder(
    root: str | Path,
    scale: int = 4,
    sequences: Sequence[str] | None = None,
    min_frames: int = DEFAULT_MIN_FRAMES,
) -> list[VideoSequence]:
    """Any folder of sequences `<root>/<seq>/*.png` as GT; LR made by BD on the fly. A root that
    has a `GT/` folder is read as a test set instead."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root does not exist")
    if (root / "GT").is_dir():
        return open_test_set(root, "BD", scale, sequences, min_frames)
    return [_open_sequence(d, None, scale, "BD", min_frames) for d in sequence_dirs(root, sequences)]


def reds_split(split: str) -> list[str]:
    """REDS sequence names: `test` = REDS4 (000, 011, 015, 020); `train` = 000..269 minus REDS4."""
    if split == "test":
        return list(REDS4)
    if split == "train":
        return [f"{i:03d}" for i in range(270) if f"{i:03d}" not in REDS4]
    raise DataError(f"REDS split must be 'train' or 'test', got {split!r}")


def open_reds(
    root: str | Path,
    split: str = "test",
    scale: int = 4,
    sequences: Sequence[str] | None = None,
    min_frames: int = DEFAULT_MIN_FRAMES,
) -> list[VideoSequence]:
    """REDS `<root>/Raw/<seq>/*.png`, the split's sequences unless `sequences` is given; the LR is
    BD on the fly and stays unquantised (no LR folder exists for REDS, as in the reference)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root does not exist")
    raw = root / "Raw"
    if not raw.is_dir():
        raise DataError(f"{raw}: no Raw folder (expected <root>/Raw/000..269/*.png)")
    return [_open_sequence(d, None, scale, "BD", min_frames) for d in sequence_dirs(raw, sequences or reds_split(split))]
