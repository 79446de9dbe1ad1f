"""Published TecoGAN-PyTorch generator files -> FRNet -> prunekit checkpoints.

A published `.pth` is a bare state_dict (sometimes saved from a DataParallel wrapper, hence
`module.` prefixes). nb, scale, width and BD/BI are read off its keys and shapes, the file is read
with `torch.load(weights_only=True)` (no unpickling of code) and loaded strictly. The converted
directory holds prunekit's plan.json + model.safetensors plus `frnet.json` with the FRNet options,
so `load_converted(dir)` (or `prunekit.load(dir, build="tecogan.frnet", build_kwargs=...)`) rebuilds it.
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
from tecogan_plugin.nets import FRNet, frnet_example_inputs

BUILD_FILE = "frnet.json"
_KERNEL_KEYS = ("upsample_func.kernels", "srnet.upsample_func.kernels")
_BLOCK_KEY = re.compile(r"^srnet\.resblocks\.(\d+)\.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a generator state_dict safely; strips a `module.` prefix shared by all keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises KeyError, UnpicklingError, ... on files it cannot parse
        raise CheckpointError(f"cannot read {path} as a weights-only torch checkpoint: {exc!r}") from exc
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
    """Write `src` as a prunekit checkpoint (identity plan, nothing removed) plus `frnet.json`. `out_dir`
    must be new or empty, or with `overwrite` an earlier conversion (it holds frnet.json); never `src`'s folder."""
    from prunekit.checkpoint import save
    from prunekit.fileio import atomic_dir, atomic_write, check_output
    from prunekit.plan import Plan

    target = check_output(out_dir, [src], kind="folder", allow_existing=overwrite, marker=BUILD_FILE, what="out_dir")
    model = load_published_generator(src, degradation=degradation, scale=scale)
    options = infer_options(model.state_dict())
    options["degradation"] = model.degradation
    plan = Plan.identity(model, frnet_example_inputs(scale=model.scale))
    with atomic_dir(target) as tmp:
        save(model, plan, tmp)
        atomic_write(tmp / BUILD_FILE, json.dumps({"build": "tecogan.frnet", "build_kwargs": options}, indent=2))
    return Path(out_dir)


def load_converted(directory: str | os.PathLike, device: str | torch.device = "cpu") -> FRNet:
    """Load a (possibly pruned) FRNet checkpoint directory, taking FRNet options from `frnet.json` if present."""
    from prunekit.checkpoint import load

    build_file = Path(directory) / BUILD_FILE
    kwargs: dict[str, Any] = {}
    if build_file.is_file():
        try:
            kwargs = json.loads(build_file.read_text())["build_kwargs"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"invalid {build_file}: {exc}") from exc
    return load(directory, build="tecogan.frnet", build_kwargs=kwargs, device=device)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["tecogan"], help="source format (TecoGAN-PyTorch generator .pth)")
    parser.add_argument("src", help="published generator state_dict (.pth)")
    parser.add_argument("out_dir", help="directory for plan.json + model.safetensors")
    parser.add_argument("--degradation", choices=["BD", "BI"], default=None, help="override BD/BI (default: from keys)")
    parser.add_argument("--scale", type=int, default=None, help="expected scale (checked against the file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier conversion in OUT_DIR")


def _run(args: argparse.Namespace) -> int:
    out = convert(args.src, args.out_dir, degradation=args.degradation, scale=args.scale, overwrite=args.overwrite)
    options = json.loads((out / BUILD_FILE).read_text())["build_kwargs"]
    print(f"wrote {out} (FRNet {', '.join(f'{k}={v}' for k, v in options.items())})")
    return 0
