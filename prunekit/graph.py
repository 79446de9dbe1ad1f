"""Residual-unit discovery: which submodules of any nn.Module compute `x + g(x)`.

Two checks, both on the input each module really received during one forward pass:

* structure: re-run the module on that input with autograd on and read the graph of its output. It
  is a residual when the output is `add(input, branch)`, the branch optionally scaled, possibly a
  chain of such adds (a transformer block's attention and MLP), optionally with element-wise
  activations or norms on the trunk (`relu(x + f(x))`, post-norm `norm(x + f(x))`). Removal is
  *exact* when the module with its branch gone returns its input (no trunk op, or the op is the
  identity on the recorded input, as ReLU is on post-ReLU features) and *approximate* otherwise.
* zero replay (the original rule, kept for forms the structure check does not read): with every
  parameter set to zero the module returns its input exactly, for the recorded and a random input.

No model-specific code is needed, extra forward arguments are replayed as recorded, and units nest
(a residual group holding residual blocks, an RRDB around its dense blocks). Each branch of a chain
of two or more adds that is the output of one submodule becomes a *branch unit*: removed by replacing
that submodule with a zero stand-in (surgery.ZeroBranch).
"""

from __future__ import annotations

import contextlib
import fnmatch
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from torch import nn
from torch.func import functional_call

from prunekit.errors import ConfigError, UnknownNameError
from prunekit.profile import call_model, input_shapes

ExampleInputs = Any  # a tensor, a tuple of positional args, or a dict of keyword args


class Layout(BaseModel):
    """What a model's author knows about pruning it: where units may be found and which to keep.

    `include`/`protect` are fnmatch globs over dotted module paths and also cover everything below a
    matching path; `declare` names modules to treat as units even though they are not residual;
    `channel_ignore`/`fixed_channels` are handed to width pruning; `runner` names the registered
    runner (prunekit.registry.RUNNERS) a latency target times the model with by default;
    `allow_approximate=False` keeps units whose removal is only approximate (post-norm blocks)
    listed but not removable.
    """

    model_config = ConfigDict(extra="forbid")

    include: list[str] = Field(default_factory=list)
    protect: list[str] = Field(default_factory=list)
    declare: list[str] = Field(default_factory=list)
    channel_ignore: list[str] = Field(default_factory=list)
    fixed_channels: list[str] = Field(default_factory=list)
    runner: str | None = None
    allow_approximate: bool = True

    def includes(self, path: str) -> bool:
        return not self.include or _matches(path, self.include)

    def protects(self, path: str) -> bool:
        return _matches(path, self.protect)


class Unit(BaseModel):
    """One residual (or declared) unit. `removable` is False for protected units, for containers
    (units whose parameters all belong to their sub-units and whose own computation is not a
    residual, e.g. an nn.Sequential of blocks) and for approximate units a layout disallows.

    `kind="residual"`: removal replaces the module by the identity. `kind="branch"`: the module is
    one branch of a residual chain inside its parent (a transformer block's `attn` or `mlp`);
    removal replaces it by a zero stand-in returning `outputs` values (0: a tensor, n: a tuple).
    `exact`: removal gives what the module computes with its branch gone, on the recorded inputs;
    False for post-norm units (`norm(x + f(x))` becomes `x`, not `norm(x)`)."""

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
    kind: Literal["residual", "branch"] = "residual"
    exact: bool = True
    outputs: int = 0


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


def run_model(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """Call the model on example inputs; a failure becomes InputShapeError naming the shapes given."""
    return call_model(model, example_inputs, what="the example inputs")


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


def _fresh_passthrough(*args: Any, **kwargs: Any) -> Any:
    """The input as a new tensor, so an in-place op on a bypassed unit's result (`res += x`) does
    not modify the module's input and the autograd graph still tells the two apart."""
    return _passthrough(*args, **kwargs).clone()


@contextlib.contextmanager
def _as_identity(modules: list[nn.Module], forward: Any = _passthrough) -> Iterator[None]:
    """Temporarily make verified units return their input. With their branch gone they do that
    anyway, so a parent's replay skips recomputing them (a deep trunk otherwise costs a full forward)."""
    saved = [m.__dict__.get("forward") for m in modules]
    for m in modules:
        m.forward = forward
    try:
        yield
    finally:
        for m, f in zip(modules, saved):
            if f is None:
                del m.forward
            else:
                m.forward = f


def _zero_replay(module: nn.Module, call: _Call, probe: torch.Tensor, verified: list[nn.Module]) -> bool:
    """True if `module` with every parameter zero returns `probe` (fed as its first input) exactly."""
    where, _ = _first_tensor(call)  # type: ignore[misc]
    zeros = {name: torch.zeros_like(p) for name, p in module.named_parameters()}
    with _as_identity(verified):
        # the module gets a copy, so an in-place op on its input cannot make the comparison pass
        args, kwargs = _with_input(call, where, probe.clone())
        out = functional_call(module, zeros, args, kwargs)
    return isinstance(out, torch.Tensor) and torch.equal(out, probe)


def _same_shape_input(module: nn.Module, call: _Call) -> torch.Tensor | None:
    """The first tensor input when the module could be a unit (float, output of the same shape)."""
    found = _first_tensor(call)
    if found is None or call.out_shape is None or type(module) in _ZERO_WHEN_ZEROED:
        return None
    x = found[1]
    return x if call.out_shape == x.shape and x.is_floating_point() else None


def _is_residual(module: nn.Module, call: _Call, verified: list[nn.Module], gen: torch.Generator) -> bool:
    """Zero replay: with all parameters zero the module must give back its input exactly, for the
    recorded input and a random one. `verified` are units inside `module` already known to be
    units; `gen` draws the random probe (a private generator: the global RNG is left alone)."""
    x = _same_shape_input(module, call)
    if x is None:
        return False
    random = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    return all(_zero_replay(module, call, probe, verified) for probe in (x, random))


# Autograd nodes allowed on the trunk of a residual: element-wise activations and norms.
_TRUNK_OPS = {
    "ReluBackward", "LeakyReluBackward", "HardtanhBackward", "GeluBackward", "SiluBackward", "EluBackward",
    "PreluKernelBackward", "NativeLayerNormBackward", "NativeBatchNormBackward", "NativeGroupNormBackward",
    "CudnnBatchNormBackward",
}


def _op(node: Any) -> str:
    return node.name().rstrip("0123456789")


@dataclass
class _Form:
    """A residual read from the autograd graph: the branch nodes added to the trunk, in order, and
    whether an activation / norm sits on the trunk."""

    branches: list[Any]
    trunk_ops: bool
    modules: dict[int, tuple[str, int]] = field(default_factory=dict)  # branch node -> (path, outputs)


def _chain(node: Any, start: Any, memo: dict[int, Any]) -> tuple[list[Any], bool] | None:
    """(branches, trunk ops seen) if `node` reduces to `start` through adds and trunk ops only,
    with at least one add below every trunk op."""
    if node is start:
        return [], False
    if node is None:
        return None
    if id(node) in memo:
        return memo[id(node)]
    found: tuple[list[Any], bool] | None = None
    op = _op(node)
    if op in _TRUNK_OPS:
        inner = _chain(node.next_functions[0][0], start, memo)
        found = (inner[0], True) if inner is not None and inner[0] else None  # only after an add: relu(x) + f(x) is no residual
    elif op == "AddBackward" and len(node.next_functions) == 2:
        a, b = node.next_functions[0][0], node.next_functions[1][0]
        for trunk, branch in ((a, b), (b, a)):
            if branch is None or branch is start:
                continue
            inner = _chain(trunk, start, memo)
            if inner is not None:
                found = (inner[0] + [branch], inner[1])
                break
    memo[id(node)] = found
    return found


def _residual_form(module: nn.Module, call: _Call, inner: list[nn.Module]) -> _Form | None:
    """Read `module`'s computation on its recorded input: None unless it is a residual (above)."""
    x = _same_shape_input(module, call)
    if x is None:
        return None
    where, _ = _first_tensor(call)  # type: ignore[misc]
    with torch.enable_grad():
        probe = x.detach().clone().requires_grad_(True).clone()
    start = probe.grad_fn
    produced: dict[int, list[tuple[str, int]]] = {}  # output node -> (path, outputs) of the calls making it
    ncalls: dict[str, int] = {}
    handles = []
    for path, sub in module.named_modules():
        if not path or not any(True for _ in sub.parameters()):
            continue

        def hook(mod: nn.Module, args: tuple, out: Any, path: str = path) -> None:
            ncalls[path] = ncalls.get(path, 0) + 1
            first = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(first, torch.Tensor) and first.grad_fn is not None:
                n = len(out) if isinstance(out, (tuple, list)) else 0
                produced.setdefault(id(first.grad_fn), []).append((path, n))

        handles.append(sub.register_forward_hook(hook))
    args, kwargs = _with_input(call, where, probe)
    try:
        with torch.enable_grad(), _as_identity(inner, _fresh_passthrough):
            out = module(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or out.grad_fn is None:
            return None
        found = _chain(out.grad_fn, start, {})
    except (RuntimeError, ValueError, TypeError, IndexError, RecursionError):
        return None  # the recorded call does not replay with gradients: leave it to zero replay
    finally:
        for h in handles:
            h.remove()
    if not found or not found[0]:
        return None
    form = _Form(found[0], found[1])
    inner_ids = {id(m) for m in inner}
    modules = dict(module.named_modules())
    for node in form.branches:
        makers = [(p, n) for p, n in produced.get(id(node), []) if ncalls[p] == 1 and id(modules[p]) not in inner_ids]
        if makers:
            form.modules[id(node)] = min(makers, key=lambda m: m[0].count("."))  # the outermost module
    return form


@dataclass
class _Found:
    module: nn.Module
    exact: bool
    own_residual: bool  # its own computation is a residual (not only a chain of sub-units)
    branches: list[tuple[str, int]]  # branch sub-units: (path relative to the module, outputs)


def _classify(module: nn.Module, call: _Call, inner: list[nn.Module], gen: torch.Generator) -> _Found | None:
    form = _residual_form(module, call, inner)
    if form is None:
        return _Found(module, True, False, []) if _is_residual(module, call, inner, gen) else None
    exact = not form.trunk_ops or _zero_replay(module, call, _same_shape_input(module, call), inner)  # type: ignore[arg-type]
    branches: list[tuple[str, int]] = []
    if len(form.branches) >= 2 and not form.trunk_ops and all(id(b) in form.modules for b in form.branches):
        branches = [form.modules[id(b)] for b in form.branches]
        if len({p for p, _ in branches}) != len(branches):
            branches = []
    return _Found(module, exact, True, branches)


def _unique_params(module: nn.Module) -> dict[int, int]:
    return {id(p): p.numel() for p in module.parameters()}


def _flops_by_module(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, int]:
    from prunekit import profile

    try:
        return profile.flops_by_module(model, example_inputs)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        # FLOPs are informative; a model that cannot be counted must still be analysable.
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
            residual: dict[str, _Found] = {}
            branch_of: dict[str, tuple[str, int]] = {}  # branch unit path -> (block path, outputs)
            gen = torch.Generator().manual_seed(0)
            for path, module in reversed(modules.items()):  # inner modules before the ones holding them
                if not path or not layout.includes(path) or path in layout.declare or path not in calls:
                    continue
                inner = [f.module for p, f in residual.items() if p.startswith(path + ".")]
                if not _unique_params(module):
                    continue
                found_here = _classify(module, calls[path], inner, gen)
                if found_here is not None:
                    residual[path] = found_here
                    for sub, outputs in found_here.branches:
                        if layout.includes(f"{path}.{sub}"):
                            branch_of[f"{path}.{sub}"] = (path, outputs)
            found = [
                (p, p in layout.declare) for p in modules
                if p in residual or p in branch_of or (p and p in layout.declare)
            ]
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
        info = residual.get(path)
        own_residual = info is not None and info.own_residual
        container = bool(children) and set(own) <= set(in_children) and not own_residual
        exact = info.exact if info is not None else True
        protected = layout.protects(path)
        depth, p = 0, parents[path]
        while p is not None:
            depth, p = depth + 1, parents[p]
        unit_flops = int(flops.get(path, 0))
        branch = branch_of.get(path)
        units.append(
            Unit(
                path=path,
                params=sum(own.values()),
                flops=unit_flops,
                flops_share=unit_flops / total_flops if total_flops else 0.0,
                parent=parents[path],
                children=children,
                depth=depth,
                removable=not container and not protected and (exact or layout.allow_approximate),
                container=container,
                protected=protected,
                declared=declared,
                kind="branch" if branch is not None and info is None else "residual",
                exact=exact,
                outputs=branch[1] if branch is not None and info is None else 0,
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
