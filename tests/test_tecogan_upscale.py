"""Upscaling engine: tiling geometry, tiled == untiled, streaming memory, sizes, checkpoint loading."""

from __future__ import annotations

import tracemalloc
from typing import Iterator

import numpy as np
import pytest
import torch

from prunekit.errors import CheckpointError, ConfigError
from tecogan_plugin.nets import FRNet
from tecogan_plugin.upscale import load_generator, plan_tiles, upscale_frames
from tecogan_plugin.upscale.tiling import GRID, choose_tile


def tiny(nb: int = 2, **kw) -> FRNet:
    torch.manual_seed(0)
    return FRNet(nf=8, nb=nb, **kw).eval()


def clip(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """A drifting random texture: consecutive frames are shifted copies, as in real video."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h + 2 * n, w + 2 * n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[i : i + h, 2 * i : 2 * i + w]) for i in range(n)]


# --- tiling geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w,tile,overlap", [(45, 61, 16, 8), (100, 37, 24, 16), (17, 200, 16, 0), (64, 64, 64, 32)])
def test_tiles_cover_frame_once_on_the_pooling_grid(h, w, tile, overlap):
    tiles = plan_tiles(h, w, tile, overlap)
    cover = np.zeros((h, w), int)
    for t in tiles:
        cover[t.core_y[0] : t.core_y[1], t.core_x[0] : t.core_x[1]] += 1
        for (c0, c1), (p0, p1), n in ((t.core_y, t.pad_y, h), (t.core_x, t.pad_x, w)):
            assert c1 - c0 <= tile
            assert p0 % GRID == 0 and p0 <= max(0, c0 - overlap)  # context before the core
            assert p1 == min(n, c1 + overlap)  # context after the core
            assert p1 == n or p1 % GRID == 0  # only frame-edge tiles get FNet's flow padding
            assert p1 - p0 >= min(n, 16)
    assert (cover == 1).all()


def test_no_tile_is_one_whole_frame_tile():
    (t,) = plan_tiles(45, 61, None, 32)
    assert t.core_y == t.pad_y == (0, 45) and t.core_x == t.pad_x == (0, 61)


def test_choose_tile_fits_budget():
    assert choose_tile(100, 100, 16, budget_bytes=1e6, bytes_per_px=10) is None  # whole frame fits
    tile = choose_tile(1000, 1000, 16, budget_bytes=1e6, bytes_per_px=10)
    assert tile % GRID == 0
    assert (tile + 32) ** 2 * 10 <= 1e6 < (tile + 8 + 32) ** 2 * 10
    with pytest.raises(ConfigError, match="tile"):
        choose_tile(1000, 1000, 64, budget_bytes=1e4, bytes_per_px=10)


def test_automatic_tile_from_free_cuda_memory(monkeypatch):
    """The CUDA decision glue, with the memory probe and the driver query faked (runs without a GPU)."""
    import tecogan_plugin.upscale.engine as engine
    from tecogan_plugin.fast import make_fast

    monkeypatch.setattr(engine, "_bytes_per_pixel", lambda step, scale, device: 1000.0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (90_000_000, 80_000_000_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 12_000_000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2_000_000)
    decide = engine._auto_tile(tiny(), torch.device("cuda"), 32)
    assert decide(40, 40) is None  # 1600 LR px * 1000 B fit whole
    # free = 90 MB + 10 MB cached by torch; 80% of it minus the 400x400 x4 float32 output being stitched
    budget = 0.8 * 100_000_000 - 4 * 3 * 1600 * 1600
    assert decide(400, 400) == choose_tile(400, 400, 32, budget, 1000.0) == 152
    probed = []
    monkeypatch.setattr(engine, "_bytes_per_pixel", lambda step, scale, device: probed.append(step) or 1000.0)
    fast = make_fast(tiny())
    engine._auto_tile(fast, torch.device("cuda"), 32)(40, 40)
    assert probed == [fast.eager]  # the probe must not capture CUDA graphs at its own sizes


def test_automatic_cpu_tile_follows_available_memory(monkeypatch):
    """A 2000x2000 LR frame (8000x8000 out) on the CPU: tiles sized to the available memory (patched),
    whole frames when it fits, a clear error instead of an allocation failure when nothing fits."""
    import tecogan_plugin.upscale.engine as engine

    model = FRNet(nf=16, nb=2).eval()
    per_px = engine._cpu_bytes_per_pixel(model, model, model.scale)
    wide = FRNet(nf=32, nb=2).eval()
    wider = engine._cpu_bytes_per_pixel(wide, wide, wide.scale)
    assert 4 * 3 * 16 * 2 < per_px < wider  # more than its own input+output; grows with the width
    stitched = 3 * 4 * 3 * 2000 * 2000 * 16  # state, output being stitched, float copy for uint8
    monkeypatch.setattr(engine, "available_memory", lambda: 8 * 2**30)
    tile = engine._auto_tile(model, torch.device("cpu"), 32)(2000, 2000)
    budget = 0.8 * 8 * 2**30 - stitched
    assert tile is not None and tile % GRID == 0
    assert (tile + 64) ** 2 * per_px <= budget < (tile + 8 + 64) ** 2 * per_px
    monkeypatch.setattr(engine, "available_memory", lambda: 2**40)
    assert engine._auto_tile(model, torch.device("cpu"), 32)(2000, 2000) is None
    monkeypatch.setattr(engine, "available_memory", lambda: 2**30)
    with pytest.raises(ConfigError, match="not enough free memory"):
        engine._auto_tile(model, torch.device("cpu"), 32)(2000, 2000)


def test_available_memory_reads_the_host():
    from tecogan_plugin.upscale.engine import available_memory

    found = available_memory()
    assert found is not None and 0 < found < 2**50


# --- numerics ----------------------------------------------------------------------------------------


def test_untiled_plain_matches_infer_sequence_exactly():
    model, frames = tiny(), clip(7, 16, 20)
    ours = list(upscale_frames(model, frames, fast=False, tile=0, device="cpu"))
    ref = list(model.infer_sequence(frames))  # TecoGAN's 5-frame reflect warm-up
    assert len(ours) == 7
    assert all(np.array_equal(a, b) for a, b in zip(ours, ref))


def test_fast_path_matches_plain_within_one_level():
    model, frames = tiny(), clip(3, 16, 20)
    fast = list(upscale_frames(model, frames, fast=True, tile=0, device="cpu"))
    plain = list(upscale_frames(model, frames, fast=False, tile=0, device="cpu"))
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(fast, plain)) <= 1


@pytest.mark.parametrize("h,w,tile,overlap", [(21, 75, 24, 16), (40, 40, 16, 8)])
def test_tiled_equals_untiled_within_quantisation(h, w, tile, overlap):
    model, frames = tiny(), clip(5, h, w)
    whole = list(upscale_frames(model, frames, tile=0, device="cpu", warmup=2))
    tiled = list(upscale_frames(model, frames, tile=tile, overlap=overlap, device="cpu", warmup=2))
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(whole, tiled)) <= 1
    # without context the tile borders are visibly wrong: the overlap is what makes them agree
    bare = list(upscale_frames(model, frames, tile=tile, overlap=0, device="cpu", warmup=2))
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(whole, bare)) > 16


@pytest.mark.parametrize("h,w", [(13, 21), (8, 9), (31, 17)])
def test_sides_not_multiple_of_8(h, w):
    out = list(upscale_frames(tiny(nb=1), clip(3, h, w), device="cpu"))
    assert len(out) == 3
    assert all(o.shape == (4 * h, 4 * w, 3) and o.dtype == np.uint8 for o in out)


def test_scale_2_model():
    out = list(upscale_frames(tiny(nb=1, scale=2), clip(2, 12, 20), tile=16, overlap=8, device="cpu"))
    assert out[0].shape == (24, 40, 3)


def test_short_clips_get_a_shorter_warm_up():
    model = tiny(nb=1)
    assert len(list(upscale_frames(model, clip(1, 16, 16), device="cpu"))) == 1
    frames = clip(3, 16, 16)
    ours = list(upscale_frames(model, frames, fast=False, device="cpu"))
    assert all(np.array_equal(a, b) for a, b in zip(ours, model.infer_sequence(frames, num_pad_front=2)))


def test_bad_options_are_config_errors():
    model, frames = tiny(nb=1), clip(2, 16, 16)
    with pytest.raises(ConfigError, match="CUDA"):
        upscale_frames(model, frames, half=True, device="cpu")
    with pytest.raises(ConfigError, match="tile"):
        upscale_frames(model, frames, tile=-1, device="cpu")
    with pytest.raises(ConfigError, match="overlap"):
        upscale_frames(model, frames, overlap=-8, device="cpu")
    with pytest.raises(ConfigError, match="at least 16"):
        list(upscale_frames(model, frames, tile=8, device="cpu"))


def test_model_is_not_modified():
    model = tiny(nb=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    list(upscale_frames(model, clip(2, 16, 16), device="cpu"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.srnet.conv_up[0].__class__.__name__ == "ConvTranspose2d"


# --- streaming -------------------------------------------------------------------------------------


class Counting:
    """A frame generator that records how far the consumer is ahead of what was produced."""

    def __init__(self, n: int, h: int, w: int) -> None:
        self.n, self.h, self.w, self.pulled = n, h, w, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(1)
        for _ in range(self.n):
            self.pulled += 1
            yield rng.integers(0, 256, (self.h, self.w, 3), dtype=np.uint8)


def test_frames_are_pulled_lazily():
    src = Counting(12, 16, 16)
    ahead = []
    for i, _ in enumerate(upscale_frames(tiny(nb=1), src, device="cpu", warmup=5)):
        ahead.append(src.pulled - (i + 1))
    assert max(ahead) <= 5  # only the warm-up frames are read ahead
    assert ahead[-1] == 0


def _peak_traced(n: int) -> int:
    model = tiny(nb=1)
    for _ in upscale_frames(model, Counting(2, 16, 16), device="cpu", fast=False):
        pass  # first-use imports and caches are not what is measured
    tracemalloc.start()
    try:
        for _ in upscale_frames(model, Counting(n, 16, 16), device="cpu", fast=False):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_length():
    short, long = _peak_traced(10), _peak_traced(100)
    out_frame = 64 * 64 * 3
    # holding the extra 90 outputs would add ~90 * 12 KiB; allow a few frames of slack
    assert long <= short + 4 * out_frame, (short, long)


# --- checkpoints -----------------------------------------------------------------------------------


def _pruned_checkpoint(tmp_path):
    import prunekit as pk
    from prunekit.surgery import apply

    dense = tiny(nb=3)
    plan = pk.Plan.identity(dense).model_copy(update={"removed": ["srnet.resblocks.1"]})
    small = apply(dense, plan)
    pk.save(small, plan, tmp_path / "pruned")
    return small, tmp_path / "pruned"


def test_load_pruned_prunekit_checkpoint(tmp_path):
    small, path = _pruned_checkpoint(tmp_path)
    loaded = load_generator(path)
    assert isinstance(loaded, FRNet) and not loaded.training
    assert len(loaded.srnet.resblocks) == 2
    ref = small.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())


def test_load_dense_prunekit_checkpoint_bi_x2(tmp_path):
    import prunekit as pk

    dense = tiny(nb=2, scale=2, degradation="BI")
    pk.save(dense, pk.Plan.identity(dense), tmp_path / "dense")
    loaded = load_generator(tmp_path / "dense")
    assert loaded.scale == 2 and loaded.degradation == "BI" and len(loaded.srnet.resblocks) == 2


def test_load_published_pth(tmp_path):
    model = tiny(nb=2)
    torch.save(model.state_dict(), tmp_path / "TecoGAN_BD_iter500000.pth")
    loaded = load_generator(tmp_path / "TecoGAN_BD_iter500000.pth")
    ref = model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())


def test_load_converted_checkpoint_uses_frnet_json(tmp_path):
    from tecogan_plugin.convert import convert

    model = tiny(nb=2, degradation="BI")
    torch.save(model.state_dict(), tmp_path / "g.pth")
    loaded = load_generator(convert(tmp_path / "g.pth", tmp_path / "converted"))
    assert loaded.degradation == "BI" and len(loaded.srnet.resblocks) == 2
    ref = model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())


def test_bad_checkpoints_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="plan.json"):
        load_generator(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="weights.bin"):
        load_generator(tmp_path / "weights.bin")


# --- CUDA ------------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_auto_tile_and_half():
    model, frames = tiny(), clip(6, 45, 61)
    ref = list(upscale_frames(model, frames, tile=0, device="cpu"))
    auto = list(upscale_frames(model, frames, device="cuda"))
    half = list(upscale_frames(model, frames, device="cuda", half=True, tile=16))
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(ref, auto)) <= 1
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(ref, half)) <= 4
