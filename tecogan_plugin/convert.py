"""Published TecoGAN-PyTorch generator files -> FRNet -> prunekit checkpoints.

A published `.pth` is a bare state_dict (sometimes saved from a DataParallel wrapper, hence
`module.` prefixes). nb, scale, width and BD/BI are read off its keys and shapes, the file is read
with `torch.load(weights_only=True)` (no unpickling of code) and loaded strictly. The converted
directory is a prunekit checkpoint whose spec.json records the FRNet options, so `prunekit.load(dir)`
rebuilds it. `load_converted` also reads folders written before specs existed: their options come
from `frnet.json` (what `convert` wrote then) or are read off the weights and the plan.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from prunekit.errors import CheckpointError
from prunekit.weights import load_weights_only
from tecogan_plugin.nets import FRNet, FRNetOptions, frnet_example_inputs

BUILD_FILE = "frnet.json"  # FRNet options as prunekit 0.1's `convert` wrote them (read, no longer written)
_KERNEL_KEYS = ("upsample_func.kernels", "srnet.upsample_func.kernels")
_BLOCK_KEY = re.compile(r"^srnet\.resblocks\.(\d+)\.")
_RESBLOCK_PATH = re.compile(r"srnet\.resblocks\.\d+")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a generator state_dict safely; strips a `module.` prefix shared by all keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    obj = load_weights_only(path)
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(f"{path} is not a bare state_dict (a dict of tensors); got {type(obj).__name__}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def infer_options(state: dict[str, torch.Tensor], source: str = "state_dict") -> dict[str, Any]:
    """FRNet keyword options (in_nc, out_nc, nf, nb, scale, degradation) implied by a published state_dict."""
    for key in ("fnet.encoder1.0.weight", "srnet.conv_in.0.weight", "srnet.conv_out.weight"):
        if key not in state:
            raise CheckpointError(f"{source} is not a TecoGAN FRNet generator: it has no {key!r}")
    in_nc = state["fnet.encoder1.0.weight"].shape[1] // 2
    conv_in = state["srnet.conv_in.0.weight"]
    s2 = conv_in.shape[1] // in_nc - 1
    scale = round(s2**0.5)
    if scale * scale != s2 or conv_in.shape[1] % in_nc:
        raise CheckpointError(f"{source}: srnet.conv_in.0.weight has {conv_in.shape[1]} input channels, "
                              f"not (scale^2 + 1) * {in_nc} for any integer scale")
    blocks = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    return {
        "in_nc": in_nc,
        "out_nc": state["srnet.conv_out.weight"].shape[0],
        "nf": conv_in.shape[0],
        "nb": max(blocks) + 1 if blocks else 0,
        "scale": scale,
        "degradation": "BD" if any(k in state for k in _KERNEL_KEYS) else "BI",
    }


def _check_fits(model: FRNet, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} (file {list(state[k].shape)}, model {list(expected[k].shape)})"
                   for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    problems = [f"{label}: {', '.join(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise CheckpointError(f"{source} does not fit FRNet({_describe(model)}); " + "; ".join(problems))


def _describe(model: FRNet) -> str:
    return f"nb={len(model.srnet.resblocks)}, scale={model.scale}, degradation={model.degradation}"


def load_published_generator(
    path: str | os.PathLike, degradation: str | None = None, scale: int | None = None
) -> FRNet:
    """Build an FRNet from a TecoGAN-PyTorch generator file, options inferred from its keys.

    `degradation` may override BD/BI (the two differ only in the upsampler's constant `kernels`
    buffers, which are then filled in or dropped); `scale`, if given, must agree with the file.
    """
    state = read_state_dict(path)
    options = infer_options(state, str(path))
    if scale is not None and scale != options["scale"]:
        raise CheckpointError(f"{path} holds a x{options['scale']} generator, but scale={scale} was requested")
    if degradation is not None and degradation != options["degradation"]:
        options["degradation"] = degradation
        state = {k: v for k, v in state.items() if k not in _KERNEL_KEYS}
    model = FRNet(**options)
    if options["degradation"] == "BD" and not any(k in state for k in _KERNEL_KEYS):
        state.update({k: model.upsample_func.kernels for k in _KERNEL_KEYS})
    _check_fits(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model.eval()


def convert(src: str | os.PathLike, out_dir: str | os.PathLike, degradation: str | None = None,
            scale: int | None = None, overwrite: bool = False) -> Path:
    """Write `src` as a prunekit checkpoint (identity plan, nothing removed; spec.json names the options).
    `out_dir` must be new or empty, or with `overwrite` an earlier conversion (it holds spec.json and
    plan.json); never `src`'s folder."""
    from prunekit.checkpoint import save
    from prunekit.fileio import atomic_dir, check_output
    from prunekit.plan import Plan

    from prunekit.checkpoint import SPEC_FILE

    ours = lambda folder: (folder / SPEC_FILE).is_file() or (folder / BUILD_FILE).is_file()  # noqa: E731
    target = check_output(out_dir, [src], kind="folder", allow_existing=overwrite, marker=ours, what="out_dir")
    model = load_published_generator(src, degradation=degradation, scale=scale)
    plan = Plan.identity(model, frnet_example_inputs(scale=model.scale))
    with atomic_dir(target) as tmp:
        save(model, plan, tmp)  # the FRNet carries its spec (all options)
    return Path(out_dir)


def _checked_options(options: Any, source: str) -> dict[str, Any]:
    """FRNet options from a file, within FRNetOptions' bounds (a tampered nf must not allocate)."""
    from pydantic import ValidationError

    if not isinstance(options, dict):
        raise CheckpointError(f"{source}: FRNet options must be a mapping, got {type(options).__name__}")
    try:
        FRNetOptions.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors())
        raise CheckpointError(f"{source}: invalid FRNet options: {problems}") from None
    return dict(options)


def _legacy_options(directory: Path, removed: list[str], width_pruned: bool) -> dict[str, Any]:
    """Dense FRNet options of a folder without spec.json: `frnet.json` if `convert` wrote one, the task
    options of the TecoGAN schedule run it is the `final/` of, else read off the (block-pruned)
    weights with the removed blocks counted back in. A width-pruned
    folder without frnet.json does not record the dense width: the caller must give nf."""
    from prunekit.checkpoint import WEIGHTS_FILE, read_weights

    build_file = directory / BUILD_FILE
    if build_file.is_file():
        try:
            options = json.loads(build_file.read_text())["build_kwargs"]
        except (ValueError, KeyError, TypeError) as exc:  # ValueError: JSON errors
            raise CheckpointError(f"invalid {build_file}: {exc}") from exc
        return _checked_options(options, str(build_file))
    run_config = directory.parent / "config.json"  # a TecoGAN schedule run's final/: its task options
    if run_config.is_file():
        task = json.loads(run_config.read_text()).get("task", {})
        if str(task.get("name", "")).startswith("tecogan."):
            options = task.get("options") or {}
            if isinstance(options, dict):  # the task's FRNet options, FRNet's defaults where it left them out
                default = FRNetOptions()
                options = {k: options.get(k, getattr(default, k)) for k in ("nf", "nb", "scale", "degradation")}
            return _checked_options(options, str(run_config))
    if width_pruned:
        raise CheckpointError(
            f"{directory}: width-pruned checkpoint written before spec.json existed and without {BUILD_FILE}; "
            "pass the dense model's nf (load_generator(path, nf=...)), then pk.save it again to record its spec"
        )
    weights = directory / WEIGHTS_FILE
    options = infer_options(read_weights(weights), str(weights))
    options["nb"] += sum(1 for p in removed if _RESBLOCK_PATH.fullmatch(p))
    return _checked_options(options, str(weights))


def load_converted(directory: str | os.PathLike, device: str | torch.device = "cpu", **build_kwargs: Any) -> FRNet:
    """Load a (possibly pruned) FRNet checkpoint folder: from its spec.json, or for folders written
    before specs from frnet.json / the weights. `build_kwargs` override the dense FRNet options."""
    from prunekit.checkpoint import PLAN_FILE, load, read_plan, read_spec

    directory = Path(directory)
    plan = read_plan(directory / PLAN_FILE)
    spec = read_spec(directory)
    if spec is not None:
        if not build_kwargs:
            return load(directory, device=device)
        options = {**spec.kwargs, **build_kwargs}
    else:
        given = "nf" in build_kwargs
        options = {**_legacy_options(directory, plan.removed, bool(plan.channels) and not given), **build_kwargs}
    return load(directory, build="tecogan.frnet", build_kwargs=_checked_options(options, f"options for {directory}"),
                device=device)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["tecogan"], help="source format (TecoGAN-PyTorch generator .pth)")
    parser.add_argument("src", help="published generator state_dict (.pth)")
    parser.add_argument("out_dir", help="directory for plan.json + spec.json + model.safetensors")
    parser.add_argument("--degradation", choices=["BD", "BI"], default=None, help="override BD/BI (default: from keys)")
    parser.add_argument("--scale", type=int, default=None, help="expected scale (checked against the file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier conversion in OUT_DIR")


def _run(args: argparse.Namespace) -> int:
    from prunekit.checkpoint import read_spec

    out = convert(args.src, args.out_dir, degradation=args.degradation, scale=args.scale, overwrite=args.overwrite)
    options = read_spec(out).kwargs
    print(f"wrote {out} (FRNet {', '.join(f'{k}={v}' for k, v in options.items())})")
    return 0
