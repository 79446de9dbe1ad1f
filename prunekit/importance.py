"""Channel importance for width pruning: which output channels of a layer group matter least.

Each entry of `prunekit.registry.CHANNEL_IMPORTANCE` is a factory
`factory(model, data) -> torch_pruning Importance` (an object called with a torch-pruning group that
returns one score per channel of the group's root, higher = keep). `data` is a list of example
inputs (calibration batches) for the measures that need them.

- "l2" / "l1": torch-pruning's group magnitude (L2 / L1 norm of every coupled weight slice,
  normalised by the group mean).
- "random": a baseline.
- "taylor": first-order estimate of how much zeroing a channel changes the model OUTPUT: for random
  projections r of the output, (sum over the channel's coupled weights of w * d<r, f(x)>/dw)^2,
  averaged over probes and batches. That is Taylor importance with an output-distillation
  objective (the distillation loss itself has zero gradient at the dense model, so projections of
  the output stand in for it).
- "activation": mean |activation| of the channel where the next layers read it (after the
  activation function), on the data.

Measures computed from data are keyed by layer path, so they stay valid on a copy of the model
(width pruning works on copies): call `bind(model)` with the copy before scoring its groups.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner import function

from prunekit.errors import ConfigError
from prunekit.nested import tensors_in
from prunekit.profile import call_model, eval_mode
from prunekit.registry import CHANNEL_IMPORTANCE

_OUT_FNS = (function.prune_conv_out_channels, function.prune_linear_out_channels)
_IN_FNS = (function.prune_conv_in_channels, function.prune_linear_in_channels)
_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
TAYLOR_PROBES = 4


def _out_dim(layer: nn.Module) -> int:
    return 1 if getattr(layer, "transposed", False) else 0


class _PathImportance(tp.importance.Importance):
    """Scores from per-layer statistics keyed by path: `out[path]` (probes x out channels) and
    optionally `inp[path]` (probes x in channels); a group's score sums them over its layers."""

    def __init__(self, square: bool) -> None:
        self.out: dict[str, torch.Tensor] = {}
        self.inp: dict[str, torch.Tensor] = {}
        self.names: dict[nn.Module, str] = {}
        self.square = square

    def bind(self, model: nn.Module) -> "_PathImportance":
        self.names = {m: p for p, m in model.named_modules()}
        return self

    @torch.no_grad()
    def __call__(self, group: Any) -> torch.Tensor | None:
        n = len(group[0].idxs)
        probes = next(iter({**self.out, **self.inp}.values())).shape[0] if self.out or self.inp else 1
        total = torch.zeros(probes, n, dtype=torch.float64)
        found = False
        for i, (dep, idxs) in enumerate(group):
            path = self.names.get(dep.layer)
            root = group[i].root_idxs
            if path is None or any(r is None for r in root):
                continue
            table = self.out if dep.pruning_fn in _OUT_FNS else self.inp if dep.pruning_fn in _IN_FNS else None
            if table is None or path not in table or max(idxs, default=-1) >= table[path].shape[1]:
                continue
            total.index_add_(1, torch.tensor(root), table[path][:, idxs].double())
            found = True
        if not found:
            return None
        return (total.pow(2) if self.square else total).mean(0).float()


def taylor(model: nn.Module, data: list[Any], probes: int = TAYLOR_PROBES, seed: int = 0) -> _PathImportance:
    """Output-sensitivity Taylor importance (see the module docstring)."""
    imp = _PathImportance(square=True)
    layers = {p: m for p, m in model.named_modules() if isinstance(m, _LAYERS)}
    out: dict[str, list[torch.Tensor]] = {p: [] for p in layers}
    inp: dict[str, list[torch.Tensor]] = {p: [] for p in layers}
    gen = torch.Generator().manual_seed(seed)
    saved = [(p, p.grad) for p in model.parameters()]
    try:
        with eval_mode(model), torch.enable_grad():
            for batch in data:
                for _ in range(probes):
                    model.zero_grad(set_to_none=True)
                    outputs = tensors_in(call_model(model, batch))
                    if not outputs:
                        raise ConfigError("taylor importance needs a model that returns tensors")
                    loss = sum((o * torch.randn(o.shape, generator=gen).to(o)).sum() for o in outputs)
                    loss.backward()
                    for path, layer in layers.items():
                        w, g = layer.weight, layer.weight.grad
                        if g is None:
                            out[path].append(torch.zeros(w.shape[_out_dim(layer)]))
                            inp[path].append(torch.zeros(w.shape[1 - _out_dim(layer)]))
                            continue
                        wg = (w * g).detach()
                        od = _out_dim(layer)
                        per_out = wg.transpose(0, od).flatten(1).sum(1)
                        if layer.bias is not None and layer.bias.grad is not None:
                            per_out = per_out + (layer.bias * layer.bias.grad).detach()
                        out[path].append(per_out.cpu())
                        inp[path].append(wg.transpose(0, 1 - od).flatten(1).sum(1).cpu())
    finally:
        for p, grad in saved:
            p.grad = grad
    imp.out = {p: torch.stack(v) for p, v in out.items() if v}
    imp.inp = {p: torch.stack(v) for p, v in inp.items() if v}
    return imp.bind(model)


def activation(model: nn.Module, data: list[Any]) -> _PathImportance:
    """Mean |activation| of every channel over the calibration data, taken where the channel is
    consumed (the input of each conv / linear layer, i.e. after the activation function)."""
    imp = _PathImportance(square=False)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(path: str, layer: nn.Module) -> Callable:
        dim = -1 if isinstance(layer, nn.Linear) else 1

        def hook(module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                return
            a = args[0].detach().abs().movedim(dim, 0).flatten(1)
            sums[path] = sums.get(path, 0) + a.sum(1).double().cpu()
            counts[path] = counts.get(path, 0) + a.shape[1]

        return hook

    handles = [m.register_forward_pre_hook(hook_for(p, m)) for p, m in model.named_modules() if isinstance(m, _LAYERS)]
    try:
        with eval_mode(model), torch.no_grad():
            for batch in data:
                call_model(model, batch)
    finally:
        for h in handles:
            h.remove()
    imp.inp = {p: (s / counts[p]).float().unsqueeze(0) for p, s in sums.items()}
    return imp.bind(model)


CHANNEL_IMPORTANCE.register("l2", lambda model, data: tp.importance.GroupMagnitudeImportance(p=2))
CHANNEL_IMPORTANCE.register("l1", lambda model, data: tp.importance.GroupMagnitudeImportance(p=1))
CHANNEL_IMPORTANCE.register("random", lambda model, data: tp.importance.RandomImportance())
CHANNEL_IMPORTANCE.register("taylor", taylor)
CHANNEL_IMPORTANCE.register("activation", activation)

NEEDS_DATA = {"taylor", "activation"}


def resolve(spec: Any, model: nn.Module, data: list[Any] | None) -> tp.importance.Importance:
    """An Importance from a registered name or a torch-pruning Importance object (used as is)."""
    if isinstance(spec, tp.importance.Importance):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"channel_importance must be a registered name or a torch_pruning Importance, got {spec!r}")
    factory = CHANNEL_IMPORTANCE.get(spec)
    return factory(model, data or [])
