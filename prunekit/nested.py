"""Model inputs and outputs nest tensors in tuples, lists and dicts; these two walkers are the one way
the library reaches them (dict values in insertion order, other values left alone)."""

from __future__ import annotations

from typing import Any, Callable

import torch


def tensors_in(obj: Any) -> list[torch.Tensor]:
    """Every tensor in `obj` (a tensor, or tuples / lists / dicts of them, nested), in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        return [t for value in obj for t in tensors_in(value)]
    return []


def map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """`obj` with `fn` applied to every tensor; containers keep their type, other values are kept."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        values = [map_tensors(fn, v) for v in obj]
        return type(obj)(*values) if hasattr(obj, "_fields") else type(obj)(values)  # namedtuples take fields
    return obj
