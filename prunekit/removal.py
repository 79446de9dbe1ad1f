"""Removing units from a deep copy of a model, and where the kept modules then live.

Units inside an nn.Sequential / nn.ModuleList are dropped and their siblings re-indexed, so a model
with blocks removed has the state_dict layout of the same model built with fewer blocks. Any other
unit is replaced by `Bypass`, and a branch unit (one branch of a residual chain, e.g. a transformer
block's `attn`) by `ZeroBranch`. `renumbered_path` states the same re-indexing rule for one path.
This sits below strategies and budgets, which measure candidate removals; `prunekit.surgery` applies
whole plans on top of it.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn

from prunekit.errors import PlanMismatchError


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


def renumbered_path(path: str, removed: Iterable[str], dense: nn.Module) -> str | None:
    """Where the module at original `path` lives after the units in `removed` were taken out of
    `dense` (None if it was removed). Containers that drop members re-index the rest from 0."""
    removed = set(removed)
    parts = path.split(".")
    out: list[str] = []
    module: nn.Module = dense
    for i, name in enumerate(parts):
        prefix = ".".join(parts[: i + 1])
        if prefix in removed:
            return None
        if isinstance(module, (nn.Sequential, nn.ModuleList)) and name.isdigit():
            parent = ".".join(parts[:i])
            dropped = sum(1 for j in range(int(name)) if (f"{parent}.{j}" if parent else str(j)) in removed)
            out.append(str(int(name) - dropped))
        else:
            out.append(name)
        module = module._modules[name]
    return ".".join(out)
