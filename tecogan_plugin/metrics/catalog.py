"""One descriptor per video metric: everything the evaluator, the `prunekit eval` command, the
training task, the benchmark and the reports need to know about it.

Descriptors live in `prunekit.registry.EVALUATORS` under the metric's name, so a plugin adds a metric
with `registries.evaluators.register(name, Metric(...))` and every consumer carries it. The functions
are named as "module:function" and imported on first use: descriptors travel to the CPU worker
processes as plain data, and this module (which those workers load) does not import torch.

`source` says what a metric is computed from, and so where it runs:

| source  | where | `per_frame(...)` |
|---|---|---|
| `y`     | CPU worker processes; on CUDA the `batched` torch version runs on the device | `(y_target, y_output)` float64 Y planes of one cropped frame -> float |
| `flow`  | CPU worker processes (temporal) | `(flow_target, flow_output)` cropped Farneback flows previous -> current frame -> float |
| `lpips` | the evaluation device, from each frame's AlexNet features (computed once for all such metrics) | spatial: `(d)` with d = LPIPS(target, output) per frame; temporal: `(d_target, d_output)` with the LPIPS distances between consecutive frames; (N,) tensors -> (N,) tensor |
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal

from prunekit.errors import ConfigError, UnknownNameError
from prunekit.registry import EVALUATORS

Source = Literal["y", "flow", "lpips"]


@dataclass(frozen=True)
class Metric:
    """A video metric: its name, how it is shown and judged, and how it is computed (see module doc).

    `temporal` metrics score a frame against the previous evaluated one, so they start one frame later;
    `digits` is the precision of the benchmark table."""

    name: str
    label: str
    higher_is_better: bool
    source: Source
    per_frame: str
    temporal: bool = False
    batched: str | None = None
    unit: str = ""
    digits: int = 4

    def __post_init__(self) -> None:
        if self.source == "flow" and not self.temporal:
            raise ValueError(f"metric {self.name!r}: a flow metric compares consecutive frames, so it is temporal")
        if self.source == "y" and self.temporal:
            raise ValueError(f"metric {self.name!r}: a Y-plane metric scores single frames, so it is not temporal")
        if self.batched is not None and self.source != "y":
            raise ValueError(f"metric {self.name!r}: only Y-plane metrics have a batched device version")

    @property
    def runs_on(self) -> str:
        """"cpu" (worker processes; Y-plane metrics with a batched version move to CUDA) or "device"."""
        return "device" if self.source == "lpips" else "cpu"

    def frame_fn(self) -> Callable:
        return _resolve(self.per_frame)

    def batched_fn(self) -> Callable | None:
        return None if self.batched is None else _resolve(self.batched)


@lru_cache(maxsize=None)
def _resolve(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


BUILTIN = (
    Metric("psnr", "PSNR", True, "y", "tecogan_plugin.metrics.psnr:psnr_from_y",
           batched="tecogan_plugin.metrics.device_ops:psnr_y_torch", unit="dB", digits=3),
    Metric("ssim", "SSIM", True, "y", "tecogan_plugin.metrics.ssim:ssim_from_y",
           batched="tecogan_plugin.metrics.device_ops:ssim_y_torch"),
    Metric("lpips", "LPIPS", False, "lpips", "tecogan_plugin.metrics.lpips_metric:lpips_from_distance"),
    Metric("tof", "tOF", False, "flow", "tecogan_plugin.metrics.tof:tof_from_flows", temporal=True),
    Metric("tlp", "tLP100", False, "lpips", "tecogan_plugin.metrics.lpips_metric:tlp_from_distances",
           temporal=True, digits=3),
)
BUILTIN_NAMES = tuple(m.name for m in BUILTIN)
"""The official protocol's five metrics, in the order of the published tables."""

for _metric in BUILTIN:
    EVALUATORS.register(_metric.name, _metric)


def get(name: str) -> Metric:
    """The descriptor of a registered metric; ConfigError naming the registered ones otherwise."""
    try:
        found = EVALUATORS.get(name)
    except UnknownNameError:
        found = None
    if not isinstance(found, Metric):
        raise ConfigError(f"metrics: unknown metric {name!r} (choose from {', '.join(names())})")
    return found


def names() -> tuple[str, ...]:
    """Every registered metric: the official five in table order, then plugins' metrics by name."""
    extra = [n for n in EVALUATORS.names() if n not in BUILTIN_NAMES and isinstance(EVALUATORS.get(n), Metric)]
    return BUILTIN_NAMES + tuple(extra)


def check_names(requested, what: str = "metrics") -> tuple[str, ...]:
    """`requested` (a non-empty list of registered names) in table order; ConfigError naming `what` otherwise."""
    # official names only: no need to load the plugins (presets are validated while the plugin loads)
    known = BUILTIN_NAMES if all(m in BUILTIN_NAMES for m in requested) else names()
    unknown = [m for m in requested if m not in known]
    if unknown or not requested:
        raise ConfigError(f"{what}: unknown {unknown} (choose from {', '.join(known)})")
    return tuple(m for m in known if m in requested)
