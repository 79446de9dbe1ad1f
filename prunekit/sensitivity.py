"""Output sensitivity: how far a model's outputs move when a channel group loses its least important
channels, or when a block is removed, measured on calibration data in one unit: the mean squared
difference from the untouched model's outputs (targets and task losses are ignored: on a few small
calibration batches a cut can lower the task loss by chance, which would make it look free, while
the distance from the model's own outputs only grows with the cut and is what healing must undo).

Why: a latency planner weighs a channel cut in any layer against a block removal. Channel importance
scores (group L2 norms, Taylor, ...) are not comparable across layers, so pricing moves with them
lets the planner cut the layers that save most time (e.g. high-resolution upsamplers) far too deep.
Damage measured at the output is comparable everywhere, and it grows with the depth of a cut.

Cutting channels is simulated by zeroing them at the outputs of the group's layers, which is what
removing them does when nothing re-adds a constant after the layer (no BatchNorm shift in between).
Removing a unit is simulated by replacing its output with its input (`Bypass`), or with zero for a
branch unit (`ZeroBranch`), so a whole state of the planner (blocks gone, groups cut) runs on the
unchanged model and every path keeps its name.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from prunekit.profile import call_model, eval_mode
from prunekit.removal import Bypass, ZeroBranch
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


@contextmanager
def removed_units(model: nn.Module, units: dict[str, int | None]) -> Iterator[None]:
    """While active, the units at these paths act removed, as `remove_units` would leave them:
    path -> None bypasses the unit (its first input), path -> n (a branch unit with n outputs)
    gives ZeroBranch's zero."""

    def hook_for(stand_in: nn.Module):
        def hook(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
            return stand_in(*args, **kwargs)
        return hook

    handles = [model.get_submodule(path).register_forward_hook(
        hook_for(Bypass() if outputs is None else ZeroBranch(outputs)), with_kwargs=True)
        for path, outputs in units.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def output_only(data: Any) -> Calibration:
    """The calibration inputs without targets: damage is then the distance from the model's outputs."""
    return Calibration(inputs=as_calibration(data).inputs)


class StateDamage:
    """The damage of a planner state (units removed, channel sets zeroed) on `model`, on calibration
    `data`; the untouched model's outputs are computed once."""

    def __init__(self, model: nn.Module, data: Any) -> None:
        self.model, self.calib = model, output_only(data)
        self.modules = dict(model.named_modules())
        with eval_mode(model), torch.no_grad():
            self.dense = [call_model(model, batch, what="a calibration batch") for batch, _ in self.calib.batches()]

    def __call__(self, units: dict[str, int | None], cuts: list[tuple[list[str], torch.Tensor]]) -> float:
        with eval_mode(self.model), torch.no_grad(), removed_units(self.model, units), ExitStack() as stack:
            for paths, channels in cuts:
                stack.enter_context(zeroed_channels([self.modules[p] for p in paths], channels))
            outputs = [call_model(self.model, batch, what="a calibration batch") for batch, _ in self.calib.batches()]
        return Ablation._damage(self.calib, self.dense, outputs)
