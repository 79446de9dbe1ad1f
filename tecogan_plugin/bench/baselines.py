"""Reference rows of the benchmark: bicubic upsampling, and Torch-Pruning's own pruner.

- `BicubicModel`: the LR frame upsampled by `tecogan_plugin.ops.BicubicUpsampler`, the cubic
  convolution FRNet's skip connection uses, on the same top-left-aligned sampling grid as the BD
  degradation (what FRNet adds its residual to: the floor any learned model must beat).
- `tecogan.tp_uniform`: a replacement of `["fnet", "srnet"]` by the same modules pruned with
  torch_pruning's MetaPruner and GroupMagnitudeImportance at one uniform ratio (its default, not
  prunekit's planner). FNet and SRNet share no channel group (only the 2-channel flow and the RGB
  image pass between them, both fixed), so pruning each one alone is pruning FRNet. As a plan step
  it is recorded, replayed on load and healed by the schedule like every other series.
  `match_latency` finds the ratio by bisection on the measured fast-path latency.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from prunekit.errors import ConfigError
from tecogan_plugin.nets import FNet, SRNet, infer_sequence
from tecogan_plugin.ops import BicubicUpsampler

TP_REPLACEMENT = "tecogan.tp_uniform"
TP_PATHS = ("fnet", "srnet")


class BicubicModel(nn.Module):
    """FRNet's step signature, returning the bicubic upsampling of the current LR frame."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.up = BicubicUpsampler(scale)

    def forward(self, lr_curr: torch.Tensor, lr_prev: torch.Tensor, hr_prev: torch.Tensor) -> torch.Tensor:
        return self.up(lr_curr)

    def infer_sequence(self, lr_frames: Iterable[Any], pad_mode: str = "reflect",
                       num_pad_front: int = 5) -> Iterator[np.ndarray]:
        return infer_sequence(self, lr_frames, pad_mode=pad_mode, num_pad_front=num_pad_front)


def _example(module: nn.Module, size: int = 32) -> tuple[torch.Tensor, ...]:
    """Inputs to trace FNet or SRNet with when no calibration was recorded (replay on load)."""
    p = next(module.parameters())
    if isinstance(module, FNet):
        cin = module.encoder1[0].in_channels // 2
        return tuple(torch.rand(1, cin, size, size, device=p.device) for _ in range(2))
    if isinstance(module, SRNet):
        cin = module.conv_out.out_channels if isinstance(module.conv_out, nn.Conv2d) else 3
        s = module.scale
        return (torch.rand(1, cin, size, size, device=p.device), torch.rand(1, s * s * cin, size, size, device=p.device))
    raise ConfigError(f"{TP_REPLACEMENT} prunes FRNet's fnet and srnet, got {type(module).__name__}")


def _output_layers(module: nn.Module) -> list[nn.Module]:
    """The layers whose channels are fixed by what leaves the module: FNet's flow head, SRNet's RGB output."""
    if isinstance(module, FNet):
        return [module.flow[2]]
    last = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return [last[-1]]


def tp_prune(module: nn.Module, ratio: float, inputs: tuple[torch.Tensor, ...], round_to: int | None = None
             ) -> nn.Module:
    """Prune `module` in place with MetaPruner + GroupMagnitudeImportance (L2) at the uniform `ratio`."""
    if ratio == 0:
        return module
    pruner = tp.pruner.MetaPruner(module, inputs, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=_output_layers(module), round_to=round_to)
    with torch.no_grad():
        pruner.step()
    return module


def tp_uniform_replacement(modules: list[nn.Module], calib=None, ratio: float = 0.0,
                           round_to: int | None = None) -> list[nn.Module]:
    """The `tecogan.tp_uniform` replacement: [fnet, srnet] pruned by torch_pruning at `ratio`. The
    channel counts depend on the ratio only, so a replay without calibration builds the same shapes."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"{TP_REPLACEMENT}: ratio must be in [0, 1), got {ratio}")
    out = []
    for i, module in enumerate(modules):
        inputs = _example(module)
        if calib is not None:
            recorded = calib.inputs[calib.paths[i]]
            if recorded:
                inputs = tuple(a[:1] for a in recorded[0] if isinstance(a, torch.Tensor))
        out.append(tp_prune(module, ratio, inputs, round_to))
    return out


def tp_uniform(model: nn.Module, ratio: float, round_to: int | None = None) -> nn.Module:
    """A pruned deep copy of an FRNet (both sub-networks at `ratio`)."""
    pruned = copy.deepcopy(model)
    pruned.fnet, pruned.srnet = tp_uniform_replacement([pruned.fnet, pruned.srnet], None, ratio, round_to)
    return pruned


def match_latency(model: nn.Module, keep: float, measure: Callable[[nn.Module], float], steps: int = 7,
                  high: float = 0.95, on_step: Callable[[float, float], None] | None = None
                  ) -> tuple[float, list[dict[str, float]]]:
    """The smallest uniform ratio (to 1/2^steps of `high`) whose pruned model's measured latency ratio
    `measure(pruned)` (pruned / dense) is <= `keep`; returns it and the bisection trace."""
    lo, hi = 0.0, high
    trace: list[dict[str, float]] = []
    at_high = measure(tp_uniform(model, hi))
    trace.append({"ratio": hi, "latency_ratio": at_high})
    if on_step:
        on_step(hi, at_high)
    if at_high > keep:
        raise ConfigError(f"Torch-Pruning baseline: even ratio {hi} keeps {at_high:.3f} x the dense latency, "
                          f"above the target {keep}")
    for _ in range(steps):
        mid = (lo + hi) / 2
        value = measure(tp_uniform(model, mid))
        trace.append({"ratio": mid, "latency_ratio": value})
        if on_step:
            on_step(mid, value)
        if value <= keep:
            hi = mid
        else:
            lo = mid
    return hi, trace


def register(registries) -> None:
    replacements = getattr(registries, "replacements", None)
    if replacements is not None:
        replacements.register(TP_REPLACEMENT, tp_uniform_replacement)
