"""Load a generator from either checkpoint kind and stream frames through it.

`upscale_frames` is a generator: it pulls one LR frame, yields one HR frame, and keeps only the
recurrent state (plus the few frames of the temporal warm-up), so memory does not grow with the video.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from prunekit.device import resolve_device
from prunekit.errors import CheckpointError, ConfigError
from tecogan_plugin.nets import FRNet, infer_sequence
from tecogan_plugin.upscale.tiling import TiledStep, choose_tile

__all__ = ["load_generator", "upscale_frames", "resolve_device", "available_memory", "DEFAULT_OVERLAP", "MEMORY_FRACTION"]

DEFAULT_OVERLAP = 32  # LR px; see docs/guide/upscale.md for the measured agreement per overlap
MEMORY_FRACTION = 0.8  # share of free memory (CUDA, or the host's on CPU) the automatic tile size may plan to use
CUDA_PROBE_SIDES = (64, 128)  # LR px of the two probe steps that measure memory per pixel
CPU_PROBE_SIDES = (32, 64)  # counted, not measured, so small sizes are exact
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
)
PUBLISHED_SUFFIXES = (".pth", ".pt")


def load_generator(path: str | os.PathLike, **build_kwargs: Any) -> nn.Module:
    """An FRNet in eval mode on the CPU from a prunekit checkpoint folder (plan.json +
    model.safetensors, dense or pruned) or a published TecoGAN-PyTorch generator file (.pth).

    A folder is rebuilt from its spec.json (older folders: frnet.json, or the weights and the plan);
    `build_kwargs` override the dense FRNet options.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "plan.json").is_file():
            raise CheckpointError(f"{path}: folder has no plan.json, so it is not a prunekit checkpoint")
        from tecogan_plugin.convert import load_converted

        model = load_converted(path, **build_kwargs)
    elif path.is_file():
        if path.suffix.lower() not in PUBLISHED_SUFFIXES:
            raise CheckpointError(
                f"{path}: expected a prunekit checkpoint folder or a TecoGAN-PyTorch generator "
                f"({', '.join(PUBLISHED_SUFFIXES)}), got a {path.suffix or 'suffix-less'} file"
            )
        from tecogan_plugin.convert import load_published_generator

        model = load_published_generator(path, **build_kwargs)
    else:
        raise CheckpointError(f"{path}: checkpoint does not exist")
    if not isinstance(model, FRNet):
        raise CheckpointError(f"{path}: loaded a {type(model).__name__}, not a TecoGAN FRNet")
    return model.eval()


def _prepare(model: nn.Module, device: torch.device, fast: bool, half: bool) -> nn.Module:
    """A copy of `model` on `device` in eval mode; with `fast`, make_fast's exact rewrites (and its fp16
    SRNet when `half`: FNet and the warp stay fp32 so sampling positions are not quantised). A step
    that is not a torch module (an exported ONNX step) runs as given."""
    if not isinstance(model, nn.Module):
        return model
    model = copy.deepcopy(model).eval().to(device)
    if not fast:
        return model
    from tecogan_plugin.fast import make_fast

    return make_fast(model, half=half)


def _bytes_per_pixel(step: Callable[..., torch.Tensor], scale: int, device: torch.device) -> float:
    """Peak CUDA memory per LR pixel of one step, from two probe sizes (slope, so fixed costs cancel)."""
    peaks = []
    for side in CUDA_PROBE_SIDES:
        lr = torch.rand(1, 3, side, side, device=device)
        hr = torch.rand(1, 3, scale * side, scale * side, device=device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.inference_mode():
            step(lr, lr, hr)
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
        del lr, hr
    return _slope(peaks, CUDA_PROBE_SIDES)


def _cpu_bytes_per_pixel(model: nn.Module, step: Callable[..., torch.Tensor], scale: int) -> float:
    """Memory per LR pixel of one step on the CPU, which has no peak-memory counter: the bytes of every
    layer's output plus the step's inputs and output, as if nothing were freed early (an upper bound;
    1.3x the measured peak RSS of a dense FRNet), from two probe sizes."""
    totals = []
    for side in CPU_PROBE_SIDES:
        sizes: list[int] = []

        def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                sizes.append(output.nelement() * output.element_size())

        leaves = [m for m in model.modules() if next(m.children(), None) is None]
        hooks = [m.register_forward_hook(count) for m in leaves]
        lr = torch.rand(1, 3, side, side)
        hr = torch.rand(1, 3, scale * side, scale * side)
        try:
            with torch.inference_mode():
                out = step(lr, lr, hr)
        finally:
            for h in hooks:
                h.remove()
        totals.append(sum(sizes) + sum(t.nelement() * t.element_size() for t in (lr, lr, hr, out)))
    return _slope(totals, CPU_PROBE_SIDES)


def _slope(values: list[float], sides: tuple[int, int]) -> float:
    return max(values[1] - values[0], 1) / (sides[1] ** 2 - sides[0] ** 2)


def available_memory() -> int | None:
    """Bytes the process can still allocate on the host: MemAvailable from /proc/meminfo, lowered to the
    room left under a cgroup (container) memory limit; free pages from sysconf elsewhere; None if unknown."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text().strip()
            if limit.isdigit() and int(limit) < 2**60:
                found.append(max(int(limit) - int(Path(usage_file).read_text().strip()), 0))
        except (OSError, ValueError):
            pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            return None
    return min(found)


def _auto_tile(step: nn.Module, device: torch.device, overlap: int) -> Callable[[int, int], int | None]:
    """Per frame size: the whole frame when it fits, else the largest tile that fits; on CUDA in free
    device memory (probed), on the CPU in available host memory (estimated from layer outputs)."""

    def decide(height: int, width: int) -> int | None:
        probe = getattr(step, "eager", step)  # a fast path's graph replay would capture graphs at the probe sizes
        if device.type == "cuda":
            per_px = _bytes_per_pixel(probe, step.scale, device)  # type: ignore[arg-type]
            free, _total = torch.cuda.mem_get_info(device)
            free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached by torch, reusable
            copies = 1  # the whole-frame float32 output being assembled
        else:
            available = available_memory()
            if available is None or not isinstance(probe, nn.Module):
                return None  # unknown room, or an ONNX step whose layers cannot be counted: whole frames
            per_px = _cpu_bytes_per_pixel(step, probe, step.scale)  # type: ignore[arg-type]
            free = available
            copies = 3  # the output being assembled, the recurrent state, the float copy made for uint8
        stitched = copies * 4 * 3 * height * width * step.scale**2
        return choose_tile(height, width, overlap, free * MEMORY_FRACTION - stitched, per_px)

    return decide


def upscale_frames(
    model: nn.Module,
    frames: Iterable[np.ndarray],
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
    fast: bool = True,
    half: bool = False,
    warmup: int = 5,
) -> Iterator[np.ndarray]:
    """Yield one HxWx3 uint8 HR frame per HxWx3 uint8 RGB LR frame, streaming.

    tile: core size in LR px of per-frame spatial tiles; None chooses automatically (the whole frame
    when it fits, else the largest tile fitting free CUDA or available host memory); 0 never tiles.
    overlap: LR px of context around each tile (rounded up to a multiple of 8). fast: use `make_fast`'s exact rewrites. half:
    fp16 (CUDA only). warmup: TecoGAN's reflect warm-up (frames warmup..1 run first, outputs dropped);
    clips with warmup or fewer frames get the longest warm-up they allow. `model` is not modified.
    """
    dev = resolve_device(device)
    if half and dev.type != "cuda":
        raise ConfigError(f"half precision needs a CUDA device, got device {dev}")
    if half and not fast:
        raise ConfigError("half precision is part of the fast path (fp16 SRNet, fp32 flow); use it with fast=True")
    if tile is not None and tile < 0:
        raise ConfigError(f"tile must be >= 0 LR px (0 = never tile), got {tile}")
    if overlap < 0:
        raise ConfigError(f"tile overlap must be >= 0 LR px, got {overlap}")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0 frames, got {warmup}")
    net = _prepare(model, dev, fast, half)
    step = TiledStep(net, _auto_tile(net, dev, overlap) if tile is None else (tile or None), overlap)
    return _stream(step, iter(frames), warmup)


def _stream(step: TiledStep, frames: Iterator[np.ndarray], warmup: int) -> Iterator[np.ndarray]:
    head: list[np.ndarray] = []
    for frame in frames:
        head.append(frame)
        if len(head) > warmup:
            break
    if not head:
        return
    yield from infer_sequence(step, _chain(head, frames), pad_mode="reflect", num_pad_front=min(warmup, len(head) - 1))


def _chain(head: list[np.ndarray], rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    while head:
        yield head.pop(0)
    yield from rest
