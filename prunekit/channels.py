"""Width pruning: remove output channels of conv / linear layers through torch_pruning's
DependencyGraph, which propagates each removal to every coupled layer (the next layer's inputs,
BatchNorms, layers joined by residual adds, ConvTranspose2d, concatenations).

torch-pruning 1.6 treats PixelShuffle as an element-wise op, which is wrong: PixelShuffle(r)
turns channel c*r^2 + k (k < r^2) of its input into channel c of its output. `dependency_graph`
fixes this by giving the dependencies around every PixelShuffle / PixelUnshuffle node an index
mapping (output channel c <-> input channels c*r^2 .. c*r^2 + r^2 - 1), and `plan_channels`
removes whole blocks of r^2 channels from a layer that feeds a PixelShuffle. So the convs of an
EDSR-style upsampler are pruned, not skipped.

A plan is a list of `ChannelStep`s (layer path + output-channel indices at the time of the step).
Replaying them in order with `apply_channels` on a freshly built model (after the same block
removals) reproduces the pruned architecture exactly.

A ChannelFlops target is met by bisection over the uniform prune fraction: each candidate is
planned as a ChannelRatio, applied to a copy and profiled, so the FLOPs limit holds as measured.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import warnings
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch_pruning import _helpers
from torch_pruning.dependency.node import Node

from prunekit import profile
from prunekit.budget import ChannelFlops, ChannelRatio, check_ratio
from prunekit.errors import ConfigError, InputShapeError, PlanMismatchError, UnreachableTargetError
from prunekit.profile import call_model, eval_mode

if TYPE_CHECKING:
    from prunekit.graph import Layout

logger = logging.getLogger(__name__)

ExampleInputs = Any
_ROOT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
_MAX_FRACTION = 0.95  # the largest uniform prune fraction a ChannelFlops search tries
_BISECTION_STEPS = 8


class ChannelStep(BaseModel):
    """Remove output channels `idxs` of the layer at `layer` (and everything coupled to them)."""

    model_config = ConfigDict(extra="forbid")

    layer: str
    kind: Literal["out"] = "out"
    idxs: list[int]


class _ShuffleMapping:
    """Index mapping across a pixel (un)shuffle: `expand` maps channel c to the block
    c*r2 .. c*r2 + r2 - 1; otherwise channel j maps to j // r2 (each block once)."""

    def __init__(self, r2: int, expand: bool) -> None:
        self.r2 = r2
        self.expand = expand

    def __call__(self, idxs: list) -> list:
        if self.expand:
            return [_helpers._HybridIndex(i.idx * self.r2 + k, i.root_idx) for i in idxs for k in range(self.r2)]
        seen: dict[int, Any] = {}
        for i in idxs:
            seen.setdefault(i.idx // self.r2, _helpers._HybridIndex(i.idx // self.r2, i.root_idx))
        return list(seen.values())


def _shuffle_factor(node: Node) -> tuple[int, bool] | None:
    """(r^2, is_shuffle) for a PixelShuffle (True) / PixelUnshuffle (False) node, else None."""
    grad_fn = node.grad_fn
    name = grad_fn.name() if grad_fn is not None and hasattr(grad_fn, "name") else ""
    if name.startswith("PixelShuffleBackward"):
        return int(grad_fn._saved_upscale_factor) ** 2, True
    if name.startswith("PixelUnshuffleBackward"):
        return int(grad_fn._saved_downscale_factor) ** 2, False
    return None


def _fix_shuffles(dg: tp.DependencyGraph) -> None:
    """Give the edges around each pixel (un)shuffle node the channel mapping torch-pruning lacks.
    The node's own indices are in its output's channel coordinates."""
    for node in dg.module2node.values():
        found = _shuffle_factor(node)
        if found is None:
            continue
        r2, shuffle = found
        for dep in node.dependencies:  # node -> its input producers: output coords -> input coords
            if dep.target in node.inputs:
                dep.index_mapping[0] = _ShuffleMapping(r2, expand=shuffle)
        for producer in node.inputs:  # producer -> node: input coords -> output coords
            for dep in producer.dependencies:
                if dep.target is node:
                    dep.index_mapping[0] = _ShuffleMapping(r2, expand=not shuffle)


def dependency_graph(model: nn.Module, example_inputs: ExampleInputs) -> tp.DependencyGraph:
    """torch_pruning's DependencyGraph of `model`, with PixelShuffle / PixelUnshuffle modelled."""
    with eval_mode(model), torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dg = tp.DependencyGraph().build_dependency(
                model, example_inputs=example_inputs, forward_fn=call_model, verbose=False
            )
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise InputShapeError(f"cannot trace {type(model).__name__} for channel pruning: {exc}") from exc
    _fix_shuffles(dg)
    return dg


def _is_root(module: Any) -> bool:
    return isinstance(module, _ROOT_TYPES)


def output_layers(dg: tp.DependencyGraph) -> list[nn.Module]:
    """Layers whose outputs reach a model output without passing another conv / linear layer:
    their output channels are the model's output channels and must not be pruned."""
    found: list[nn.Module] = []
    stack = [n for n in dg.module2node.values() if not n.outputs]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if _is_root(node.module):
            if node.module not in found:
                found.append(node.module)
            continue
        stack.extend(node.inputs)
    return found


def _block_size(dg: tp.DependencyGraph, module: nn.Module) -> int:
    """Channels that must be removed together at `module`'s output: r^2 when they flow into a
    PixelShuffle(r) before reaching another conv / linear layer, else 1."""
    best = 1
    stack: list[tuple[Node, int]] = [(n, 1) for n in dg.module2node[module].outputs]
    seen: set[tuple[int, int]] = set()
    while stack:
        node, size = stack.pop()
        if (id(node), size) in seen or _is_root(node.module):
            continue
        seen.add((id(node), size))
        found = _shuffle_factor(node)
        if found is not None and found[1]:
            size *= found[0]
        best = max(best, size)
        stack.extend((n, size) for n in node.outputs)
    return best


def _ignored(model: nn.Module, patterns: list[str]) -> list[nn.Module]:
    """Modules matched (themselves or through an ancestor) by exact paths or fnmatch globs."""
    modules = dict(model.named_modules())
    ignored: list[nn.Module] = []
    for pattern in patterns:
        hits = [p for p in modules if p and (p == pattern or fnmatch.fnmatchcase(p, pattern))]
        if not hits:
            raise ConfigError(f"channel ignore entry {pattern!r} matches no layer of {type(model).__name__}")
        for hit in hits:
            ignored += [m for p, m in modules.items() if p == hit or p.startswith(hit + ".")]
    return ignored


def _importance(name: Any, model: nn.Module | None = None, data: list[Any] | None = None) -> tp.importance.Importance:
    """A registered channel importance (prunekit.importance) or a torch-pruning Importance object."""
    from prunekit import importance

    return importance.resolve(name, model, data)


def group_fraction(layers: list[str], target: ChannelRatio) -> float:
    """The prune fraction of a group whose output-pruned layers are `layers`: the first
    `target.per_group` entry (path or glob) matching one of them, else `target.prune`."""
    for pattern, fraction in target.per_group.items():
        if any(p == pattern or fnmatch.fnmatchcase(p, pattern) for p in layers):
            return fraction
    return target.prune


def _count_to_prune(n: int, block: int, ratio: float, round_to: int | None) -> int:
    """How many channels (a multiple of `block`) to remove from a layer of `n` channels, keeping
    at least one block. With `round_to`, the kept count is the multiple of `round_to` nearest
    to n x (1 - ratio) (at least `round_to`), so hardware-friendly widths come out."""
    blocks = n // block
    if round_to:
        kept = max(round_to, round(n * (1.0 - ratio) / round_to) * round_to)
        k = (n - kept) // block
    else:
        k = int(blocks * ratio + 1e-9)
    return max(0, min(k, blocks - 1)) * block


def plan_channels(
    model: nn.Module,
    example_inputs: ExampleInputs,
    target: ChannelRatio | ChannelFlops,
    layout: Layout | None = None,
    importance: Any = "l2",
    round_to: int | None = None,
    data: list[Any] | None = None,
) -> list[ChannelStep]:
    """Choose output channels to remove: in every coupled layer group, the `target.prune`
    fraction (or the group's `target.per_group` fraction) with the lowest importance. `importance`
    is a name registered in prunekit.registry.CHANNEL_IMPORTANCE ("l2", "l1", "random",
    "taylor", "activation", ...) or a torch-pruning Importance; `data` (a list of example inputs,
    default: the example inputs) feeds the measures that need data. `model` is untouched.
    For a ChannelFlops target, the fraction is the smallest one (found by bisection in
    [0, 0.95]) whose pruned model measures at most `target.keep` x `model`'s FLOPs.

    Ignored (never pruned at their outputs): the model's output layers (auto-detected),
    `target.ignore` and the layout's `channel_ignore` / `fixed_channels` (paths or globs).
    Each group's pruning is checked by running the model; a group after which the model fails
    or changes its output shapes (e.g. channels used as flow / grid coordinates) is left whole
    and named in a warning.
    """
    if isinstance(target, ChannelFlops):
        return _plan_flops(model, example_inputs, target, layout, importance, round_to, data)
    bad = {k: v for k, v in [("prune", target.prune), *target.per_group.items()] if not 0.0 <= v < 1.0}
    if bad:
        raise UnreachableTargetError(f"{target!r}: every prune fraction must be in [0, 1), got {bad}")
    if round_to is not None and round_to < 1:
        raise ConfigError(f"round_to must be a positive integer, got {round_to}")
    scorer = _importance(importance, model, data if data is not None else [example_inputs])
    patterns = list(target.ignore)
    if layout is not None:
        patterns += list(layout.channel_ignore) + list(layout.fixed_channels)
    ignored_modules = _ignored(model, patterns)
    ignored_paths = {p for p, m in model.named_modules() if any(m is i for i in ignored_modules)}
    expected = _output_shapes(model, example_inputs)
    steps: list[ChannelStep] = []
    if target.prune == 0.0 and not any(target.per_group.values()):
        return steps
    done: set[str] = set()  # layers whose group was pruned or left whole on purpose
    broken: list[str] = []
    restart = True
    while restart:  # a group that breaks the model restarts from the accepted steps without it
        restart = False
        work = apply_channels(copy.deepcopy(model), example_inputs, steps)
        dg = dependency_graph(work, example_inputs)
        names = {m: p for p, m in work.named_modules()}
        if hasattr(scorer, "bind"):
            scorer.bind(work)
        ignored = [m for p, m in work.named_modules() if p in ignored_paths] + output_layers(dg)
        with torch.no_grad():
            for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=_ROOT_TYPES):
                layers = [
                    names[d.target.module] for d, _ in group
                    if d.target.module in names and dg.is_out_channel_pruning_fn(d.handler)
                ]
                if done & set(layers):
                    continue
                done.update(layers)
                root = group[0].dep.target.module
                idxs = _choose(dg, group, scorer, group_fraction(layers, target), round_to)
                if not idxs:
                    continue
                step = ChannelStep(layer=names[root], idxs=idxs)
                _prune(dg, root, idxs)
                if _output_shapes(work, example_inputs, quiet=True) != expected:
                    broken.append(step.layer)
                    restart = True
                    break
                steps.append(step)
    if broken:
        logger.warning("channel pruning left these layers whole because pruning them broke the model: %s", broken)
    return steps


def _plan_flops(
    model: nn.Module,
    example_inputs: ExampleInputs,
    target: ChannelFlops,
    layout: Layout | None,
    importance: Any,
    round_to: int | None,
    data: list[Any] | None = None,
) -> list[ChannelStep]:
    """Bisect the uniform prune fraction: FLOPs after only fall as the fraction grows, so the
    smallest fraction that meets the limit removes the fewest channels."""
    check_ratio(target)
    dense = profile.flops(model, example_inputs)
    limit = target.keep * dense
    importance = _importance(importance, model, data if data is not None else [example_inputs])  # once, not per try

    def attempt(fraction: float) -> tuple[list[ChannelStep], int]:
        ratio = ChannelRatio(fraction, ignore=target.ignore)
        steps = plan_channels(model, example_inputs, ratio, layout, importance, round_to, data)
        return steps, profile.flops(apply_channels(copy.deepcopy(model), example_inputs, steps), example_inputs)

    if dense <= limit:
        return []
    best, reached = attempt(_MAX_FRACTION)
    if reached > limit:
        raise UnreachableTargetError(
            f"{target!r}: needs at most {limit:,.0f} FLOPs of {dense:,}, but pruning {_MAX_FRACTION:.0%} of "
            f"every channel group still leaves {reached:,} ({reached / dense:.4f} of the model)"
        )
    low, high = 0.0, _MAX_FRACTION
    for _ in range(_BISECTION_STEPS):
        mid = (low + high) / 2
        steps, after = attempt(mid)
        if after <= limit:
            high, best = mid, steps
        else:
            low = mid
    return best


def _choose(
    dg: tp.DependencyGraph, group: Any, scorer: tp.importance.Importance, ratio: float, round_to: int | None
) -> list[int]:
    """The lowest-importance output channels of a group's root (whole PixelShuffle blocks)."""
    root = group[0].dep.target.module
    n = len(group[0].idxs)
    block = _block_size(dg, root)
    k = _count_to_prune(n, block, ratio, round_to)
    if k == 0:
        return []
    scores = scorer(group)
    if scores is None:
        return []
    per_block = scores.double().reshape(n // block, block).sum(dim=1)
    chosen = torch.argsort(per_block, stable=True)[: k // block]
    return sorted(int(b) * block + j for b in chosen for j in range(block))


def _output_shapes(model: nn.Module, example_inputs: ExampleInputs, quiet: bool = False) -> list[tuple] | None:
    """Shapes of every output tensor; None (when `quiet`) if the model fails to run."""
    def shapes(obj: Any) -> list[tuple]:
        if isinstance(obj, torch.Tensor):
            return [tuple(obj.shape)]
        if isinstance(obj, dict):
            return [s for v in obj.values() for s in shapes(v)]
        if isinstance(obj, (tuple, list)):
            return [s for v in obj for s in shapes(v)]
        return []

    with eval_mode(model), torch.no_grad():
        try:
            return shapes(call_model(model, example_inputs))
        except Exception as exc:  # any failure of a pruned candidate means "this group breaks it"
            if quiet:
                return None
            raise InputShapeError(f"{type(model).__name__} failed on the example inputs: {exc}") from exc


def _prune(dg: tp.DependencyGraph, module: nn.Module, idxs: list[int]) -> None:
    pruner = dg.get_pruner_of_module(module)
    group = dg.get_pruning_group(module, pruner.prune_out_channels, idxs)
    if not dg.check_pruning_group(group):
        raise UnreachableTargetError(f"removing channels {idxs} would leave a layer without channels")
    group.prune()


def apply_channels(model: nn.Module, example_inputs: ExampleInputs, steps: list[ChannelStep]) -> nn.Module:
    """Replay channel steps on `model` in place (and return it); PlanMismatchError when a step
    names a missing layer or channels the layer does not have."""
    if not steps:
        return model
    modules = dict(model.named_modules())
    dg = dependency_graph(model, example_inputs)
    with torch.no_grad():
        for step in steps:
            module = modules.get(step.layer)
            if module is None or module not in dg.module2node:
                raise PlanMismatchError(f"channel step names layer {step.layer!r}, which the model does not use")
            channels = dg.get_pruner_of_module(module).get_out_channels(module)
            bad = [i for i in step.idxs if not 0 <= i < channels]
            if bad or len(set(step.idxs)) != len(step.idxs):
                raise PlanMismatchError(
                    f"channel step for {step.layer!r} removes {step.idxs}, but the layer has {channels} output channels"
                )
            block = _block_size(dg, module)
            whole = {b * block + j for b in {i // block for i in step.idxs} for j in range(block)}
            if set(step.idxs) != whole:
                raise PlanMismatchError(
                    f"channel step for {step.layer!r} must remove whole blocks of {block} channels "
                    f"(the layer feeds a PixelShuffle), got {step.idxs}"
                )
            _prune(dg, module, step.idxs)
    return model
