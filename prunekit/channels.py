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

Width pruning degrades gracefully: a group torch-pruning cannot enumerate, score or prune, or whose
pruning breaks the forward pass, is left whole and reported as a `SkippedGroup` (layer + reason),
and planning goes on with the other groups. Groups holding grouped convolutions, GroupNorms or
nn.MultiheadAttention lose the same channel positions in every channel group / head, so groups
stay equal. Planning stops after `time_limit_s` (default `TIME_LIMIT_S`), reporting what is left.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
import time
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Literal

import torch
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch_pruning import _helpers
from torch_pruning.dependency.node import Node

from prunekit import importance, profile
from prunekit.budget import ChannelFlops, ChannelRatio
from prunekit.errors import ConfigError, InputShapeError, PlanMismatchError, UnreachableTargetError
from prunekit.profile import call_model, eval_mode

if TYPE_CHECKING:
    from prunekit.graph import Layout

logger = logging.getLogger(__name__)

ExampleInputs = Any
_ROOT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
_MAX_FRACTION = 0.95  # the largest uniform prune fraction a ChannelFlops search tries
_BISECTION_STEPS = 8
TIME_LIMIT_S = 600.0  # default wall-clock limit of one plan_channels call (group enumeration + checks)


class ChannelStep(BaseModel):
    """Remove output channels `idxs` of the layer at `layer` (and everything coupled to them)."""

    model_config = ConfigDict(extra="forbid")

    layer: str
    kind: Literal["out"] = "out"
    idxs: list[int]


class SkippedGroup(BaseModel):
    """A channel group width pruning left whole: the layer it is rooted at and why ("*" when a
    limit stopped planning before the remaining groups were tried)."""

    model_config = ConfigDict(extra="forbid")

    layer: str
    reason: str


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
    time_limit_s: float | None = None,
    skipped: list[SkippedGroup] | None = None,
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
    A group torch-pruning fails on, or after whose pruning the model fails or changes its output
    shapes (e.g. channels used as flow / grid coordinates), is left whole; each such group is
    appended to `skipped` (when given) with the reason, and logged. Planning stops after
    `time_limit_s` seconds (default TIME_LIMIT_S), keeping the steps found so far.
    """
    if isinstance(target, ChannelFlops):
        return _plan_flops(model, example_inputs, target, layout, importance, round_to, data, time_limit_s, skipped)
    if round_to is not None and round_to < 1:
        raise ConfigError(f"round_to must be a positive integer, got {round_to}")
    limit = TIME_LIMIT_S if time_limit_s is None else time_limit_s
    if limit <= 0:
        raise ConfigError(f"time_limit_s must be positive, got {limit}")
    scorer = _importance(importance, model, data if data is not None else [example_inputs])
    patterns = list(target.ignore)
    if layout is not None:
        patterns += list(layout.channel_ignore) + list(layout.fixed_channels)
    ignored_modules = _ignored(model, patterns)
    ignored_paths = {p for p, m in model.named_modules() if any(m is i for i in ignored_modules)}
    expected = _output_shapes(model, example_inputs)
    steps: list[ChannelStep] = []
    report: list[SkippedGroup] = []
    if target.prune == 0.0 and not any(target.per_group.values()):
        return steps
    deadline = time.monotonic() + limit
    done: set[str] = set()  # layers whose group was pruned or left whole on purpose
    restart = True
    while restart:  # a group that breaks the model restarts from the accepted steps without it
        restart = False
        work = apply_channels(copy.deepcopy(model), example_inputs, steps)
        try:
            dg = dependency_graph(work, example_inputs)
        except InputShapeError as exc:  # the model runs (checked above): torch-pruning cannot trace it
            report.append(SkippedGroup(layer="*", reason=f"no dependency graph: {exc}"))
            break
        names = {m: p for p, m in work.named_modules()}
        if hasattr(scorer, "bind"):
            scorer.bind(work)
        ignored = [m for p, m in work.named_modules() if p in ignored_paths] + output_layers(dg)
        with torch.no_grad():
            for root, group, error in _groups(dg, ignored):
                name = names.get(root, type(root).__name__)
                if time.monotonic() > deadline:
                    report.append(SkippedGroup(layer="*", reason=(
                        f"time limit of {limit:g} s reached; the groups not yet planned were left whole "
                        "(pass time_limit_s / set prunekit.channels.TIME_LIMIT_S to allow more)")))
                    restart = False
                    break
                if group is None:
                    if name not in done:
                        done.add(name)
                        report.append(SkippedGroup(layer=name, reason=f"torch-pruning cannot build its group: {_why(error)}"))
                    continue
                layers = [
                    names[d.target.module] for d, _ in group
                    if d.target.module in names and dg.is_out_channel_pruning_fn(d.handler)
                ]
                if done & set(layers) or name in done:
                    continue
                done.update(layers + [name])
                try:
                    idxs = _choose(dg, group, scorer, group_fraction(layers, target), round_to)
                except Exception as exc:  # noqa: BLE001 - any scoring failure leaves this group whole
                    report.append(SkippedGroup(layer=name, reason=f"cannot score its channels: {_why(exc)}"))
                    continue
                if not idxs:
                    continue
                step = ChannelStep(layer=name, idxs=idxs)
                try:
                    _prune(dg, root, idxs)
                    failure = None if _output_shapes(work, example_inputs, quiet=True) == expected else (
                        "pruning it breaks the forward pass or changes the output shapes")
                except Exception as exc:  # noqa: BLE001 - a partial prune: rebuild from the accepted steps
                    failure = f"torch-pruning failed to prune it: {_why(exc)}"
                if failure is not None:
                    report.append(SkippedGroup(layer=name, reason=failure))
                    restart = True
                    break
                steps.append(step)
    if report:
        logger.warning("channel pruning left these groups whole: %s", [(r.layer, r.reason) for r in report])
    if skipped is not None:
        skipped.extend(report)
    return steps


def _why(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _groups(dg: tp.DependencyGraph, ignored: list[nn.Module]) -> Iterator[tuple[nn.Module, Any, Exception | None]]:
    """(root, group, None) for every prunable group rooted at a conv / linear output, as
    torch-pruning's get_all_groups, but a root whose group cannot be built yields (root, None, error)
    instead of ending the enumeration."""
    ignored = list(ignored) + list(dg.IGNORED_LAYERS_IN_TRACING)
    visited: set[int] = set()
    for module in list(dg.module2node):
        if not _is_root(module) or any(module is i for i in ignored) or id(module) in visited:
            continue
        try:
            pruner = dg.get_pruner_of_module(module)
            n = pruner.get_out_channels(module) if pruner is not None else None
            if n is None:
                continue
            group = dg.get_pruning_group(module, pruner.prune_out_channels, list(range(n)))
            members = [(d.target.module, dg.is_out_channel_pruning_fn(d.handler)) for d, _ in group]
        except Exception as exc:  # noqa: BLE001 - torch-pruning raises many kinds; this group only
            visited.add(id(module))
            yield module, None, exc
            continue
        prunable = True
        for member, out in members:
            if out:
                visited.add(id(member))
                if any(member is i for i in ignored):
                    prunable = False
        if prunable:
            yield module, group, None


def _plan_flops(
    model: nn.Module,
    example_inputs: ExampleInputs,
    target: ChannelFlops,
    layout: Layout | None,
    importance: Any,
    round_to: int | None,
    data: list[Any] | None,
    time_limit_s: float | None,
    skipped: list[SkippedGroup] | None,
) -> list[ChannelStep]:
    """Bisect the uniform prune fraction: FLOPs after only fall as the fraction grows, so the
    smallest fraction that meets the limit removes the fewest channels."""
    dense = profile.flops(model, example_inputs)
    limit = target.keep * dense
    importance = _importance(importance, model, data if data is not None else [example_inputs])  # once, not per try

    reports: dict[int, list[SkippedGroup]] = {}

    def attempt(fraction: float) -> tuple[list[ChannelStep], int]:
        ratio = ChannelRatio(fraction, ignore=target.ignore)
        report: list[SkippedGroup] = []
        steps = plan_channels(model, example_inputs, ratio, layout, importance, round_to, data, time_limit_s, report)
        reports[id(steps)] = report
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
    if skipped is not None:
        skipped.extend(reports[id(best)])
    return best


def _channel_groups(group: Any) -> int:
    """Channel groups every member of `group` must keep equal: the lcm of the `groups` of the
    grouped (not depthwise) convolutions, GroupNorm groups and attention heads it holds."""
    need = 1
    for dep, _ in group:
        m = dep.target.module
        if isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and not m.groups == m.in_channels == m.out_channels:
            need = math.lcm(need, m.groups)
        elif isinstance(m, nn.GroupNorm):
            need = math.lcm(need, m.num_groups)
        elif isinstance(m, nn.MultiheadAttention):
            need = math.lcm(need, m.num_heads)
    return need


def _choose(
    dg: tp.DependencyGraph, group: Any, scorer: tp.importance.Importance, ratio: float, round_to: int | None
) -> list[int]:
    """The lowest-importance output channels of a group's root (whole PixelShuffle blocks; the
    same positions in every channel group when the group holds grouped convs / heads)."""
    root = group[0].dep.target.module
    n = len(group[0].idxs)
    block = _block_size(dg, root)
    parts = _channel_groups(group)
    if parts > 1 and (n % parts or block > 1):
        raise UnreachableTargetError(
            f"{n} channels cannot be split into {parts} equal channel groups" + (" of PixelShuffle blocks" if block > 1 else "")
        )
    per = n // parts
    k = _count_to_prune(per, block, ratio, round_to // parts if round_to and round_to % parts == 0 else round_to)
    if k == 0:
        return []
    scores = scorer(group)
    if scores is None:
        return []
    per_position = scores.double().reshape(parts, per).sum(dim=0)
    per_block = per_position.reshape(per // block, block).sum(dim=1)
    chosen = torch.argsort(per_block, stable=True)[: k // block]
    positions = sorted(int(b) * block + j for b in chosen for j in range(block))
    return [g * per + pos for g in range(parts) for pos in positions]


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
