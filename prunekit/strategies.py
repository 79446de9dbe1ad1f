"""Strategies: score residual units so a budget can decide which to remove (higher score = keep).

A strategy only scores; it never edits the model. Built-ins:

=================  ===========  ============================================================
name               needs data   score of a unit
=================  ===========  ============================================================
positional         no           its rank in a fixed removal order (mode last | first | spread)
magnitude          no           L1 / L2 norm of the branch's parameters (per parameter by default)
block_influence    inputs       1 - cosine similarity of the unit's input and output
ablation           inputs       output MSE (or task-loss increase) when the unit is bypassed
taylor             inputs,      |<dL/d out, out - in>| summed over batches: first-order loss change
                   targets,     when the unit is removed
                   loss_fn
random             no           seeded uniform numbers
=================  ===========  ============================================================

New strategies subclass `Strategy` and register with `@register_strategy("name")` or from a
plugin's `register(registries)` via `registries.strategies.register("name", cls)`.
"""

from __future__ import annotations

import inspect
import math
import random as _random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError
from prunekit.nested import tensors_in
from prunekit.profile import call_model, eval_mode
from prunekit.registry import STRATEGIES
from prunekit.removal import remove_units

if TYPE_CHECKING:
    from prunekit.graph import Graph, Unit

ExampleInputs = Any  # a tensor, a tuple of positional args, or a dict of keyword args
Scores = dict[str, float]


@dataclass
class Calibration:
    """Data some strategies score with: example-input batches and, for task losses, targets.

    `inputs[i]` is one batch in any example-input form (tensor, tuple of args, dict of kwargs);
    `targets[i]` (optional) goes with it; `loss_fn(output, target) -> scalar tensor`.
    """

    inputs: list[ExampleInputs]
    targets: list[Any] | None = None
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, list) or not self.inputs:
            raise ConfigError("Calibration.inputs must be a non-empty list of example-input batches")
        if self.targets is not None and len(self.targets) != len(self.inputs):
            raise ConfigError(
                f"Calibration.targets has {len(self.targets)} entries but inputs has {len(self.inputs)}"
            )

    def batches(self) -> Iterator[tuple[ExampleInputs, Any]]:
        targets = self.targets if self.targets is not None else [None] * len(self.inputs)
        return iter(zip(self.inputs, targets))

    @property
    def has_task_loss(self) -> bool:
        return self.targets is not None and self.loss_fn is not None


def as_calibration(data: Any) -> Calibration | None:
    """Accept a Calibration, a plain list of input batches, or one batch (tensor / tuple / dict)."""
    if data is None or isinstance(data, Calibration):
        return data
    if isinstance(data, list):
        return Calibration(inputs=data)
    if isinstance(data, (torch.Tensor, tuple, dict)):
        return Calibration(inputs=[data])
    raise ConfigError(
        f"calibration data must be a Calibration, a list of input batches or one batch; got {type(data).__name__}"
    )


def _paths(units: Iterable[Unit | str]) -> list[str]:
    return [u if isinstance(u, str) else u.path for u in units]


def _branches(graph: Graph | None, units: Iterable[Unit | str]) -> dict[str, tuple[str, int]]:
    """The branch units among `units`: path -> (the block they branch in, outputs). Removing one
    zeroes its output instead of bypassing it, so scores measure the trunk, not the module."""
    found: dict[str, tuple[str, int]] = {}
    for u in units:
        if isinstance(u, str):
            known = {v.path: v for v in graph.units} if graph is not None else {}
            if u not in known:
                continue
            u = known[u]
        if u.kind == "branch" and u.parent is not None:
            found[u.path] = (u.parent, u.outputs)
    return found


def _modules_at(model: nn.Module, paths: list[str]) -> dict[str, nn.Module]:
    """The submodules at `paths`; ConfigError naming every path the model lacks."""
    modules = dict(model.named_modules())
    unknown = [p for p in paths if p not in modules]
    if unknown:
        raise ConfigError(f"units {unknown} are not submodules of {type(model).__name__}")
    return {p: modules[p] for p in paths}


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _run(model: nn.Module, batch: ExampleInputs) -> Any:
    return call_model(model, batch, what="a calibration batch")


class Strategy:
    """Scores units; higher = keep. Subclasses set `needs_data` and implement `score`."""

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False

    def score(self, model: nn.Module, graph: Graph | None, units: Sequence[Unit | str], data: Any = None) -> Scores:
        raise NotImplementedError

    def _calibration(self, data: Any) -> Calibration:
        calib = as_calibration(data)
        if calib is None:
            raise ConfigError(
                f"strategy {self.name!r} needs calibration data: pass data=Calibration(inputs=[...]) "
                "or a list of example-input batches"
            )
        return calib


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: register a Strategy subclass under `name` in prunekit.registry.STRATEGIES."""

    def add(cls: type[Strategy]) -> type[Strategy]:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"@register_strategy({name!r}) needs a Strategy subclass, got {cls!r}")
        cls.name = name
        STRATEGIES.register(name, cls)
        return cls

    return add


def get_strategy(name: str | Strategy, **kwargs: Any) -> Strategy:
    """Build a registered strategy by name (UnknownNameError lists the registered ones)."""
    if isinstance(name, Strategy):
        if kwargs:
            raise ConfigError(f"strategy options {sorted(kwargs)} given with an already-built strategy")
        return name
    cls = STRATEGIES.get(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError:
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("args", "kwargs")]
        raise ConfigError(
            f"strategy {name!r} got options {sorted(kwargs)}; it accepts {accepted or 'none'}"
        ) from None
    strategy = cls(**kwargs)
    if not getattr(strategy, "name", ""):
        strategy.name = name  # registered from a plugin without the decorator
    return strategy


def _spread_order(n: int) -> list[int]:
    """Removal order that keeps removed blocks evenly spread for every count: breadth-first
    bisection (the middle block first, then the middles of both halves, ...)."""
    order: list[int] = []
    level = [(0, n - 1)]
    while level:
        nxt = []
        for lo, hi in level:
            if lo > hi:
                continue
            mid = (lo + hi) // 2
            order.append(mid)
            nxt += [(lo, mid - 1), (mid + 1, hi)]
        level = nxt
    return order


@register_strategy("positional")
class Positional(Strategy):
    """Remove blocks by position. `mode="last"` (default) removes the last blocks first, i.e.
    keeps the first N, like loading a dense checkpoint into a natively smaller network (the
    TecoGAN study pruned positionally without saying which end); "first" removes from the front;
    "spread" removes evenly spaced blocks (middle first, then the middles of the halves, ...).
    Position is the order of `units` as given (model order for `graph.removable()`)."""

    MODES = ("last", "first", "spread")

    def __init__(self, mode: str = "last") -> None:
        if mode not in self.MODES:
            raise ConfigError(f"positional mode must be one of {list(self.MODES)}, got {mode!r}")
        self.mode = mode

    def score(self, model: nn.Module, graph: Graph | None, units: Sequence[Unit | str], data: Any = None) -> Scores:
        paths = _paths(units)
        n = len(paths)
        if self.mode == "last":
            removal = list(range(n - 1, -1, -1))
        elif self.mode == "first":
            removal = list(range(n))
        else:
            removal = _spread_order(n)
        return {paths[i]: float(rank) for rank, i in enumerate(removal)}


@register_strategy("magnitude")
class Magnitude(Strategy):
    """Norm of all parameters inside the unit (for `x + g(x)` these are g's). `per_param=True`
    divides by the parameter count (L1: mean |w|; L2: root-mean-square) so wide and narrow
    units compare fairly."""

    def __init__(self, norm: str = "l1", per_param: bool = True) -> None:
        if norm not in ("l1", "l2"):
            raise ConfigError(f"magnitude norm must be 'l1' or 'l2', got {norm!r}")
        self.norm = norm
        self.per_param = per_param

    def score(self, model: nn.Module, graph: Graph | None, units: Sequence[Unit | str], data: Any = None) -> Scores:
        scores: Scores = {}
        for path, module in _modules_at(model, _paths(units)).items():
            params = [p.detach().double() for p in module.parameters()]
            count = sum(p.numel() for p in params)
            if self.norm == "l1":
                total = sum(float(p.abs().sum()) for p in params)
                scores[path] = total / count if self.per_param and count else total
            else:
                total = sum(float(p.pow(2).sum()) for p in params)
                scores[path] = math.sqrt(total / count if self.per_param and count else total)
        return scores


class _Recorder:
    """Forward hooks that capture each unit's first tensor input and its output."""

    def __init__(self, model: nn.Module, paths: list[str], on_call: Callable[..., None], pre: bool = False) -> None:
        modules = _modules_at(model, paths)  # all resolved first, so a bad path leaves no hook behind
        if pre:  # on_call(path, first input) before the module runs
            self.handles = [
                modules[path].register_forward_pre_hook(self._pre_hook(path, on_call), with_kwargs=True)
                for path in paths
            ]
        else:
            self.handles = [
                modules[path].register_forward_hook(self._hook(path, on_call), with_kwargs=True) for path in paths
            ]

    @staticmethod
    def _hook(path: str, on_call: Callable) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            x = _first_tensor(args, kwargs)
            if x is not None:
                on_call(path, x, output)

        return hook

    @staticmethod
    def _pre_hook(path: str, on_call: Callable) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = _first_tensor(args, kwargs)
            if x is not None:
                on_call(path, x)

        return hook

    def __enter__(self) -> "_Recorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()


def _unit_output(output: Any) -> torch.Tensor:
    tensors = tensors_in(output)
    if not tensors:
        raise ConfigError("a unit returned no tensor; cannot score it")
    return tensors[0]


@register_strategy("block_influence")
class BlockInfluence(Strategy):
    """1 - cosine similarity between a unit's input and output, per sample, averaged over the
    calibration data. A unit whose output equals its input changes nothing (influence 0). For a
    branch unit the input is the block's trunk t before its add and the output t + branch. For an
    approximate (post-norm) unit it is the true error of replacing the unit by the identity."""

    needs_data = True

    def score(self, model: nn.Module, graph: Graph | None, units: Sequence[Unit | str], data: Any = None) -> Scores:
        calib = self._calibration(data)
        paths = _paths(units)
        branches = _branches(graph, units)
        sums = {p: 0.0 for p in paths}
        counts = {p: 0 for p in paths}
        trunk: dict[str, torch.Tensor] = {}  # block path -> its trunk so far (input + branches added)

        def on_call(path: str, x: torch.Tensor, output: Any) -> None:
            y = _unit_output(output)
            if path in branches:  # the block's trunk t becomes t + branch at this branch's add
                block = branches[path][0]
                x = trunk[block]
                y = trunk[block] = x + y
            if y.shape != x.shape:
                raise ConfigError(f"unit {path!r} changes the shape {list(x.shape)} -> {list(y.shape)}")
            cos = F.cosine_similarity(x.flatten(1).double(), y.flatten(1).double(), dim=1, eps=1e-12)
            sums[path] += float((1.0 - cos).sum())
            counts[path] += cos.numel()

        def on_block(block: str, x: torch.Tensor) -> None:
            trunk[block] = x

        blocks = sorted({b for b, _ in branches.values()})
        with eval_mode(model), torch.no_grad(), _Recorder(model, paths, on_call), _Recorder(model, blocks, on_block, pre=True):
            for batch, _ in calib.batches():
                _run(model, batch)
        missing = [p for p in paths if counts[p] == 0]
        if missing:
            raise ConfigError(f"units never ran on the calibration data: {missing}")
        return {p: sums[p] / counts[p] for p in paths}


@register_strategy("ablation")
class Ablation(Strategy):
    """Damage when a unit is removed (with `removal.remove_units`): mean squared difference of
    all outputs to the dense model's, or, when the calibration data has targets and a
    loss_fn, the increase of that task loss. Larger damage = keep."""

    needs_data = True

    def score(self, model: nn.Module, graph: Graph | None, units: Sequence[Unit | str], data: Any = None) -> Scores:
        calib = self._calibration(data)
        zeroed = {p: n for p, (_, n) in _branches(graph, units).items()}
        with eval_mode(model), torch.no_grad():
            dense = [_run(model, batch) for batch, _ in calib.batches()]
            base = self._damage(calib, dense, dense)
            scores: Scores = {}
            for path in _paths(units):
                reduced = remove_units(model, [path], zeroed).eval()
                outputs = [_run(reduced, batch) for batch, _ in calib.batches()]
                scores[path] = self._damage(calib, dense, outputs) - base
        return scores

    @staticmethod
    def _damage(calib: Calibration, dense: list[Any], outputs: list[Any]) -> float:
        if calib.has_task_loss:
            assert calib.targets is not None and calib.loss_fn is not None
            return sum(float(calib.loss_fn(o, t)) for o, t in zip(outputs, calib.targets)) / len(outputs)
        total, count = 0.0, 0
        for ref, out in zip(dense, outputs):
            for a, b in zip(tensors_in(ref), tensors_in(out)):
                total += float((a.double() - b.double()).pow(2).sum())
                count += a.numel()
        return total / count if count else 0.0


@register_strategy("taylor")
class Taylor(Strategy):
    """First-order Taylor estimate of the loss change when a unit is removed: removing the unit
    replaces its output `out` by its input `in` (by 0 for a branch unit), so dL ~ <dL/d out, in - out>. The score is
    |<dL/d out, out - in>| summed over calibration batches. Needs targets and a loss_fn.
    Parameter gradients are left untouched (gradients are taken w.r.t. unit outputs only)."""

    needs_data = True

    def score(self, model: nn.Module, graph: Graph | None, units: Sequence[Unit | str], data: Any = None) -> Scores:
        calib = self._calibration(data)
        if not calib.has_task_loss:
            raise ConfigError(
                "strategy 'taylor' needs a task loss: Calibration(inputs=..., targets=[...], "
                "loss_fn=callable(output, target))"
            )
        assert calib.loss_fn is not None
        paths = _paths(units)
        branches = _branches(graph, units)
        scores = {p: 0.0 for p in paths}
        calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []

        def on_call(path: str, x: torch.Tensor, output: Any) -> None:
            y = _unit_output(output)
            calls.append((path, torch.zeros_like(y) if path in branches else x, y))  # a removed branch gives 0

        ran: set[str] = set()
        with eval_mode(model), torch.enable_grad(), _Recorder(model, paths, on_call):
            for batch, target in calib.batches():
                calls.clear()
                loss = calib.loss_fn(_run(model, _requires_grad(batch)), target)
                ran.update(p for p, _, _ in calls)
                usable = [(p, x, y) for p, x, y in calls if y.requires_grad]
                if len(usable) != len(calls):
                    raise ConfigError("taylor: some unit outputs do not depend on the inputs; cannot differentiate")
                grads = torch.autograd.grad(loss, [y for _, _, y in usable], allow_unused=True)
                for (path, x, y), g in zip(usable, grads):
                    if g is not None:
                        scores[path] += abs(float((g.double() * (y.detach().double() - x.detach().double())).sum()))
        missing = [p for p in paths if p not in ran]
        if missing:
            raise ConfigError(f"units never ran on the calibration data: {missing}")
        return scores


def _requires_grad(batch: ExampleInputs) -> ExampleInputs:
    """Copy floating-point input tensors with requires_grad, so unit outputs are differentiable
    even when the model's parameters are frozen."""
    if isinstance(batch, torch.Tensor):
        return batch.detach().clone().requires_grad_(True) if batch.is_floating_point() else batch
    if isinstance(batch, (tuple, list)):
        return tuple(_requires_grad(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _requires_grad(v) for k, v in batch.items()}
    return batch


@register_strategy("random")
class Random(Strategy):
    """Seeded uniform scores: a baseline any other strategy should beat."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, model: nn.Module, graph: Graph | None, units: Sequence[Unit | str], data: Any = None) -> Scores:
        rng = _random.Random(self.seed)
        return {path: rng.random() for path in _paths(units)}
