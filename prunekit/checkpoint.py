"""Pruned checkpoints: a directory with plan.json, spec.json and model.safetensors. Nothing is unpickled.

Loading rebuilds the dense model from the spec (or a caller's `build`), replays the plan (so the
architecture comes from code plus the plan, never from pickled classes) and loads the weights
strictly, naming any key that does not fit. Metadata is bounded before anything is allocated.
Checkpoints written before specs existed (plan.json + model.safetensors) load with `build=`.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
import os
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from prunekit.errors import CheckpointError, ConfigError, PlanMismatchError, PrunekitError
from prunekit.fileio import atomic_path, atomic_write
from prunekit.models import build_model
from prunekit.plan_record import Plan
from prunekit.profile import count_params
from prunekit.spec import (MAX_INPUT_ELEMENTS, MAX_INPUTS, ModelSpec, _call_factory, attach, class_spec,
                           inputs_from_shapes, spec_for, spec_for_plan, spec_of)
from prunekit.surgery import apply
from prunekit.version import __version__

PLAN_FILE = "plan.json"
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "spec.json"

# Bounds on checkpoint metadata, checked before anything is built (see docs/guide/deploy.md).
MAX_METADATA_BYTES = 64 * 2**20  # plan.json / spec.json size
MAX_REMOVED = 100_000  # removed unit paths
MAX_CHANNEL_STEPS = 100_000
MAX_CHANNELS = 2**24  # a channel index
MAX_DENSE_FACTOR = 1000  # the dense model may have at most this many times the stored values (+ 2^20)


def _tensors_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict as standalone contiguous CPU tensors. safetensors refuses tensors sharing memory
    (TecoGAN's two `kernels` buffers are one tensor), so every entry gets its own copy."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save(
    model: nn.Module,
    plan: Plan,
    directory: str | os.PathLike,
    spec: ModelSpec | str | None = None,
) -> Path:
    """Write `directory/model.safetensors`, `spec.json` and `plan.json`, each atomically.

    `spec` says how to rebuild the model the plan was made for: a ModelSpec, or a model name built
    with its default options. Without one, the spec the model carries is used (models built with
    `build_model`, `ModelSpec.build_model` or `pk.load`, and their pruned copies, carry one); failing
    that, the model's class if it is importable by name, with default options and float inputs of the
    plan's shapes (enough for many models; otherwise pass `spec=`, or `build=` when loading).
    """
    if isinstance(spec, str):
        spec = spec_for(spec)
    elif spec is None:
        carried = spec_of(model)
        spec = spec_for_plan(carried, plan) if carried is not None else None
        if spec is None:
            spec = class_spec(model, plan)
    elif not isinstance(spec, ModelSpec):
        raise CheckpointError(f"spec must be a prunekit ModelSpec or a model name, got {type(spec).__name__}")
    if spec is not None and not spec.inputs and plan.input_shapes:
        spec = spec.model_copy(update={"inputs": inputs_from_shapes(plan.input_shapes)})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(_tensors_for_saving(model), str(tmp),
                  metadata={"format": "pt", "prunekit_version": __version__})
    if spec is None:
        (directory / SPEC_FILE).unlink(missing_ok=True)  # a stale spec would describe another model
    else:
        atomic_write(directory / SPEC_FILE, spec.model_dump_json(indent=2))
    plan.save(directory / PLAN_FILE)
    return directory


def _read_metadata(path: Path, what: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise CheckpointError(f"{what} {path} is {size:,} bytes, more than the limit {MAX_METADATA_BYTES:,}")
        return path.read_text()
    except OSError as exc:
        raise CheckpointError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{what} {path} is not UTF-8 text: {exc}") from exc


def check_plan(plan: Plan, source: str) -> None:
    """Bounds on a plan read from a file, checked before anything is built from it: no duplicated
    paths or channel indices, at most MAX_REMOVED removals and MAX_CHANNEL_STEPS channel steps,
    input shapes within prunekit.spec's limits (MAX_INPUTS tensors of MAX_INPUT_ELEMENTS each)."""
    def bad(field: str, problem: str) -> CheckpointError:
        return CheckpointError(f"invalid plan file {source}: {field}: {problem}")

    if len(plan.removed) > MAX_REMOVED:
        raise bad("removed", f"{len(plan.removed):,} entries, more than the limit {MAX_REMOVED:,}")
    dupes = sorted(p for p, n in Counter(plan.removed).items() if n > 1)
    if dupes:
        raise bad("removed", f"duplicated entries {dupes[:5]}{' ...' if len(dupes) > 5 else ''}; each path may be removed once")
    if len(plan.channels) > MAX_CHANNEL_STEPS:
        raise bad("channels", f"{len(plan.channels):,} steps, more than the limit {MAX_CHANNEL_STEPS:,}")
    for i, step in enumerate(plan.channels):
        if len(set(step.idxs)) != len(step.idxs) or any(not 0 <= j < MAX_CHANNELS for j in step.idxs):
            raise bad(f"channels[{i}].idxs", f"indices must be distinct and in [0, {MAX_CHANNELS:,})")
    if len(plan.input_shapes) > MAX_INPUTS:
        raise bad("input_shapes", f"{len(plan.input_shapes)} inputs, more than the limit {MAX_INPUTS}")
    for name, shape in plan.input_shapes.items():
        if len(shape) > 8 or any(d < 1 for d in shape) or math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise bad(f"input_shapes.{name}", f"shape {shape} must have at most 8 dimensions, each >= 1, "
                      f"and at most {MAX_INPUT_ELEMENTS:,} elements")
    s = plan.stats
    if min(s.params_before, s.params_after, s.flops_before, s.flops_after) < 0:
        raise bad("stats", "counts must be >= 0")


def read_plan(path: str | os.PathLike) -> Plan:
    """Read and validate a plan JSON file."""
    path = Path(path)
    if path.is_dir():
        path = path / PLAN_FILE
    text = _read_metadata(path, "plan file")
    try:
        plan = Plan.model_validate_json(text)
    except ValidationError as exc:
        raise CheckpointError(f"invalid plan file {path}: {exc}") from exc
    check_plan(plan, str(path))
    return plan


def read_spec(directory: str | os.PathLike) -> ModelSpec | None:
    """The checkpoint's spec.json, validated with bounds; None for checkpoints written without one."""
    path = Path(directory) / SPEC_FILE
    if not path.exists():
        return None
    try:
        spec = ModelSpec.model_validate_json(_read_metadata(path, "spec file"))
    except ValidationError as exc:
        raise CheckpointError(f"invalid spec file {path}: {exc}") from exc
    for i, plan in enumerate(spec.prior_plans):
        check_plan(plan, f"{path} (prior_plans[{i}])")
    return spec


def _build(build: Callable[..., nn.Module] | type | str, build_kwargs: dict[str, Any]) -> nn.Module:
    if isinstance(build, str):
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


def _stored_elements(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for t in tensors.values())


def _check_size(spec: ModelSpec, plan: Plan, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Refuse, before allocating it, a model the spec would build that does not fit the plan or is
    more than MAX_DENSE_FACTOR times the stored weights. The parameter count comes from building on
    PyTorch's meta device (no memory); factories that cannot build there are checked after building."""
    expected = spec.prior_plans[0].stats.params_before if spec.prior_plans else plan.stats.params_before
    if spec.model_params() is not None and spec.model_params() != plan.stats.params_before:
        raise CheckpointError(
            f"{source}: spec.json describes a model with {spec.model_params():,} parameters, "
            f"but plan.json was made for one with {plan.stats.params_before:,}"
        )
    limit = MAX_DENSE_FACTOR * max(_stored_elements(tensors), 1) + 2**20
    if expected > limit:
        raise CheckpointError(
            f"{source}: the plan starts from a model of {expected:,} parameters, more than {MAX_DENSE_FACTOR}x "
            f"the {_stored_elements(tensors):,} values stored; refusing to build it"
        )
    try:
        with torch.device("meta"):
            meta = _call_factory(spec.build, spec.kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{source / SPEC_FILE}: {exc}") from exc
    except PrunekitError:
        raise
    except Exception:  # noqa: BLE001  a factory that cannot run on the meta device is checked after building
        return
    got = count_params(meta)
    if got != expected:
        hint = ("; it was saved without a complete spec (pass build= and build_kwargs= to load, "
                "or spec= to save)") if spec.params is None else ""
        raise CheckpointError(
            f"{source}: spec.json builds {spec.build} with options {spec.kwargs} into {got:,} parameters, "
            f"but the checkpoint's model had {expected:,}{hint}"
        )


def load(
    directory: str | os.PathLike,
    build: Callable[..., nn.Module] | type | str | None = None,
    build_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a pruned model from its checkpoint folder.

    Without `build`, the model comes from the checkpoint's spec.json (and its example inputs, with
    their dtypes, drive the channel replay). `build(**build_kwargs)` overrides it (a callable, a
    class or a model name) and is needed for checkpoints written without a spec. The plans are
    replayed on the dense model and the weights loaded strictly. The model carries the spec of
    itself (`prunekit.spec.spec_of`), so saving it again records how to rebuild it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    plan = read_plan(directory / PLAN_FILE)
    spec = read_spec(directory)
    tensors = read_weights(directory / WEIGHTS_FILE)
    if build is not None:
        model = _build(build, build_kwargs or {})
        base = spec_of(model)
        if spec is not None:
            model = spec.replay_prior(model)
            base = base.model_copy(update={"prior_plans": spec.prior_plans}) if base is not None else spec
    elif spec is None:
        raise CheckpointError(
            f"{directory} has no {SPEC_FILE} (written by prunekit 0.1, or saved from a model prunekit could not "
            "describe): pass build= (the dense model's factory, class or registered name) and build_kwargs="
        )
    else:
        _check_size(spec, plan, tensors, directory)
        try:
            model = spec.build_model()
        except PlanMismatchError as exc:
            raise CheckpointError(f"{directory}: {exc}") from exc
        base = spec
    inputs = spec.example_inputs() if spec is not None and spec.inputs and plan.channels else None
    try:
        model = apply(model, plan, inputs)
    except PlanMismatchError as exc:
        if build is None and spec is not None and spec.params is None:
            raise CheckpointError(
                f"{directory}: {exc}; {SPEC_FILE} names {spec.build} without its options (the model was saved "
                "without a complete spec): pass build= and build_kwargs= to load, or spec= to save"
            ) from exc
        raise
    load_weights(model, tensors, str(directory / WEIGHTS_FILE))
    if base is not None:
        known = {} if base.inputs or not plan.input_shapes else {"inputs": inputs_from_shapes(plan.input_shapes)}
        attach(model, base.model_copy(update={"prior_plans": [*base.prior_plans, plan], **known}))
    return model.to(device)
