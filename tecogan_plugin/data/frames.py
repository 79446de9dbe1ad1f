"""PNG frames on disk: which files make a sequence and in what order (the official metrics rule),
reading them as RGB uint8 with explicit conversions, and writing them atomically."""

from __future__ import annotations

import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from prunekit.errors import DataError
from prunekit.fileio import atomic_write

__all__ = ["PngInfo", "png_info", "list_frames", "read_frame", "read_sequence", "read_frames", "write_frame"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


@dataclass(frozen=True)
class PngInfo:
    """What a PNG header says: size, bit depth and colour type (no pixel decoding)."""

    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def mode(self) -> str:
        return _COLOR_TYPES.get(self.color_type, f"colour type {self.color_type}")


def png_info(path: str | Path, check_complete: bool = True) -> PngInfo:
    """Read the IHDR chunk; with `check_complete` also require the IEND trailer, which catches
    truncated files without decoding them. Raises DataError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if check_complete:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - len(_IEND)))
                tail = f.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG file (bad signature or header)")
    width, height = struct.unpack(">II", head[16:24])
    if check_complete and tail != _IEND:
        raise DataError(f"{path}: truncated PNG (no IEND chunk at the end of the file)")
    return PngInfo(width, height, head[24], head[25])


def _frame_key(name: str) -> int:
    return int("".join(re.findall(r"\d", name)))


def sequence_dirs(parent: Path, sequences: Sequence[str] | None = None) -> list[Path]:
    """The sequence folders under `parent`: the named ones (each must exist), else every sub-folder not
    starting with "." in name order; DataError naming the folder otherwise."""
    if sequences is None:
        dirs = sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not dirs:
            raise DataError(f"{parent}: no sequence folders")
        return dirs
    dirs = [parent / s for s in sequences]
    for d in dirs:
        if not d.is_dir():
            raise DataError(f"{d}: sequence folder does not exist")
    return dirs


def list_frames(seq_dir: str | Path) -> list[Path]:
    """The frames of a sequence, as the official metrics.py lists them: files ending in `.png`
    (case-sensitive) whose name does not start with "IB", sorted by the integer formed by all the
    digits in the name. Every other file is ignored. A `.png` name without digits has no place in
    that order and raises DataError; so does a missing folder."""
    seq_dir = Path(seq_dir)
    if not seq_dir.is_dir():
        raise DataError(f"{seq_dir}: sequence folder does not exist")
    names = [p.name for p in seq_dir.iterdir() if p.name.endswith(".png") and not p.name.startswith("IB")]
    for n in names:
        if not re.search(r"\d", n):
            raise DataError(f"{seq_dir / n}: frame name has no digits, so its position in the sequence is undefined")
    names.sort(key=lambda n: (_frame_key(n), n))
    return [seq_dir / n for n in names]


def read_frame(path: str | Path) -> np.ndarray:
    """Decode a PNG to HWC RGB uint8. Grayscale is replicated to 3 channels, alpha is dropped,
    palette is expanded and 16-bit is reduced to 8-bit by keeping the high byte (what cv2.imread,
    used by the official metrics, does); each conversion emits a warning naming the file.
    Unreadable or truncated files raise DataError naming the file."""
    path = Path(path)
    info = png_info(path)
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.shape[0] != info.height or img.shape[1] != info.width:
        raise DataError(f"{path}: PNG could not be decoded (corrupt data)")
    done = []
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
        done.append("16-bit reduced to 8-bit (high byte)")
    elif img.dtype != np.uint8:
        raise DataError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
        done.append("grayscale replicated to RGB")
    else:
        if img.shape[2] == 4:
            img = img[:, :, :3]
            done.append("alpha channel dropped")
        elif img.shape[2] == 2:
            img = np.repeat(img[:, :, :1], 3, axis=2)
            done.append("alpha channel dropped, grayscale replicated to RGB")
        img = np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB
    if info.color_type in (0, 4) and not any("grayscale" in d for d in done):
        done.append("grayscale replicated to RGB")  # cv2 may already have expanded it
    if info.color_type == 3:
        done.append("palette expanded to RGB")
    if done:
        warnings.warn(f"{path}: {info.mode} {info.bit_depth}-bit PNG: " + "; ".join(done), stacklevel=2)
    return img


def read_sized(paths: list[Path], indices: Sequence[int], height: int, width: int) -> list[np.ndarray]:
    """Frames `indices` of a sequence whose frames are all `width` x `height` (its first frame's size);
    DataError naming a frame of another size."""
    out = []
    for i in indices:
        img = read_frame(paths[i])
        if img.shape[:2] != (height, width):
            raise DataError(f"{paths[i]}: frame size {img.shape[1]}x{img.shape[0]} differs from "
                            f"{width}x{height} of {paths[0].name}")
        out.append(img)
    return out


def read_sequence(seq_dir: str | Path) -> np.ndarray:
    """All frames of a sequence as (T,H,W,3) uint8. Empty folders and frames of differing size
    raise DataError naming the folder or file."""
    paths = list_frames(seq_dir)
    if not paths:
        raise DataError(f"{seq_dir}: empty sequence (no .png frames)")
    return read_frames(paths)


def read_frames(paths: list[Path]) -> np.ndarray:
    """Frames at `paths` as (T,H,W,3) uint8; all must share one size."""
    first = read_frame(paths[0])
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first
    for i, p in enumerate(paths[1:], start=1):
        img = read_frame(p)
        if img.shape != first.shape:
            raise DataError(f"{p}: frame size {img.shape[1]}x{img.shape[0]} differs from "
                            f"{first.shape[1]}x{first.shape[0]} of {paths[0].name}")
        out[i] = img
    return out


def write_frame(path: str | Path, rgb: np.ndarray) -> None:
    """Write an HWC RGB uint8 (or HW gray) image as PNG via a temp file + os.replace, so a crash
    never leaves a truncated frame behind."""
    path = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] != 3):
        raise DataError(f"{path}: write_frame expects HxWx3 RGB uint8, got {rgb.dtype} {rgb.shape}")
    img = rgb if rgb.ndim == 2 else np.ascontiguousarray(rgb[:, :, ::-1])
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise DataError(f"{path}: PNG encoding failed")
    atomic_write(path, buf.tobytes())
