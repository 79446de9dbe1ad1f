"""Run checkpoints: written atomically (a temporary folder renamed into place), the last K kept,
read back without unpickling anything but tensors and plain containers (weights_only=True).

Layout of one checkpoint folder `ckpt-<global step>-<stage>-<prune step>-<iteration>`:
  model/            the model: `plan.json` + `model.safetensors` (prunekit.save; the identity plan
                    while the model is still dense)
  state.pt          cursor (stage, prune step, iteration), optimiser state, task state, RNG of every rank
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import prunekit.version
from prunekit.checkpoint import load, read_plan, read_weights, save
from prunekit.errors import CheckpointError, ConfigError, PrunekitError
from prunekit.fileio import atomic_dir, atomic_write, temp_dir
from prunekit.plan_record import Plan
from prunekit.weights import load_weights_only

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


def write_model(model: nn.Module, plan: Plan | None, folder: Path) -> None:
    """Model weights + plan into `folder` (prunekit.save; a dense model gets the identity plan)."""
    save(model, plan if plan is not None else Plan.identity(model), folder)


def replace_model(model: nn.Module, plan: Plan | None, folder: Path) -> None:
    """`write_model` into a sibling temp folder, then swap it in: `folder` is never half-written."""
    with atomic_dir(folder) as tmp:
        write_model(model, plan, tmp)


def read_model(folder: Path, build: Callable[[], nn.Module]) -> tuple[nn.Module, Plan | None]:
    """(model, plan or None for a dense model) from a folder written by `write_model` / prunekit.save."""
    plan = read_plan(folder)
    model = load(folder, build=build)
    dense = not plan.removed and not plan.channels
    return model, (None if dense else plan)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict file given as `init_checkpoint` or `weights` (.safetensors, else torch.save'd),
    read without unpickling code; CheckpointError names the file when it is not a state_dict."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_weights(path)
    tensors = load_weights_only(path, "state_dict file")
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise CheckpointError(f"{path} is not a state_dict (a mapping of names to tensors)")
    return tensors


def save_checkpoint(ckpt_dir: Path, name: str, model: nn.Module, plan: Any, state: dict[str, Any], keep_last: int
                    ) -> Path:
    """Write `ckpt-<name>` atomically, then delete all but the newest `keep_last` checkpoints
    (names sort in run order)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"{PREFIX}{name}"
    tmp = temp_dir(ckpt_dir, f".tmp-{PREFIX}")
    try:
        write_model(model, plan, tmp / "model")
        import io

        buf = io.BytesIO()  # state.pt last: a folder with it is complete
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
    return load_weights_only(folder / "state.pt", "run checkpoint")


# ----------------------------------------------------------------- resume
RESULT_FIELDS = ("task", "seed", "stages", "init_checkpoint", "device", "threads")
"""RunConfig fields that change a run's numbers (out_dir, progress, logging and checkpoint cadence do not)."""


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the result-changing part of a run config (as `RunConfig.model_dump(mode="json")`)."""
    part = {k: config.get(k) for k in RESULT_FIELDS}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()


def run_identity(config: dict[str, Any], device: torch.device, world_size: int) -> dict[str, Any]:
    """What a checkpoint records about how it was made; a resume must match every entry."""
    return {"prunekit": str(prunekit.version.__version__), "torch": str(torch.__version__), "config_sha256": config_hash(config),
            "device": device.type, "threads": torch.get_num_threads(), "world_size": world_size}


_IDENTITY_HINTS = {
    "prunekit": "resume with the prunekit version that started the run",
    "torch": "resume with the torch version that started the run",
    "config_sha256": "resume with the config that started the run",
    "device": "set `device` to what the run used",
    "threads": "set `threads` to what the run used (CPU results depend on the thread count)",
    "world_size": "resume with the same number of processes",
}


def check_identity(recorded: dict[str, Any] | None, now: dict[str, Any], folder: Path) -> None:
    """ConfigError naming every setting that differs from what the checkpoint `folder` recorded."""
    if recorded is None:
        raise ConfigError(f"{folder / 'state.pt'} does not record the settings it was made with (written by an "
                          "older prunekit); it cannot be resumed safely. Start a new run in another out_dir")
    diffs = [f"{k}: the run used {recorded.get(k)!r}, this process has {now[k]!r} ({_IDENTITY_HINTS[k]})"
             for k in now if recorded.get(k) != now[k]]
    if diffs:
        raise ConfigError(f"cannot resume {folder.parent.parent}: results would differ from the run's. "
                          + "; ".join(diffs))


def read_checkpoint(folder: Path, build: Callable[[], nn.Module]) -> tuple[dict[str, Any], nn.Module, Any]:
    """(state, model, plan) of one checkpoint, every part read and checked before anything is used."""
    state = load_state(folder)
    if not isinstance(state, dict) or not isinstance(state.get("cursor"), dict) or "rng" not in state:
        raise CheckpointError(f"{folder / 'state.pt'}: not a run checkpoint state (no cursor or RNG state)")
    model, plan = read_model(folder / "model", build)
    return state, model, plan


def newest_valid(ckpt_dir: Path, build: Callable[[], nn.Module], move_aside: bool = True
                 ) -> tuple[Path, dict[str, Any], nn.Module, Any] | None:
    """The newest checkpoint that reads back whole. Unreadable newer ones (a disk fault, a truncated
    copy) are renamed `corrupt-ckpt-...` (by the process given `move_aside`: one rank of a DDP run),
    with a warning, so the run continues from the one before."""
    bad: list[str] = []
    for folder in reversed(list_checkpoints(ckpt_dir)):
        try:
            state, model, plan = read_checkpoint(folder, build)
        except PrunekitError as exc:
            aside = folder.with_name(f"corrupt-{folder.name}")
            bad.append(f"{folder.name}: {exc}")
            if move_aside:
                shutil.rmtree(aside, ignore_errors=True)
                os.rename(folder, aside)
                warnings.warn(f"run checkpoint {folder} is unreadable ({exc}); moved to {aside.name}, resuming "
                              "from the previous one", stacklevel=2)
            continue
        return folder, state, model, plan
    if bad:
        raise CheckpointError(f"no readable checkpoint in {ckpt_dir}: " + "; ".join(bad))
    return None


def _is_leftover(name: str) -> bool:
    """Names of temporary files and folders that only a killed write leaves behind."""
    return name.startswith(f".tmp-{PREFIX}") or (name.startswith(".") and (
        name.endswith(".tmp") or ".partial." in name or ".old." in name))


def clean_leftovers(run_dir: Path) -> list[Path]:
    """Delete the temporaries of writes killed half-way (the caller holds the run lock, so none is live)."""
    removed = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "final", run_dir / "teacher"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        for p in folder.iterdir():
            if _is_leftover(p.name):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
    return removed
