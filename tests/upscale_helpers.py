"""What the `prunekit upscale` tests share: a tiny published-style generator file and panning frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tecogan_plugin.nets import FRNet


def tiny_generator_file(folder: Path, nb: int = 1) -> Path:
    """A bare FRNet state_dict (nf 8, seed 0) named like a published BD generator."""
    torch.manual_seed(0)
    path = folder / "tiny_BD.pth"
    torch.save(FRNet(nf=8, nb=nb).state_dict(), path)
    return path


def panning_frames(n: int, h: int, w: int, seed: int) -> list[np.ndarray]:
    """n uint8 RGB frames of h x w cut from one random image, moving one pixel right and down per frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h + n, w + n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[i : i + h, i : i + w]) for i in range(n)]
