"""Pruned checkpoints: a directory with plan.json and model.safetensors. Nothing is unpickled.

Loading rebuilds the dense model, replays the plan (so the architecture comes from code plus the
plan, never from pickled classes) and loads the weights strictly, naming any key that does not fit.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import prunekit
from prunekit.errors import CheckpointError
from prunekit.fileio import atomic_path

PLAN_FILE = "plan.json"
WEIGHTS_FILE = "model.safetensors"


def _tensors_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict as standalone contiguous CPU tensors. safetensors refuses tensors sharing memory
    (TecoGAN's two `kernels` buffers are one tensor), so every entry gets its own copy."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save(model: nn.Module, plan: "prunekit.plan.Plan", directory: str | os.PathLike) -> Path:
    """Write `directory/plan.json` and `directory/model.safetensors`, each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(_tensors_for_saving(model), str(tmp),
                  metadata={"format": "pt", "prunekit_version": prunekit.__version__})
    plan.save(directory / PLAN_FILE)
    return directory


def read_plan(path: str | os.PathLike) -> "prunekit.plan.Plan":
    """Read and validate a plan JSON file."""
    from prunekit.plan import Plan

    path = Path(path)
    if path.is_dir():
        path = path / PLAN_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        raise CheckpointError(f"cannot read plan file {path}: {exc.strerror or exc}") from exc
    try:
        return Plan.model_validate_json(text)
    except ValidationError as exc:
        raise CheckpointError(f"invalid plan file {path}: {exc}") from exc


def _build(build: Callable[..., nn.Module] | type | str, build_kwargs: dict[str, Any]) -> nn.Module:
    if isinstance(build, str):
        from prunekit.models import build_model

        return build_model(build, **build_kwargs)
    if inspect.isclass(build) or callable(build):
        model = build(**build_kwargs)
        if not isinstance(model, nn.Module):
            raise CheckpointError(f"build {build!r} returned {type(model).__name__}, not an nn.Module")
        return model
    raise CheckpointError(f"build must be a callable, a class or a model spec string, got {type(build).__name__}")


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors file (no pickle); CheckpointError if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights file {path}: {exc}") from exc


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Strict load that names every missing, unexpected or wrongly shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(
        f"{k} (checkpoint {list(tensors[k].shape)}, model {list(expected[k].shape)})"
        for k in set(expected) & set(tensors)
        if tensors[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected: {', '.join(unexpected)}")
    if wrong:
        problems.append(f"wrong shape: {', '.join(wrong)}")
    if problems:
        raise CheckpointError(f"weights in {source} do not fit the model; " + "; ".join(problems))
    model.load_state_dict(tensors, strict=True)


def load(
    directory: str | os.PathLike,
    build: Callable[..., nn.Module] | type | str,
    build_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a pruned model: `build(**build_kwargs)` makes the dense model (a callable, a class or
    a spec like `tecogan.frnet`), the saved plan is replayed on it and the weights loaded strictly."""
    from prunekit.surgery import apply

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    plan = read_plan(directory / PLAN_FILE)
    tensors = read_weights(directory / WEIGHTS_FILE)
    model = apply(_build(build, build_kwargs or {}), plan)
    load_weights(model, tensors, str(directory / WEIGHTS_FILE))
    return model.to(device)
