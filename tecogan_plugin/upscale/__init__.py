"""Upscale a user's own video with a (pruned) TecoGAN generator: streaming, tiled when needed.

Python API: `load_generator(path)` and `upscale_frames(model, frames, ...)`; CLI: `prunekit upscale`.
"""

from __future__ import annotations

from tecogan_plugin.upscale.engine import load_generator, upscale_frames
from tecogan_plugin.upscale.tiling import TiledStep, plan_tiles
from tecogan_plugin.upscale.video import open_sink, open_source

__all__ = ["load_generator", "upscale_frames", "TiledStep", "plan_tiles", "open_source", "open_sink"]
