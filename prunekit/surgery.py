"""Applying a plan: remove units from a deep copy of the model (prunekit.removal), replay its
structure replacements (prunekit.replace), then prune channels (prunekit.channels). The input model
is never modified: all edits happen on the copy, which is returned only when every step succeeded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit import profile
from prunekit.channels import apply_channels
from prunekit.errors import PlanMismatchError
from prunekit.plan_record import Plan
from prunekit.removal import Bypass, ZeroBranch, remove_units
from prunekit.replace import apply_replacements

__all__ = ["Bypass", "ZeroBranch", "apply", "example_inputs_from_shapes", "remove_units"]


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


def apply(model: nn.Module, plan: Plan, example_inputs: Any = None, calibration: Any = None) -> nn.Module:
    """Return a pruned deep copy of `model` following `plan`; raises PlanMismatchError if the plan
    was made for a different model. `example_inputs` are only needed for channel steps (they are
    rebuilt from the plan's recorded shapes when omitted). `calibration` (a list of example
    inputs) is handed to the plan's replacements so they can fit their initial weights; without
    it they build the same architecture (weights then come from a checkpoint or healing)."""
    got = profile.count_params(model)
    if got != plan.stats.params_before:
        raise PlanMismatchError(
            f"the plan was made for a model with {plan.stats.params_before:,} parameters, "
            f"but {type(model).__name__} has {got:,}"
        )
    pruned = remove_units(model, plan.removed, plan.zeroed)
    if plan.replaced:
        apply_replacements(pruned, plan.replaced, plan.removed, model, calibration)
    if plan.channels:
        inputs = example_inputs if example_inputs is not None else example_inputs_from_shapes(plan.input_shapes)
        apply_channels(pruned, inputs, plan.channels)
    return pruned
