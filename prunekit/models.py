"""Build a model from a name: a registered name (`tecogan.frnet`) or `package.module:factory`.

MODELS holds either plain factories or `prunekit.spec.ModelEntry` objects (factory + inputs +
layout + option bounds + export hook); both build the same way.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from prunekit.errors import UnknownNameError
from prunekit.registry import MODELS


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Return the factory (or ModelEntry) named by `spec` without calling it."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownNameError(f"cannot import module {module_name!r} from model spec {spec!r}: {exc}") from exc
        found: Any = module
        try:
            for part in attr.split("."):
                found = getattr(found, part)
        except AttributeError:
            raise UnknownNameError(f"module {module_name!r} has no attribute {attr!r} (model spec {spec!r})") from None
        return found
    return MODELS.get(spec)


def build_model(spec: str, **kwargs: Any) -> nn.Module:
    """Build a model from a registered name or `package.module:factory`, passing keyword options.

    The model carries its `prunekit.spec.ModelSpec` (see `spec_of`), so `pk.save` records it."""
    from prunekit.spec import spec_for

    return spec_for(spec, **kwargs).build_model()
