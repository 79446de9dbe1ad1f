"""Spatial tiling of one FRNet step, for frames too large to run whole.

The recurrent state (previous LR frame, previous HR output) stays whole-frame: each tile crops its
padded region out of it, runs one step, and only the tile's core is written into the new whole-frame
output, which becomes the next state. So every tile sees exactly the state the untiled run would have
at its padded region; tiling errors come only from the current step's borders (zero-padded convs,
FNet's context, warps reaching past the tile) and vanish once the overlap covers their reach. Keeping
a separate state per tile would instead let border errors feed back and creep inward frame after frame.

Tile origins and padded regions sit on multiples of 8 LR px, so FNet's three 2x2 max-pools see the same
pooling grid as in the untiled run, and only tiles touching the frame's bottom/right edge get FNet's
reflect flow padding, exactly where the untiled run gets it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from prunekit.errors import ConfigError

__all__ = ["Tile", "plan_tiles", "choose_tile", "TiledStep", "MIN_TILE", "GRID"]

GRID = 8  # FNet pools three times by 2
MIN_TILE = 16


@dataclass(frozen=True)
class Tile:
    """One tile in LR pixels: the network sees rows pad_y x cols pad_x and the core rows/cols are kept."""

    core_y: tuple[int, int]
    core_x: tuple[int, int]
    pad_y: tuple[int, int]
    pad_x: tuple[int, int]


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def _axis_spans(n: int, tile: int, overlap: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Split [0, n) into near-equal cores of at most `tile` px starting on the grid, each widened by
    `overlap` on both sides (clipped to the frame, at least MIN_TILE long where the frame allows)."""
    if n <= tile:
        return [((0, n), (0, n))]
    count = math.ceil(n / tile)
    step = _round_up(math.ceil(n / count), GRID)
    spans = []
    for start in range(0, n, step):
        core = (start, min(n, start + step))
        end = min(n, core[1] + overlap)
        begin = max(0, min(core[0] - overlap, end - MIN_TILE)) // GRID * GRID
        spans.append((core, (begin, end)))
    return spans


def plan_tiles(height: int, width: int, tile: int | None, overlap: int) -> list[Tile]:
    """Tiles covering a height x width LR frame: cores of at most tile x tile, padded by `overlap`.

    `tile` is rounded down and `overlap` up to multiples of 8; tile=None means one whole-frame tile.
    """
    if overlap < 0:
        raise ConfigError(f"tile overlap must be >= 0 LR px, got {overlap}")
    if tile is None:
        return [Tile((0, height), (0, width), (0, height), (0, width))]
    if tile < MIN_TILE:
        raise ConfigError(f"tile size must be at least {MIN_TILE} LR px, got {tile}")
    tile = tile // GRID * GRID
    overlap = _round_up(overlap, GRID)
    return [
        Tile(cy, cx, py, px)
        for cy, py in _axis_spans(height, tile, overlap)
        for cx, px in _axis_spans(width, tile, overlap)
    ]


def choose_tile(height: int, width: int, overlap: int, budget_bytes: float, bytes_per_px: float) -> int | None:
    """The largest tile (multiple of 8) whose padded region fits `budget_bytes` at `bytes_per_px` per
    LR pixel; None when the whole frame fits. ConfigError when not even a MIN_TILE tile fits."""
    if height * width * bytes_per_px <= budget_bytes:
        return None
    overlap = _round_up(overlap, GRID)
    side = int(math.sqrt(max(budget_bytes, 0.0) / bytes_per_px)) - 2 * overlap
    tile = side // GRID * GRID
    if tile < MIN_TILE:
        raise ConfigError(
            f"not enough free memory for a {MIN_TILE} px tile with {overlap} px overlap "
            f"({budget_bytes / 2**20:.0f} MiB free for activations, {bytes_per_px / 1024:.1f} KiB per LR px); "
            "use a smaller --tile-overlap, close other programs, or on CUDA --half or --device cpu"
        )
    return tile


class TiledStep(nn.Module):
    """One FRNet step over whole frames, computed tile by tile.

    Has FRNet's step signature and `scale`, so it drops into `nets.FrameStepper`/`infer_sequence`,
    which keep the whole-frame recurrent state. `tile` is a core size in LR px, None (whole frame), or a
    callable (height, width) -> tile size deciding once per frame size (the automatic choice).
    """

    def __init__(
        self,
        model: nn.Module,
        tile: int | None | Callable[[int, int], int | None] = None,
        overlap: int = 32,
    ) -> None:
        super().__init__()
        self.model = model
        self.scale: int = model.scale  # type: ignore[assignment]
        self.tile = tile
        self.overlap = overlap
        self._plans: dict[tuple[int, int], list[Tile]] = {}

    def tiles_for(self, height: int, width: int) -> list[Tile]:
        """The tile plan for a frame size (decided once per size)."""
        key = (height, width)
        if key not in self._plans:
            tile = self.tile(height, width) if callable(self.tile) else self.tile
            self._plans[key] = plan_tiles(height, width, tile, self.overlap)
        return self._plans[key]

    def forward(self, lr_curr: torch.Tensor, lr_prev: torch.Tensor, hr_prev: torch.Tensor) -> torch.Tensor:
        tiles = self.tiles_for(*lr_curr.shape[-2:])
        if len(tiles) == 1:
            return self.model(lr_curr, lr_prev, hr_prev)
        s = self.scale
        out = torch.empty_like(hr_prev)
        for t in tiles:
            (py0, py1), (px0, px1) = t.pad_y, t.pad_x
            hr = self.model(
                lr_curr[..., py0:py1, px0:px1],
                lr_prev[..., py0:py1, px0:px1],
                hr_prev[..., s * py0 : s * py1, s * px0 : s * px1],
            )
            (cy0, cy1), (cx0, cx1) = t.core_y, t.core_x
            out[..., s * cy0 : s * cy1, s * cx0 : s * cx1] = hr[
                ..., s * (cy0 - py0) : s * (cy1 - py0), s * (cx0 - px0) : s * (cx1 - px0)
            ]
        return out
