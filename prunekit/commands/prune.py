"""`prunekit prune --config FILE`: analyze -> plan -> apply -> save, driven by a YAML/TOML file.

Example (YAML)::

    model: tecogan.frnet          # registered name or package.module:factory (optional with a checkpoint dir)
    model_kwargs: {scale: 4}
    weights: ckpt/dense           # optional: prunekit checkpoint dir (dense or pruned) or .safetensors state_dict
    strategy: block_influence
    target: {kind: keep_blocks, n: 5}
    out: runs/frnet-5blocks

Writes OUT/plan.json, OUT/spec.json, OUT/model.safetensors, OUT/report.json and OUT/report.md.
A checkpoint folder as `weights` (or as `model`) is loaded from its spec; a pruned one is pruned
further, and OUT's spec records the earlier plans so `pk.load(OUT)` replays them all. OUT must be new
or empty (or, with --overwrite, an earlier prune output: it holds report.json) and may not be or hold
the inputs or the config; the folder is written whole under a temporary name, then swapped in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from prunekit.checkpoint import load_weights, read_weights, save
from prunekit.commands.analyze import example_inputs_for, is_checkpoint, load_checkpoint_model, resolve_layout
from prunekit.fileio import atomic_dir, atomic_write, check_output
from prunekit.config import StrictModel, load_config
from prunekit.errors import ConfigError
from prunekit.graph import Layout, analyze
from prunekit.plan import Plan, Target, plan
from prunekit.spec import ModelSpec, spec_for


class PruneConfig(StrictModel):
    """What `prunekit prune` reads. Paths are relative to the current directory."""

    model: str | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    input_shapes: list[list[int]] | None = None
    layout: str | Layout | None = None
    strategy: str = "block_influence"
    strategy_kwargs: dict[str, Any] = Field(default_factory=dict)
    target: Target | list[Target]
    channel_importance: str = "l2"
    round_to: int | None = Field(default=None, ge=1)
    replace: list[dict[str, Any]] = Field(default_factory=list)
    runner: str | None = None
    latency_cache: str | None = None
    move_cost: Literal["importance", "sensitivity"] = "importance"
    min_keep: float = Field(0.0, ge=0.0, le=1.0)
    uniform: bool = False
    out: str
    seed: int = 0

    @model_validator(mode="after")
    def _model_or_checkpoint(self) -> "PruneConfig":
        if self.model is None and self.weights is None:
            raise ValueError("give `model` (a model name or a checkpoint folder) or `weights` (a checkpoint folder)")
        return self

    @model_validator(mode="after")
    def _uniform_needs_latency(self) -> "PruneConfig":
        targets = self.target if isinstance(self.target, list) else [self.target]
        if self.uniform and not any(t.is_latency for t in targets):
            raise ValueError("uniform steers the latency planner: it needs a latency_ratio or latency target "
                             "(channel_ratio already cuts every group by one fraction)")
        return self


def _start_model(cfg: PruneConfig) -> tuple[nn.Module, ModelSpec]:
    """The model to prune and its spec: built by name, loaded from a checkpoint folder (`model` or
    `weights`; its spec.json names the model, `model` overrides it), or built and given a state_dict."""
    if cfg.model is not None and is_checkpoint(cfg.model):
        if cfg.weights is not None:
            raise ConfigError(f"model: {cfg.model} is a checkpoint folder, so `weights` ({cfg.weights}) must be left out")
        return load_checkpoint_model(cfg.model)
    if cfg.weights is not None and Path(cfg.weights).is_dir():
        return load_checkpoint_model(cfg.weights, cfg.model, cfg.model_kwargs if cfg.model else None)
    if cfg.model is None:
        raise ConfigError(f"weights: {cfg.weights} is not a checkpoint folder, so `model` must name the model")
    spec = spec_for(cfg.model, **cfg.model_kwargs)
    model = spec.build_model()
    if cfg.weights is not None:
        load_weights(model, read_weights(cfg.weights), str(cfg.weights))
    return model, spec


def report_markdown(name: str, p: Plan) -> str:
    s = p.stats
    targets = ", ".join(t.model_dump_json() for t in p.targets)
    lines = [
        f"# Pruning report: {name}",
        "",
        f"- strategy: `{p.strategy}` {json.dumps(p.strategy_kwargs) if p.strategy_kwargs else ''}".rstrip(),
        f"- targets: {targets}",
        f"- example inputs: {p.input_shapes}",
        f"- removed units ({len(p.removed)}): {', '.join(p.removed) or 'none'}",
        f"- channel steps: {len(p.channels)}"
        + (f" (importance `{p.channel_importance}`, round_to {p.round_to})" if p.channels else ""),
        f"- replaced: {', '.join(f'{r.name} {r.paths}' for r in p.replaced) or 'none'}",
        *([f"- latency ({p.latency.runner}, {p.latency.threads} thread(s), {p.latency.hardware}, "
           f"{p.latency.shapes}): dense {p.latency.dense_ms:.2f} ms, planned {p.latency.planned_ms:.2f} ms, "
           f"measured {p.latency.measured_ms:.2f} ms ({100 * p.latency.kept:.1f}%)"] if p.latency else []),
        "",
        "| | before | after | kept |",
        "|---|---:|---:|---:|",
        f"| params | {s.params_before:,} | {s.params_after:,} | {100 * s.params_kept:.1f}% |",
        f"| FLOPs (MACs, fvcore) | {s.flops_before:,} | {s.flops_after:,} | {100 * s.flops_kept:.1f}% |",
        "",
    ]
    return "\n".join(lines)


REPORT_FILE = "report.json"  # marks a folder as an earlier prune output (what --overwrite may replace)


def prune_from_config(cfg: PruneConfig, out: str | None = None, overwrite: bool = False,
                      protect: tuple[str, ...] = ()) -> Plan:
    """Run the whole prune step for a validated config; returns the plan that was saved. The output
    folder is checked before any work (`check_output`; `protect` are further inputs it may not hold)."""
    model_folder = cfg.model if cfg.model is not None and Path(cfg.model).is_dir() else None
    out_dir = check_output(Path(out or cfg.out), [cfg.weights, model_folder, *protect], kind="folder",
                           allow_existing=overwrite, marker=REPORT_FILE, what="out")
    torch.manual_seed(cfg.seed)
    model, spec = _start_model(cfg)
    inputs = example_inputs_for(spec, cfg.input_shapes, seed=cfg.seed)
    graph = analyze(model, inputs, resolve_layout(cfg.layout or spec.layout))
    targets = cfg.target if isinstance(cfg.target, list) else [cfg.target]
    result = plan(model, graph, strategy=cfg.strategy, target=targets, channel_importance=cfg.channel_importance,
                  round_to=cfg.round_to, replace=cfg.replace or None, runner=cfg.runner,
                  latency_cache=cfg.latency_cache, move_cost=cfg.move_cost, min_keep=cfg.min_keep, uniform=cfg.uniform,
                  **cfg.strategy_kwargs)
    from prunekit.surgery import apply

    pruned = apply(model, result, inputs)
    name = cfg.model or cfg.weights or spec.build
    summary = {"model": name, "model_kwargs": cfg.model_kwargs, **json.loads(result.model_dump_json())}
    with atomic_dir(out_dir) as tmp:
        save(pruned, result, tmp)
        atomic_write(tmp / "report.md", report_markdown(name, result))
        atomic_write(tmp / REPORT_FILE, json.dumps(summary, indent=2))
    return result


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML or TOML file (see `prunekit.commands.prune.PruneConfig`)")
    p.add_argument("--out", help="output directory (overrides `out` in the config)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier prune output in the output directory")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(PruneConfig, args.config)
    result = prune_from_config(cfg, args.out, overwrite=args.overwrite, protect=(args.config,))
    s = result.stats
    print(
        f"removed {len(result.removed)} units, {len(result.channels)} channel steps: "
        f"params {s.params_before:,} -> {s.params_after:,}, FLOPs {s.flops_before:,} -> {s.flops_after:,} (MACs); "
        f"saved to {args.out or cfg.out}"
    )
    return 0
