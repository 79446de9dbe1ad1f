"""prunekit: structured pruning (residual blocks and channels) for PyTorch models.

    graph = pk.analyze(model, example_inputs)              # find the residual units
    plan = pk.plan(model, graph, target=pk.KeepBlocks(5))  # score them, pick what to remove
    small = pk.apply(model, plan)                          # pruned deep copy
    pk.save(small, plan, "out/")                           # plan.json + spec.json + model.safetensors
    small = pk.load("out/")                                # rebuild from the spec, replay, load weights
"""

__version__ = "0.1.0"

import importlib
import sys
import types

from prunekit.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    ExportError,
    InputShapeError,
    MissingWeightsError,
    NoUnitsError,
    PlanMismatchError,
    PrunekitError,
    UnknownNameError,
    UnreachableTargetError,
)

# The rest of the API needs torch, so it is imported on first use: `import prunekit` (and with it the
# `prunekit` command's start) stays fast. Module -> the names it provides.
_LAZY = {
    "prunekit.budget": ("ChannelFlops", "ChannelRatio", "FlopsRatio", "KeepBlocks", "Latency", "LatencyRatio", "ParamsRatio"),
    "prunekit.checkpoint": ("load", "save"),
    "prunekit.graph": ("Graph", "Layout", "Unit", "analyze"),
    "prunekit.plan": ("LatencyRecord", "Plan", "Stats", "load_plan", "plan"),
    "prunekit.replace": ("Replacement", "ReplacementCalibration", "register_replacement"),
    "prunekit.spec": ("ModelEntry", "ModelSpec", "describe_inputs", "spec_for", "spec_of"),
    "prunekit.strategies": ("Calibration", "Strategy", "get_strategy", "register_strategy"),
    "prunekit.surgery": ("Bypass", "apply", "remove_units"),
}
_SOURCE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> object:
    if name not in _SOURCE:
        raise AttributeError(f"module 'prunekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCE))


class _Package(types.ModuleType):
    """Importing the submodule `prunekit.plan` must not bind it over the function `pk.plan`."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SOURCE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "Bypass", "Calibration", "ChannelFlops", "ChannelRatio", "CheckpointError", "ConfigError", "DataError",
    "ExportError", "FlopsRatio",
    "Graph", "InputShapeError", "KeepBlocks", "Latency", "LatencyRatio", "LatencyRecord", "Layout",
    "MissingWeightsError", "ModelEntry", "ModelSpec", "NoUnitsError", "ParamsRatio",
    "Plan", "PlanMismatchError", "PrunekitError", "Replacement", "ReplacementCalibration", "Stats", "Strategy",
    "Unit", "UnknownNameError", "UnreachableTargetError", "analyze", "apply", "describe_inputs", "get_strategy", "load",
    "load_plan", "plan", "register_replacement", "register_strategy", "remove_units", "save", "spec_for", "spec_of",
]
