"""Output sensitivity: how far a model's outputs move when a channel group loses its least important
channels, or when a block is removed, measured on calibration data in one unit (the `ablation`
strategy's damage: mean squared output difference, or the task loss increase).

Why: a latency planner weighs a channel cut in any layer against a block removal. Channel importance
scores (group L2 norms, Taylor, ...) are not comparable across layers, so pricing moves with them
lets the planner cut the layers that save most time (e.g. high-resolution upsamplers) far too deep.
Damage measured at the output is comparable everywhere, and it grows with the depth of a cut.

Cutting channels is simulated by zeroing them at the outputs of the group's layers, which is what
removing them does when nothing re-adds a constant after the layer (no BatchNorm shift in between).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from prunekit.profile import call_model, eval_mode
from prunekit.strategies import Ablation, Calibration, as_calibration


def _channel_dim(layer: nn.Module) -> int:
    return -1 if isinstance(layer, nn.Linear) else 1


@contextmanager
def zeroed_channels(layers: Sequence[nn.Module], channels: torch.Tensor) -> Iterator[None]:
    """While active, `channels` of every layer's output are zero (layers with fewer outputs untouched)."""

    def hook(module: nn.Module, _args: Any, out: Any) -> Any:
        if not isinstance(out, torch.Tensor):
            return out
        dim = _channel_dim(module)
        if channels.numel() == 0 or int(channels.max()) >= out.shape[dim]:
            return out
        return out.index_fill(dim, channels.to(out.device), 0.0)

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def cut_damage(model: nn.Module, cuts: list[tuple[list[str], list[torch.Tensor]]], data: Any) -> list[list[float]]:
    """For each (layer paths, channel sets) entry: the damage of zeroing each channel set at those
    layers' outputs, relative to the untouched model (same order; `data`: calibration batches)."""
    calib: Calibration = as_calibration(data)
    modules = dict(model.named_modules())
    with eval_mode(model), torch.no_grad():
        dense = [call_model(model, batch, what="a calibration batch") for batch, _ in calib.batches()]
        base = Ablation._damage(calib, dense, dense)
        curves: list[list[float]] = []
        for paths, channel_sets in cuts:
            layers = [modules[p] for p in paths]
            curve = []
            for channels in channel_sets:
                with zeroed_channels(layers, channels):
                    outputs = [call_model(model, batch, what="a calibration batch") for batch, _ in calib.batches()]
                curve.append(Ablation._damage(calib, dense, outputs) - base)
            curves.append(curve)
    return curves
