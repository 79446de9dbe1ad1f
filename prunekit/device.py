"""Choosing the torch device a user asked for, in one place for every command and run."""

from __future__ import annotations

import torch

from prunekit.errors import ConfigError


def resolve_device(device: str | torch.device | None = None, index: int | None = None) -> torch.device:
    """None or "auto" -> CUDA when available, else CPU; otherwise the named device. An unknown device
    or CUDA without CUDA is a ConfigError. `index` (e.g. a process's local rank) picks the CUDA device
    when the request names none."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {str(device)!r} (expected cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} requested but CUDA is not available here")
    if dev.type == "cuda" and dev.index is None and index is not None:
        dev = torch.device("cuda", index)
    return dev
