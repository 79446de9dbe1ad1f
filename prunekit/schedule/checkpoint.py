"""Run checkpoints: written atomically (a temporary folder renamed into place), the last K kept,
read back without unpickling anything but tensors and plain containers (weights_only=True).

Layout of one checkpoint folder `ckpt-<global step>-<stage>-<prune step>-<iteration>`:
  model/            the model: `plan.json` + `model.safetensors` (prunekit.save; the identity plan
                    while the model is still dense)
  state.pt          cursor (stage, prune step, iteration), optimiser state, task state, RNG of every rank
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from prunekit.errors import CheckpointError
from prunekit.fileio import atomic_write

PREFIX = "ckpt-"


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU/CUDA, numpy, python) as weights_only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _python_state_to_lists(random.getstate()),
    }
    # Only a process that has used CUDA has a CUDA random stream to keep; asking otherwise would create a
    # CUDA context for a CPU run (and fails in a process forked from one that used CUDA).
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def write_model(model: nn.Module, plan: Any, folder: Path) -> None:
    """Model weights + plan into `folder` (prunekit.save; a dense model gets the identity plan)."""
    from prunekit.checkpoint import save
    from prunekit.plan import Plan

    save(model, plan if plan is not None else Plan.identity(model), folder)


def replace_model(model: nn.Module, plan: Any, folder: Path) -> None:
    """`write_model` into a sibling temp folder, then swap it in: `folder` is never half-written."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_model(model, plan, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def read_model(folder: Path, build: Callable[[], nn.Module]) -> tuple[nn.Module, Any]:
    """(model, plan or None for a dense model) from a folder written by `write_model` / prunekit.save."""
    from prunekit.checkpoint import load, read_plan

    plan = read_plan(folder)
    model = load(folder, build=build)
    dense = not plan.removed and not plan.channels
    return model, (None if dense else plan)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict file given as `init_checkpoint` or `weights` (.safetensors, else torch.save'd),
    read without unpickling code; CheckpointError names the file when it is not a state_dict."""
    from prunekit.checkpoint import read_weights

    path = Path(path)
    if path.suffix == ".safetensors":
        return read_weights(path)
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing, corrupt, or pickled code: say which file
        raise CheckpointError(f"cannot read state_dict file {path}: {exc}") from exc
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise CheckpointError(f"{path} is not a state_dict (a mapping of names to tensors)")
    return tensors


def save_checkpoint(ckpt_dir: Path, name: str, model: nn.Module, plan: Any, state: dict[str, Any], keep_last: int
                    ) -> Path:
    """Write `ckpt-<name>` atomically, then delete all but the newest `keep_last` checkpoints
    (names sort in run order)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"{PREFIX}{name}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_dir, prefix=f".tmp-{PREFIX}"))
    try:
        write_model(model, plan, tmp / "model")
        import io

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(tmp / "state.pt", buf.getvalue())
        if final.exists():  # the same step saved again (e.g. the end of a stage that also hit ckpt_every)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(ckpt_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of an interrupted write are ignored)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                  and (p / "state.pt").is_file())


def load_state(folder: Path) -> dict[str, Any]:
    try:
        return torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: say which
        raise CheckpointError(f"cannot read run checkpoint {folder / 'state.pt'}: {exc}") from exc
