"""`prunekit prune --config FILE`: analyze -> plan -> apply -> save, driven by a YAML/TOML file.

Example (YAML)::

    model: tecogan.frnet          # registered name or package.module:factory
    model_kwargs: {scale: 4}
    weights: ckpt/dense           # optional: prunekit checkpoint dir or .safetensors state_dict
    strategy: block_influence
    target: {kind: keep_blocks, n: 5}
    out: runs/frnet-5blocks

Writes OUT/plan.json, OUT/model.safetensors, OUT/report.json and OUT/report.md. OUT must be new or
empty (or, with --overwrite, an earlier prune output: it holds report.json) and may not be or hold the
weights or the config; the folder is written whole under a temporary name, then swapped in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from prunekit.checkpoint import load, load_weights, read_plan, read_weights, save
from prunekit.fileio import atomic_dir, atomic_write, check_output
from prunekit.commands.analyze import default_layout_name, example_inputs_for, resolve_layout
from prunekit.config import StrictModel, load_config
from prunekit.errors import ConfigError
from prunekit.graph import Layout, analyze
from prunekit.models import build_model
from prunekit.plan import Plan, Target, plan


class PruneConfig(StrictModel):
    """What `prunekit prune` reads. Paths are relative to the current directory."""

    model: str
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
    out: str
    seed: int = 0


def _dense_model(cfg: PruneConfig) -> nn.Module:
    if cfg.weights is None:
        return build_model(cfg.model, **cfg.model_kwargs)
    path = Path(cfg.weights)
    if path.is_dir():
        saved = read_plan(path)
        if saved.removed or saved.channels:
            raise ConfigError(
                f"weights: {path} holds an already pruned model (removed {saved.removed}); "
                "prune from a dense checkpoint"
            )
        return load(path, cfg.model, cfg.model_kwargs)
    model = build_model(cfg.model, **cfg.model_kwargs)
    load_weights(model, read_weights(path), str(path))
    return model


def report_markdown(cfg: PruneConfig, p: Plan) -> str:
    s = p.stats
    targets = ", ".join(t.model_dump_json() for t in p.targets)
    lines = [
        f"# Pruning report: {cfg.model}",
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
    out_dir = check_output(Path(out or cfg.out), [cfg.weights, *protect], kind="folder", allow_existing=overwrite, marker=REPORT_FILE,
                 what="out")
    torch.manual_seed(cfg.seed)
    model = _dense_model(cfg)
    inputs = example_inputs_for(cfg.model, cfg.input_shapes, cfg.model_kwargs, seed=cfg.seed)
    graph = analyze(model, inputs, resolve_layout(cfg.layout or default_layout_name(cfg.model)))
    targets = cfg.target if isinstance(cfg.target, list) else [cfg.target]
    result = plan(model, graph, strategy=cfg.strategy, target=targets, channel_importance=cfg.channel_importance,
                  round_to=cfg.round_to, replace=cfg.replace or None, runner=cfg.runner,
                  latency_cache=cfg.latency_cache, **cfg.strategy_kwargs)
    from prunekit.surgery import apply

    pruned = apply(model, result, inputs)
    summary = {"model": cfg.model, "model_kwargs": cfg.model_kwargs, **json.loads(result.model_dump_json())}
    with atomic_dir(out_dir) as tmp:
        save(pruned, result, tmp)
        atomic_write(tmp / "report.md", report_markdown(cfg, result))
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
