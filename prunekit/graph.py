"""Residual-unit discovery by tracing: which submodules of any nn.Module compute `x + g(x)`.

A module is a unit when it has parameters, its output has the shape of its first tensor input, and
re-running it with every parameter set to zero returns that input exactly, both for the input it saw
during the traced forward and for a random one. No model-specific code is needed, extra forward
arguments are replayed as recorded, and units nest naturally (a residual group holding residual blocks).
"""

from __future__ import annotations

import contextlib
import fnmatch
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from torch import nn
from torch.func import functional_call

from prunekit.errors import ConfigError, InputShapeError, UnknownNameError
from prunekit.profile import split_inputs

ExampleInputs = Any  # a tensor, a tuple of positional args, or a dict of keyword args


class Layout(BaseModel):
    """What a model's author knows about pruning it: where units may be found and which to keep.

    `include`/`protect` are fnmatch globs over dotted module paths and also cover everything below a
    matching path; `declare` names modules to treat as units even though they are not residual;
    `channel_ignore`/`fixed_channels` are handed to width pruning; `runner` names the registered
    runner (prunekit.registry.RUNNERS) a latency target times the model with by default.
    """

    model_config = ConfigDict(extra="forbid")

    include: list[str] = Field(default_factory=list)
    protect: list[str] = Field(default_factory=list)
    declare: list[str] = Field(default_factory=list)
    channel_ignore: list[str] = Field(default_factory=list)
    fixed_channels: list[str] = Field(default_factory=list)
    runner: str | None = None

    def includes(self, path: str) -> bool:
        return not self.include or _matches(path, self.include)

    def protects(self, path: str) -> bool:
        return _matches(path, self.protect)


class Unit(BaseModel):
    """One residual (or declared) unit. `removable` is False for protected units and for containers
    (units whose parameters all belong to their sub-units, e.g. an nn.Sequential of blocks)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    params: int
    flops: int
    flops_share: float
    parent: str | None
    children: list[str]
    depth: int
    removable: bool
    container: bool = False
    protected: bool = False
    declared: bool = False


class Graph(BaseModel):
    """The units of one model (outer before inner) plus the totals they are measured against."""

    model_config = ConfigDict(extra="forbid")

    units: list[Unit]
    total_params: int
    total_flops: int
    input_shapes: dict[str, list[int]]
    layout: Layout = Field(default_factory=Layout)
    _example_inputs: ExampleInputs = PrivateAttr(default=None)

    @property
    def example_inputs(self) -> ExampleInputs:
        """The inputs `analyze` traced with (not serialised)."""
        return self._example_inputs

    def unit(self, path: str) -> Unit:
        for u in self.units:
            if u.path == path:
                return u
        known = ", ".join(u.path for u in self.units) or "none"
        raise UnknownNameError(f"no unit {path!r} in this graph; units: {known}")

    def removable(self) -> list[Unit]:
        """Every unit a budget may remove (leaves and removable groups)."""
        return [u for u in self.units if u.removable]

    def leaves(self) -> list[Unit]:
        """The blocks: removable units with no sub-units."""
        return [u for u in self.units if u.removable and not u.children]


def _matches(path: str, globs: list[str]) -> bool:
    """True if `path` or one of its ancestors matches a glob, so `fnet` also covers `fnet.flow.0`."""
    parts = path.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, g) for p in prefixes for g in globs)


def input_shapes(example_inputs: ExampleInputs) -> dict[str, list[int]]:
    """Shapes of the tensor inputs, keyed `arg0`, `arg1`, ... or by keyword."""
    args, kwargs = split_inputs(example_inputs)
    named = [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    return {k: list(v.shape) for k, v in named if isinstance(v, torch.Tensor)}


def run_model(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """Call the model on example inputs; a failure becomes InputShapeError naming the shapes given."""
    args, kwargs = split_inputs(example_inputs)
    try:
        return model(*args, **kwargs)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise InputShapeError(
            f"{type(model).__name__} failed on the example inputs with shapes {input_shapes(example_inputs)}: {exc}"
        ) from exc


@dataclass
class _Call:
    args: tuple
    kwargs: dict
    out_shape: torch.Size | None  # only the shape is kept, so the trace does not pin every activation


def _record_first_calls(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, _Call]:
    calls: dict[str, _Call] = {}
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue

        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any, path: str = path) -> None:
            if path not in calls:
                shape = output.shape if isinstance(output, torch.Tensor) else None
                calls[path] = _Call(args, kwargs, shape)

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        run_model(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    return calls


def _first_tensor(call: _Call) -> tuple[int | str, torch.Tensor] | None:
    for i, a in enumerate(call.args):
        if isinstance(a, torch.Tensor):
            return i, a
    for k, v in call.kwargs.items():
        if isinstance(v, torch.Tensor):
            return k, v
    return None


def _with_input(call: _Call, where: int | str, x: torch.Tensor) -> tuple[tuple, dict]:
    args, kwargs = list(call.args), dict(call.kwargs)
    if isinstance(where, int):
        args[where] = x
    else:
        kwargs[where] = x
    return tuple(args), kwargs


# Layers whose output is exactly zero when their parameters are: they can never return their input,
# so replaying them would only cost time. Exact types, because a subclass may change `forward`.
_ZERO_WHEN_ZEROED = {
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
}


def _passthrough(*args: Any, **kwargs: Any) -> Any:
    return args[0] if args else next(iter(kwargs.values()))


@contextlib.contextmanager
def _as_identity(modules: list[nn.Module]) -> Iterator[None]:
    """Temporarily make verified units return their input. With zero parameters they do that
    anyway, so a parent's replay skips recomputing them (a deep trunk otherwise costs a full forward)."""
    saved = [m.__dict__.get("forward") for m in modules]
    for m in modules:
        m.forward = _passthrough
    try:
        yield
    finally:
        for m, f in zip(modules, saved):
            if f is None:
                del m.forward
            else:
                m.forward = f


def _is_residual(module: nn.Module, call: _Call, verified: list[nn.Module], gen: torch.Generator) -> bool:
    """`x + g(x)` test: with all parameters zero the module must give back its input exactly.
    `verified` are units inside `module` already known to pass it; `gen` draws the random probe
    (a private generator, so analysing a model leaves the global RNG alone)."""
    found = _first_tensor(call)
    if found is None or call.out_shape is None or type(module) in _ZERO_WHEN_ZEROED:
        return False
    where, x = found
    if call.out_shape != x.shape or not x.is_floating_point():
        return False
    zeros = {name: torch.zeros_like(p) for name, p in module.named_parameters()}
    with _as_identity(verified):
        random = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        for probe in (x, random):
            # the module gets a copy, so an in-place op on its input cannot make the comparison pass
            args, kwargs = _with_input(call, where, probe.clone())
            out = functional_call(module, zeros, args, kwargs)
            if not isinstance(out, torch.Tensor) or not torch.equal(out, probe):
                return False
    return True


def _unique_params(module: nn.Module) -> dict[int, int]:
    return {id(p): p.numel() for p in module.parameters()}


def _flops_by_module(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, int]:
    from prunekit import profile

    try:
        return profile.flops_by_module(model, example_inputs)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        # FLOPs are informative; a model fvcore cannot trace must still be analysable.
        warnings.warn(f"FLOPs could not be counted ({exc}); unit FLOPs are reported as 0", stacklevel=3)
        return {"": 0}


def analyze(model: nn.Module, example_inputs: ExampleInputs, layout: Layout | None = None) -> Graph:
    """Find the residual units of `model` by running it once on `example_inputs`."""
    layout = layout or Layout()
    modules = dict(model.named_modules())
    for path in layout.declare:
        if path not in modules or not path:
            raise ConfigError(f"layout.declare names {path!r}, which is not a submodule of {type(model).__name__}")

    modes = {m: m.training for m in model.modules()}  # restored one by one: mixed modes survive
    model.eval()
    try:
        with torch.no_grad():
            calls = _record_first_calls(model, example_inputs)
            residual: dict[str, nn.Module] = {}
            gen = torch.Generator().manual_seed(0)
            for path, module in reversed(modules.items()):  # inner modules before the ones holding them
                if not path or not layout.includes(path) or path in layout.declare or path not in calls:
                    continue
                inner = [m for p, m in residual.items() if p.startswith(path + ".")]
                if _unique_params(module) and _is_residual(module, calls[path], inner, gen):
                    residual[path] = module
            found = [(p, p in layout.declare) for p in modules if p in residual or (p and p in layout.declare)]
        flops = _flops_by_module(model, example_inputs)
    finally:
        for m, training in modes.items():
            m.training = training

    total_params = sum(_unique_params(model).values())
    total_flops = int(flops.get("", 0))
    paths = [p for p, _ in found]

    def parent_of(path: str) -> str | None:
        ancestors = [p for p in paths if path.startswith(p + ".")]
        return max(ancestors, key=len) if ancestors else None

    parents = {p: parent_of(p) for p in paths}
    units = []
    for path, declared in found:
        module = modules[path]
        children = [c for c in paths if parents[c] == path]
        own = _unique_params(module)
        in_children: dict[int, int] = {}
        for c in children:
            in_children.update(_unique_params(modules[c]))
        container = bool(children) and set(own) <= set(in_children)
        protected = layout.protects(path)
        depth, p = 0, parents[path]
        while p is not None:
            depth, p = depth + 1, parents[p]
        unit_flops = int(flops.get(path, 0))
        units.append(
            Unit(
                path=path,
                params=sum(own.values()),
                flops=unit_flops,
                flops_share=unit_flops / total_flops if total_flops else 0.0,
                parent=parents[path],
                children=children,
                depth=depth,
                removable=not container and not protected,
                container=container,
                protected=protected,
                declared=declared,
            )
        )
    graph = Graph(
        units=units,
        total_params=total_params,
        total_flops=total_flops,
        input_shapes=input_shapes(example_inputs),
        layout=layout,
    )
    graph._example_inputs = example_inputs
    return graph
