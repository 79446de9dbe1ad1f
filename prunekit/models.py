"""Build a model from a spec string: a registered name (`tecogan.frnet`) or `package.module:factory`."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from prunekit.errors import UnknownNameError
from prunekit.registry import MODELS


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Return the factory named by `spec` without calling it."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownNameError(f"cannot import module {module_name!r} from model spec {spec!r}: {exc}") from exc
        try:
            return getattr(module, attr)
        except AttributeError:
            raise UnknownNameError(f"module {module_name!r} has no attribute {attr!r} (model spec {spec!r})") from None
    return MODELS.get(spec)


def build_model(spec: str, **kwargs: Any) -> nn.Module:
    """Build a model from a registered name or `package.module:factory`, passing keyword options."""
    return resolve_factory(spec)(**kwargs)
