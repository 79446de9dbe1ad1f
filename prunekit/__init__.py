"""prunekit: structured pruning (residual blocks and channels) for PyTorch models.

    graph = pk.analyze(model, example_inputs)              # find the residual units
    plan = pk.plan(model, graph, target=pk.KeepBlocks(5))  # score them, pick what to remove
    small = pk.apply(model, plan)                          # pruned deep copy
    pk.save(small, plan, "out/")                           # plan.json + model.safetensors
    small = pk.load("out/", build=factory)                 # rebuild, replay, load weights
"""

__version__ = "0.1.0"

from prunekit.budget import (  # noqa: E402
    ChannelFlops,
    ChannelRatio,
    FlopsRatio,
    KeepBlocks,
    Latency,
    LatencyRatio,
    ParamsRatio,
)
from prunekit.checkpoint import load, save  # noqa: E402
from prunekit.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    InputShapeError,
    MissingWeightsError,
    NoUnitsError,
    PlanMismatchError,
    PrunekitError,
    UnknownNameError,
    UnreachableTargetError,
)
from prunekit.graph import Graph, Layout, Unit, analyze  # noqa: E402
from prunekit.plan import LatencyRecord, Plan, Stats, load_plan, plan  # noqa: E402
from prunekit.replace import Replacement, ReplacementCalibration, register_replacement  # noqa: E402
from prunekit.strategies import Calibration, Strategy, get_strategy, register_strategy  # noqa: E402
from prunekit.surgery import Bypass, apply, remove_units  # noqa: E402

__all__ = [
    "Bypass", "Calibration", "ChannelFlops", "ChannelRatio", "CheckpointError", "ConfigError", "DataError",
    "FlopsRatio",
    "Graph", "InputShapeError", "KeepBlocks", "Latency", "LatencyRatio", "LatencyRecord", "Layout",
    "MissingWeightsError", "NoUnitsError", "ParamsRatio",
    "Plan", "PlanMismatchError", "PrunekitError", "Replacement", "ReplacementCalibration", "Stats", "Strategy",
    "Unit", "UnknownNameError", "UnreachableTargetError", "analyze", "apply", "get_strategy", "load", "load_plan",
    "plan", "register_replacement", "register_strategy", "remove_units", "save",
]

from prunekit import importance, latency  # noqa: E402,F401  (register the "plain" runner and the importance measures)
