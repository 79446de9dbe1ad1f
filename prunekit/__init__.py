"""prunekit: structured pruning (residual blocks and channels) for PyTorch models.

    graph = pk.analyze(model, example_inputs)              # find the residual units
    plan = pk.plan(model, graph, target=pk.KeepBlocks(5))  # score them, pick what to remove
    small = pk.apply(model, plan)                          # pruned deep copy
    pk.save(small, plan, "out/")                           # plan.json + spec.json + model.safetensors
    small = pk.load("out/")                                # rebuild from the spec, replay, load weights
"""

import importlib

from prunekit.errors import (
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
from prunekit.version import __version__ as __version__  # re-exported: prunekit.__version__
from prunekit import plugins  # noqa: F401  (registries find installed plugins on a miss)

# The rest of the API needs torch, so it is imported on first use: `import prunekit` (and with it the
# `prunekit` command's start) stays fast. Module -> the names it provides.
_LAZY = {
    "prunekit.budget": ("ChannelFlops", "ChannelRatio", "FlopsRatio", "KeepBlocks", "Latency", "LatencyRatio", "ParamsRatio"),
    "prunekit.checkpoint": ("load", "save"),
    "prunekit.graph": ("Graph", "Layout", "Unit", "analyze"),
    "prunekit.plan": ("load_plan",),
    "prunekit.plan_record": ("LatencyRecord", "Plan", "Stats"),
    "prunekit.weight_refit": ("RefitReport", "refit"),
    "prunekit.replace": ("Replacement", "ReplacementCalibration", "register_replacement"),
    "prunekit.spec": ("ModelEntry", "ModelSpec", "describe_inputs", "spec_for", "spec_of"),
    "prunekit.strategies": ("Calibration", "Strategy", "get_strategy", "register_strategy"),
    "prunekit.surgery": ("Bypass", "apply", "remove_units"),
}
_SOURCE = {name: module for module, names in _LAZY.items() for name in names}
_SOURCE["plan"] = "prunekit.plan"  # the module itself, callable as `pk.plan(model, graph, ...)`


def __getattr__(name: str) -> object:
    if name not in _SOURCE:
        raise AttributeError(f"module 'prunekit' has no attribute {name!r}")
    module = importlib.import_module(_SOURCE[name])
    value = module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCE))


__all__ = [
    "Bypass", "Calibration", "ChannelFlops", "ChannelRatio", "CheckpointError", "ConfigError", "DataError",
    "ExportError", "FlopsRatio",
    "Graph", "InputShapeError", "KeepBlocks", "Latency", "LatencyRatio", "LatencyRecord", "Layout",
    "MissingWeightsError", "ModelEntry", "ModelSpec", "NoUnitsError", "ParamsRatio",
    "Plan", "PlanMismatchError", "PrunekitError", "RefitReport", "Replacement", "ReplacementCalibration", "Stats", "Strategy",
    "Unit", "UnknownNameError", "UnreachableTargetError", "analyze", "apply", "describe_inputs", "get_strategy", "load",
    "load_plan", "plan", "refit", "register_replacement", "register_strategy", "remove_units", "save", "spec_for", "spec_of",
]
