"""Structure replacement ("surgery" as a plan step): swap modules for cheaper ones with the same
call interface.

A replacement is a registered callable `fn(modules, calib, **kwargs) -> list[nn.Module]`. It gets
the module(s) at a step's paths (several modules may be replaced jointly, e.g. an upsampler and
the conv after it -> a sub-pixel head and an identity) and returns one module per path. `calib`
holds what those modules saw and produced on calibration data, so a replacement can fit its
initial weights to imitate them; with `calib=None` it must still build the same architecture,
because `pk.load` replays the step on a fresh model and then loads the saved weights strictly.

A plan stores its steps as `Replacement(name, paths, kwargs)`. Paths name modules of the DENSE
model; `pk.apply` replays them after the plan's unit removals (re-indexing the paths as the
removals did) and before its channel steps, so width pruning may narrow a replacement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunekit.errors import ConfigError, PlanMismatchError
from prunekit.profile import call_model, eval_mode
from prunekit.registry import REPLACEMENTS
from prunekit.removal import renumbered_path
from prunekit.strategies import Calibration

ReplaceFn = Callable[..., list[nn.Module]]


class Replacement(BaseModel):
    """One recorded replacement: registered `name`, the dense-model `paths` it replaces jointly,
    and the JSON keyword arguments it is called with."""

    model_config = ConfigDict(extra="forbid")

    name: str
    paths: list[str]
    kwargs: dict[str, Any] = Field(default_factory=dict)


@dataclass
class ReplacementCalibration:
    """What the replaced modules saw on calibration data: for each path, one entry per calibration
    batch with the positional `inputs` of its first call in that batch and its `outputs`."""

    paths: list[str]
    inputs: dict[str, list[tuple]] = field(default_factory=dict)
    outputs: dict[str, list[Any]] = field(default_factory=dict)


def register_replacement(name: str, fn: ReplaceFn | None = None, *, overwrite: bool = False):
    """Register a replacement under `name` (as a call or as a decorator)."""
    return REPLACEMENTS.register(name, fn, overwrite=overwrite)


def parse_replacements(obj: Any) -> list[Replacement]:
    """Replacement steps from None, one step or a list of steps (Replacement objects or dicts
    `{name, paths, kwargs}`); ConfigError names the entry that is malformed."""
    if obj is None:
        return []
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    steps: list[Replacement] = []
    for i, item in enumerate(items):
        if isinstance(item, Replacement):
            steps.append(item)
            continue
        if not isinstance(item, dict):
            raise ConfigError(f"replace[{i}]: expected {{name, paths, kwargs}}, got {type(item).__name__}")
        try:
            steps.append(Replacement.model_validate(item))
        except Exception as exc:  # pydantic ValidationError: name the entry and what it holds
            raise ConfigError(f"replace[{i}]: invalid replacement {item!r}: {exc}") from None
        if not steps[-1].paths:
            raise ConfigError(f"replace[{i}]: `paths` must name at least one module")
    return steps


def _checked_paths(model: nn.Module, step: Replacement, removed: list[str], dense: nn.Module) -> list[str]:
    """The step's paths in `model` (dense paths re-indexed by the unit removals)."""
    if len(set(step.paths)) != len(step.paths):
        raise PlanMismatchError(f"replacement {step.name!r} lists a path twice: {step.paths}")
    nested = [(a, b) for a in step.paths for b in step.paths if a != b and b.startswith(a + ".")]
    if nested:
        raise PlanMismatchError(f"replacement {step.name!r}: {nested[0][1]!r} lies inside {nested[0][0]!r}")
    dense_modules = dict(dense.named_modules())
    paths = []
    for path in step.paths:
        if not path or path not in dense_modules:
            raise PlanMismatchError(
                f"replacement {step.name!r} names {path!r}, but {type(dense).__name__} has no such submodule"
            )
        mapped = renumbered_path(path, removed, dense)
        if mapped is None:
            raise PlanMismatchError(f"replacement {step.name!r} names {path!r}, which the plan removes")
        paths.append(mapped)
    return paths


def record(model: nn.Module, paths: list[str], batches: Iterable[Any]) -> ReplacementCalibration:
    """Run `model` on each calibration batch and keep the first call's inputs and output of every
    module at `paths` (detached)."""
    calib = ReplacementCalibration(paths=list(paths), inputs={p: [] for p in paths}, outputs={p: [] for p in paths})
    seen: set[str] = set()

    def hook_for(path: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if path in seen:
                return
            seen.add(path)
            calib.inputs[path].append(tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args))
            calib.outputs[path].append(output.detach() if isinstance(output, torch.Tensor) else output)

        return hook

    handles = [model.get_submodule(p).register_forward_hook(hook_for(p)) for p in paths]
    try:
        with eval_mode(model), torch.no_grad():
            for batch in batches:
                seen.clear()
                call_model(model, batch)
    finally:
        for h in handles:
            h.remove()
    return calib


def replace_in_place(
    model: nn.Module, step: Replacement, paths: list[str], calibration: Iterable[Any] | None = None
) -> None:
    """Swap the modules at `paths` (paths of `model`) for what the step's replacement returns."""
    fn = REPLACEMENTS.get(step.name)
    calib = record(model, paths, calibration) if calibration is not None else None
    old = [model.get_submodule(p) for p in paths]
    try:
        new = fn(old, calib, **step.kwargs)
    except TypeError as exc:
        raise ConfigError(f"replacement {step.name!r} rejected kwargs {step.kwargs}: {exc}") from exc
    if not isinstance(new, (list, tuple)) or len(new) != len(paths) or not all(isinstance(m, nn.Module) for m in new):
        raise ConfigError(
            f"replacement {step.name!r} must return a list of {len(paths)} nn.Module(s), one per path, got {new!r:.200}"
        )
    for path, module, previous in zip(paths, new, old):
        param = next(previous.parameters(), None)
        if param is not None:
            module.to(param.device)
        parent, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, name, module)


def apply_replacements(
    model: nn.Module,
    steps: list[Replacement],
    removed: list[str],
    dense: nn.Module,
    calibration: Iterable[Any] | None = None,
) -> nn.Module:
    """Replay replacement steps in place on `model` (= `dense` after removing `removed`). `calibration`
    is a list of example-input batches or a strategies.Calibration (its inputs are used)."""
    if isinstance(calibration, Calibration):
        calibration = calibration.inputs
    batches = list(calibration) if calibration is not None else None
    for step in steps:
        replace_in_place(model, step, _checked_paths(model, step, removed, dense), batches)
    return model
