"""prunekit: structured pruning (residual blocks and channels) for PyTorch models.

    graph = pk.analyze(model, example_inputs)              # find the residual units
    plan = pk.plan(model, graph, target=pk.KeepBlocks(5))  # score them, pick what to remove
    small = pk.apply(model, plan)                          # pruned deep copy
    pk.save(small, plan, "out/")                           # plan.json + spec.json + model.safetensors
    small = pk.load("out/")                                # rebuild from the spec, replay, load weights
"""

__version__ = "0.1.0"

from prunekit.budget import ChannelFlops, ChannelRatio, FlopsRatio, KeepBlocks, ParamsRatio  # noqa: E402
from prunekit.checkpoint import load, save  # noqa: E402
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
from prunekit.graph import Graph, Layout, Unit, analyze  # noqa: E402
from prunekit.plan import Plan, Stats, load_plan, plan  # noqa: E402
from prunekit.spec import ModelEntry, ModelSpec, describe_inputs, spec_for, spec_of  # noqa: E402
from prunekit.strategies import Calibration, Strategy, get_strategy, register_strategy  # noqa: E402
from prunekit.surgery import Bypass, apply, remove_units  # noqa: E402

__all__ = [
    "Bypass", "Calibration", "ChannelFlops", "ChannelRatio", "CheckpointError", "ConfigError", "DataError",
    "ExportError", "FlopsRatio",
    "Graph", "InputShapeError", "KeepBlocks", "Layout", "MissingWeightsError", "ModelEntry", "ModelSpec",
    "NoUnitsError", "ParamsRatio",
    "Plan", "PlanMismatchError", "PrunekitError", "Stats", "Strategy", "Unit", "UnknownNameError",
    "UnreachableTargetError", "analyze", "apply", "describe_inputs", "get_strategy", "load", "load_plan", "plan",
    "register_strategy", "remove_units", "save", "spec_for", "spec_of",
]
