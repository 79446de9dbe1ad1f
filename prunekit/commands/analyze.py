"""`prunekit analyze MODEL`: list a model's residual units with their parameter and FLOPs shares.

MODEL is a registered name, `package.module:factory`, or a checkpoint folder (dense or pruned).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from prunekit.errors import ConfigError
from prunekit.graph import Graph, Layout, analyze
from prunekit.registry import LAYOUTS
from prunekit.spec import ModelSpec, spec_for, spec_of


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
    spec: str | ModelSpec, shapes: list[list[int]] | None, model_kwargs: dict[str, Any] | None = None, seed: int = 0
) -> Any:
    """Random float inputs of the given shapes, or the model spec's own example inputs (a model name's
    spec is made with the options given, so e.g. `scale` shapes FRNet's inputs)."""
    if shapes:
        gen = torch.Generator().manual_seed(seed)
        tensors = tuple(torch.rand(s, generator=gen) for s in shapes)
        return tensors[0] if len(tensors) == 1 else tensors
    described = spec if isinstance(spec, ModelSpec) else spec_for(spec, **(model_kwargs or {}))
    if not described.inputs:
        raise ConfigError(f"model {described.build!r} has no default example inputs; pass --input-shape (e.g. 1,3,32,32)")
    return described.example_inputs(seed)


def is_checkpoint(path: str) -> bool:
    """A folder holding plan.json (what `pk.save` writes)."""
    from prunekit.checkpoint import PLAN_FILE

    return Path(path).is_dir() and (Path(path) / PLAN_FILE).is_file()


def load_checkpoint_model(path: str, build: str | None = None, build_kwargs: dict[str, Any] | None = None
                          ) -> tuple[nn.Module, ModelSpec]:
    """A model from a checkpoint folder (its spec.json, or `build` for checkpoints without one) and
    the spec describing it."""
    from prunekit.checkpoint import load

    if Path(path).is_dir() and not is_checkpoint(path):
        raise ConfigError(f"{path} is a folder without plan.json, not a prunekit checkpoint")
    model = load(path, build=build, build_kwargs=build_kwargs)
    spec = spec_of(model)
    if spec is None:
        raise ConfigError(f"{path}: cannot tell what model this is; pass --build with the dense model's name")
    return model, spec


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


def default_layout_name(spec: str | ModelSpec) -> str | None:
    """The spec's layout (a plain factory registered by name: the layout registered under that name)."""
    if isinstance(spec, ModelSpec):
        return spec.layout
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
    p.add_argument("model", help="registered model name (e.g. tecogan.frnet), package.module:factory, "
                   "or a checkpoint folder (plan.json + model.safetensors)")
    p.add_argument("--input-shape", action="extend", nargs="+", type=parse_shape, metavar="N,C,H,W",
                   help="shapes of the positional inputs, in order (default: the model's example inputs)")
    p.add_argument("--model-arg", "-m", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword option for the model factory (repeatable)")
    add_build_argument(p)
    p.add_argument("--layout", help="registered layout name (default: the one registered under the model's name)")
    p.add_argument("--json", action="store_true", help="print the graph as JSON")


def add_build_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--build", metavar="NAME", default=None,
                   help="for a checkpoint folder without spec.json (prunekit 0.1): the dense model's registered name "
                   "or package.module:factory (options via --model-arg)")


def model_and_inputs(args: argparse.Namespace) -> tuple[nn.Module, Any, str | None]:
    """(model, example inputs, default layout) for MODEL given by name or as a checkpoint folder."""
    model_kwargs = parse_kwargs(args.model_arg)
    if is_checkpoint(args.model) or Path(args.model).is_dir():
        model, spec = load_checkpoint_model(args.model, args.build, model_kwargs)
        return model, example_inputs_for(spec, args.input_shape), spec.layout
    spec = spec_for(args.model, **model_kwargs)
    return spec.build_model(), example_inputs_for(spec, args.input_shape), default_layout_name(spec)


def run(args: argparse.Namespace) -> int:
    model, inputs, layout = model_and_inputs(args)
    graph = analyze(model, inputs, resolve_layout(args.layout or layout))
    if args.json:
        print(json.dumps(graph.model_dump(), indent=2))
    else:
        print(format_graph(graph, args.model))
    return 0
