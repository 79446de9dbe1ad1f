"""Measured latency: runners (how a model runs when it is timed), timing, interleaved comparison,
and the on-disk cache of per-layer timings the latency planner uses.

A runner is `runner(model) -> step`, where `step(inputs)` runs one forward pass the way the
model will be deployed ("plain": eval mode + inference_mode; a plugin registers faster paths in
`prunekit.registry.RUNNERS`). A runner may carry a `memory_format` attribute (e.g.
torch.channels_last): single layers are then timed in that format, as the runner would run them.

Clocks: "wall" is perf_counter time (CUDA synchronised); "cpu" is the calling thread's CPU time,
which equals wall time for a one-thread CPU run but does not count time the core spent on other
processes, so it stays stable on a shared machine. "auto" picks "cpu" on CPU with one thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunekit.errors import ConfigError
from prunekit.fileio import atomic_write
from prunekit.nested import map_tensors
from prunekit.profile import call_model
from prunekit.registry import RUNNERS

Runner = Callable[[nn.Module], Callable[[Any], Any]]
CLOCKS = ("auto", "wall", "cpu")


def plain_runner(model: nn.Module) -> Callable[[Any], Any]:
    """The model as written: eval mode, `torch.inference_mode`."""
    model.eval()

    def step(inputs: Any) -> Any:
        with torch.inference_mode():
            return call_model(model, inputs)

    return step


RUNNERS.register("plain", plain_runner)


def resolve_runner(runner: str | Runner | None, default: str | None = None) -> tuple[str, Runner]:
    """(name, callable) for a registered name, a callable or None (`default`, else "plain")."""
    if runner is None:
        runner = default or "plain"
    if isinstance(runner, str):
        return runner, RUNNERS.get(runner)
    if callable(runner):
        return getattr(runner, "__name__", type(runner).__name__), runner
    raise ConfigError(f"runner must be a registered name or a callable, got {type(runner).__name__}")


def device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def device_name(device: torch.device) -> str:
    """A readable, stable name of the hardware behind `device` (the CPU model or the GPU name)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"cpu:{name}"


def pick_clock(clock: str, device: torch.device, threads: int) -> str:
    if clock not in CLOCKS:
        raise ConfigError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if clock == "auto":
        return "cpu" if device.type == "cpu" and threads == 1 else "wall"
    if clock == "cpu" and device.type != "cpu":
        raise ConfigError("clock='cpu' times CPU work only; use 'wall' for CUDA")
    return clock


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


class Timer:
    """Times one call of a step with the chosen clock (CUDA synchronised for wall time)."""

    def __init__(self, clock: str, device: torch.device) -> None:
        self.clock = clock
        self.sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def __call__(self, step: Callable[[Any], Any], inputs: Any) -> float:
        now = time.thread_time if self.clock == "cpu" else time.perf_counter
        self.sync()
        start = now()
        step(inputs)
        self.sync()
        return (now() - start) * 1000.0


def summary(times: list[float]) -> dict[str, float]:
    """Median and spread ((p75 - p25) / median) of a list of milliseconds."""
    ordered = sorted(times)
    med = statistics.median(ordered)
    q = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [med, med, med]
    return {"median_ms": med, "min_ms": ordered[0], "max_ms": ordered[-1],
            "spread": (q[2] - q[0]) / med if med > 0 else 0.0, "repeats": len(ordered), "times_ms": list(times)}


def paired_ratio(stats: dict[str, dict[str, Any]], name: str, reference: str) -> float:
    """Median over rounds of `name`'s time / `reference`'s time in the same round of a `compare`:
    each pair ran back to back, so a burst of load on a shared machine cancels out."""
    return statistics.median(a / b for a, b in zip(stats[name]["times_ms"], stats[reference]["times_ms"]))


def measure(
    model: nn.Module,
    inputs: Any,
    runner: str | Runner | None = None,
    threads: int | None = None,
    repeats: int = 7,
    warmup: int = 2,
    clock: str = "auto",
) -> dict[str, Any]:
    """Latency of one forward pass of `model` as `runner` runs it: median and spread of `repeats`
    timed calls after `warmup` untimed ones, on the model's device."""
    return compare({"model": model}, inputs, runner, rounds=repeats, warmup=warmup, threads=threads, clock=clock)["model"]


def compare(
    models: dict[str, nn.Module],
    inputs: Any,
    runner: str | Runner | None = None,
    rounds: int = 7,
    warmup: int = 2,
    threads: int | None = None,
    clock: str = "auto",
) -> dict[str, dict[str, Any]]:
    """Time several models interleaved (a, b, c, a, b, c, ...), so load changes on a shared machine
    hit all of them alike; returns per-name stats (median_ms, spread, ...)."""
    if rounds < 1 or warmup < 0:
        raise ConfigError(f"latency needs rounds >= 1 and warmup >= 0, got {rounds} and {warmup}")
    name, make = resolve_runner(runner)
    with num_threads(threads) as n:
        device = device_of(next(iter(models.values())))
        chosen = pick_clock(clock, device, n)
        timer = Timer(chosen, device)
        data = map_tensors(lambda t: t.to(device), inputs)
        steps = {k: make(m) for k, m in models.items()}
        for step in steps.values():
            for _ in range(warmup):
                step(data)
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(rounds):
            for k, step in steps.items():
                times[k].append(timer(step, data))
    meta = {"device": str(device), "hardware": device_name(device), "threads": n, "runner": name, "clock": chosen}
    return {k: {**summary(v), **meta} for k, v in times.items()}


# ----------------------------------------------------------------------------- lookup-table cache
def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where latency tables are kept: `path`, else $PRUNEKIT_CACHE/latency, else ~/.cache/prunekit/latency."""
    if path is not None:
        return Path(path).expanduser()
    root = os.environ.get("PRUNEKIT_CACHE")
    return Path(root).expanduser() / "latency" if root else Path.home() / ".cache" / "prunekit" / "latency"


def model_signature(model: nn.Module) -> str:
    """A hash of the module tree (types, paths, parameter and buffer shapes): the same architecture
    gives the same signature whatever its weights."""
    h = hashlib.sha256()
    for path, module in model.named_modules():
        h.update(f"{path}:{type(module).__qualname__};".encode())
    for path, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{path}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    return h.hexdigest()[:16]


class TableKey(BaseModel):
    """Everything a timing depends on; a table is reused only when all of it matches."""

    model_config = ConfigDict(extra="forbid")

    hardware: str
    device: str
    threads: int
    runner: str
    clock: str
    shapes: dict[str, list[int]]
    model: str
    torch: str = Field(default_factory=lambda: torch.__version__)

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:20]


class LatencyTable(BaseModel):
    """Cached timings: `layers` maps a layer signature plus widths ("sig|cin|cout") to ms."""

    model_config = ConfigDict(extra="forbid")

    key: TableKey
    layers: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def load(cls, key: TableKey, directory: Path | None) -> "LatencyTable":
        """The cached table for `key`, or an empty one (an unreadable cache file is ignored)."""
        if directory is not None:
            path = directory / f"{key.digest()}.json"
            with contextlib.suppress(OSError, ValueError):
                table = cls.model_validate_json(path.read_text())
                if table.key == key:
                    return table
        return cls(key=key)

    def save(self, directory: Path | None) -> None:
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / f"{self.key.digest()}.json", json.dumps(self.model_dump(), indent=1))
