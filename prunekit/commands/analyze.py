"""`prunekit analyze MODEL`: list a model's residual units with their parameter and FLOPs shares."""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

import torch
import yaml
from torch import nn

from prunekit.errors import ConfigError
from prunekit.graph import Graph, Layout, analyze
from prunekit.models import build_model, resolve_factory
from prunekit.registry import LAYOUTS


def parse_shape(text: str) -> list[int]:
    """`1,3,32,32` -> [1, 3, 32, 32]."""
    try:
        shape = [int(s) for s in text.replace("x", ",").split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--input-shape {text!r} is not a comma-separated list of integers") from None
    if not shape or any(d <= 0 for d in shape):
        raise ConfigError(f"--input-shape {text!r} must list positive integers")
    return shape


def parse_kwargs(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs, values read as YAML scalars (`nb=5`, `scale=4`, `degradation=BD`)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"model option {pair!r} must look like KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def example_inputs_for(
    spec: str, shapes: list[list[int]] | None, model_kwargs: dict[str, Any] | None = None, seed: int = 0
) -> Any:
    """Random inputs of the given shapes, or the registered model's own `example_inputs(...)`, which
    receives the model options it shares a name with (e.g. `scale`)."""
    if shapes:
        gen = torch.Generator().manual_seed(seed)
        tensors = tuple(torch.rand(s, generator=gen) for s in shapes)
        return tensors[0] if len(tensors) == 1 else tensors
    provider = getattr(resolve_factory(spec), "example_inputs", None)
    if provider is None:
        raise ConfigError(f"model {spec!r} has no default example inputs; pass --input-shape (e.g. 1,3,32,32)")
    accepted = inspect.signature(provider).parameters
    shared = {k: v for k, v in (model_kwargs or {}).items() if k in accepted}
    torch.manual_seed(seed)
    return provider(**shared)


def resolve_layout(layout: str | Layout | dict | None) -> Layout | None:
    """A registered layout name, an inline mapping, or a Layout (a registered factory is called)."""
    if layout is None or isinstance(layout, Layout):
        return layout
    if isinstance(layout, dict):
        return Layout.model_validate(layout)
    found = LAYOUTS.get(layout)
    if not isinstance(found, Layout) and callable(found):
        found = found()
    if not isinstance(found, Layout):
        raise ConfigError(f"layout {layout!r} is registered as {type(found).__name__}, not a prunekit Layout")
    return found


def default_layout_name(spec: str) -> str | None:
    """A model registered by name uses the layout registered under the same name, if any."""
    return spec if ":" not in spec and spec in LAYOUTS.names() else None


def format_graph(graph: Graph, title: str) -> str:
    """Human-readable unit table; nesting is shown by indentation."""
    lines = [
        f"{title}: {graph.total_params:,} params, {graph.total_flops:,} FLOPs (MACs), inputs {graph.input_shapes}",
        f"{len(graph.units)} units ({len(graph.leaves())} removable blocks)",
    ]
    if graph.units:
        width = max(len(u.path) + 2 * u.depth for u in graph.units)
        lines.append(f"{'unit':<{width}}  {'params':>12}  {'FLOPs %':>8}  note")
        for u in graph.units:
            note = "container" if u.container else "protected" if u.protected else "declared" if u.declared else ""
            name = "  " * u.depth + u.path
            lines.append(f"{name:<{width}}  {u.params:>12,}  {100 * u.flops_share:>7.2f}%  {note}".rstrip())
    return "\n".join(lines)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registered model name (e.g. tecogan.frnet) or package.module:factory")
    p.add_argument("--input-shape", action="extend", nargs="+", type=parse_shape, metavar="N,C,H,W",
                   help="shapes of the positional inputs, in order (default: the model's example inputs)")
    p.add_argument("--model-arg", "-m", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword option for the model factory (repeatable)")
    p.add_argument("--layout", help="registered layout name (default: the one registered under the model's name)")
    p.add_argument("--json", action="store_true", help="print the graph as JSON")


def run(args: argparse.Namespace) -> int:
    model_kwargs = parse_kwargs(args.model_arg)
    model: nn.Module = build_model(args.model, **model_kwargs)
    inputs = example_inputs_for(args.model, args.input_shape, model_kwargs)
    graph = analyze(model, inputs, resolve_layout(args.layout or default_layout_name(args.model)))
    if args.json:
        print(json.dumps(graph.model_dump(), indent=2))
    else:
        print(format_graph(graph, args.model))
    return 0
