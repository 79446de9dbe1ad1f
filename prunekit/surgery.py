"""Applying a plan: remove units from a deep copy of the model, replay its structure replacements
(prunekit.replace), then prune channels.

Units inside an nn.Sequential / nn.ModuleList are dropped and their siblings re-indexed, so a model
with blocks removed has the state_dict layout of the same model built with fewer blocks. Any other
unit is replaced by `Bypass`, and a branch unit (one branch of a residual chain, e.g. a transformer
block's `attn`) by `ZeroBranch`. The input model is never modified: all edits happen on the copy, which
is returned only when every step succeeded.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunekit.errors import PlanMismatchError

if TYPE_CHECKING:
    from prunekit.plan import Plan


class Bypass(nn.Module):
    """Stands in for a removed unit: returns its first argument unchanged (the `x` of `x + g(x)`)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            return args[0]
        return next(iter(kwargs.values()))


class ZeroBranch(nn.Module):
    """Stands in for a removed branch sub-block (the `f` of `x + f(h)` inside a block): returns a
    zero that broadcasts in the residual add, so the add gives the trunk back. `outputs` > 0 when
    the removed module returned a tuple (e.g. nn.MultiheadAttention): (zero, None, ...)."""

    def __init__(self, outputs: int = 0) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        ref = next(v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor))
        zero = ref.new_zeros(())
        return (zero,) + (None,) * (self.outputs - 1) if self.outputs else zero

    def extra_repr(self) -> str:
        return f"outputs={self.outputs}" if self.outputs else ""


def _check_paths(model: nn.Module, paths: list[str]) -> None:
    modules = dict(model.named_modules())
    for path in paths:
        if not path or path not in modules:
            raise PlanMismatchError(
                f"the plan removes {path!r}, but {type(model).__name__} has no such submodule"
            )


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths that lie inside another removed path (removing the outer one removes them)."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(p.startswith(q + ".") for q in unique if q != p)]


def _remove_in_place(model: nn.Module, paths: list[str], zeroed: dict[str, int]) -> None:
    by_parent: dict[str, list[str]] = {}
    branches: list[tuple[nn.Module, str, int]] = []
    for path in _outermost(paths):
        parent, _, name = path.rpartition(".")
        if path in zeroed:
            branches.append((model.get_submodule(parent), name, zeroed[path]))
        else:
            by_parent.setdefault(parent, []).append(name)
    # resolve every parent before editing: re-indexing one container renames paths below it
    parents = [(model.get_submodule(parent_path), names) for parent_path, names in by_parent.items()]
    for parent, name, outputs in branches:
        parent._modules[name] = ZeroBranch(outputs)
    for parent, names in parents:
        if isinstance(parent, (nn.Sequential, nn.ModuleList)):
            kept = [m for name, m in parent._modules.items() if name not in names]  # keeps repeated modules
            for name in list(parent._modules):
                del parent._modules[name]
            for i, m in enumerate(kept):
                parent._modules[str(i)] = m
        else:
            for name in names:
                setattr(parent, name, Bypass())


def remove_units(model: nn.Module, paths: list[str], zeroed: dict[str, int] | None = None) -> nn.Module:
    """A deep copy of `model` without the units at `paths` (original paths); `model` is untouched.
    Paths in `zeroed` are branch units (path -> outputs, see ZeroBranch): replaced, not bypassed."""
    zeroed = zeroed or {}
    _check_paths(model, list(paths) + list(zeroed))
    pruned = copy.deepcopy(model)
    _remove_in_place(pruned, list(paths), {p: n for p, n in zeroed.items() if p in paths})
    return pruned


def example_inputs_from_shapes(shapes: dict[str, list[int]]) -> Any:
    """Reconstruct example inputs (random float tensors) from a plan's recorded shapes."""
    gen = torch.Generator().manual_seed(0)
    order = sorted((k for k in shapes if _is_positional(k)), key=lambda k: int(k[3:]))
    positional = [torch.randn(shapes[k], generator=gen) for k in order]
    named = {k: torch.randn(v, generator=gen) for k, v in shapes.items() if not _is_positional(k)}
    if named:
        return named
    return tuple(positional)


def _is_positional(key: str) -> bool:
    return key.startswith("arg") and key[3:].isdigit()


def apply(model: nn.Module, plan: "Plan", example_inputs: Any = None, calibration: Any = None) -> nn.Module:
    """Return a pruned deep copy of `model` following `plan`; raises PlanMismatchError if the plan
    was made for a different model. `example_inputs` are only needed for channel steps (they are
    rebuilt from the plan's recorded shapes when omitted). `calibration` (a list of example
    inputs) is handed to the plan's replacements so they can fit their initial weights; without
    it they build the same architecture (weights then come from a checkpoint or healing)."""
    from prunekit import profile

    got = profile.count_params(model)
    if got != plan.stats.params_before:
        raise PlanMismatchError(
            f"the plan was made for a model with {plan.stats.params_before:,} parameters, "
            f"but {type(model).__name__} has {got:,}"
        )
    pruned = remove_units(model, plan.removed, plan.zeroed)
    if plan.replaced:
        from prunekit.replace import apply_replacements

        apply_replacements(pruned, plan.replaced, plan.removed, model, calibration)
    if plan.channels:
        from prunekit import channels

        inputs = example_inputs if example_inputs is not None else example_inputs_from_shapes(plan.input_shapes)
        channels.apply_channels(pruned, inputs, plan.channels)
    return pruned
