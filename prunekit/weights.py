"""Locate pretrained weight files without downloading them, and read them without unpickling code.

Some code paths need third-party weights (e.g. torchvision's ImageNet AlexNet for LPIPS, VGG19 for
a perceptual loss). prunekit never downloads: it looks at an explicit path, then the torch hub
cache, and otherwise fails with a message naming the file and where to put it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from prunekit.errors import CheckpointError, MissingWeightsError


def hub_checkpoint_dir() -> Path:
    """The folder torch.hub/torchvision read cached weights from (honours $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(filename: str, path: str | os.PathLike | None = None, *, what: str, url: str | None = None) -> Path:
    """Return the weights file to use.

    `path` (a file, or a folder holding `filename`) wins when given; otherwise the torch hub cache
    is searched. Raises MissingWeightsError naming `filename`, the places searched and where to put it.
    """
    candidates: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        candidates.append(p / filename if p.is_dir() else p)
    candidates.append(hub_checkpoint_dir() / filename)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    source = f" (published at {url})" if url else ""
    raise MissingWeightsError(
        f"{what} needs the weights file {filename!r}{source}, which cannot be downloaded here. "
        f"Searched: {searched}. Put the file in {hub_checkpoint_dir()} or pass its path explicitly."
    )


def load_weights_only(path: str | os.PathLike, what: str = "torch checkpoint") -> Any:
    """The object in a `torch.save`d file, read on the CPU with `weights_only=True` (tensors and plain
    containers, never code). torch.load raises many error types on a file it cannot parse (missing,
    corrupt, pickled code); each becomes a CheckpointError naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # KeyError, UnpicklingError, RuntimeError, OSError, ...: say which file
        raise CheckpointError(f"cannot read {path} as a weights-only {what}: {exc!r}") from exc
