"""Build a model from a name: a registered name (`tecogan.frnet`) or `package.module:factory`.

MODELS holds either plain factories or `prunekit.spec.ModelEntry` objects (factory + inputs +
layout + option bounds + export hook); both build the same way.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from prunekit.registry import MODELS
from prunekit.spec import spec_for


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Return the factory (or ModelEntry) named by `spec` without calling it."""
    return MODELS.resolve(spec)


def build_model(spec: str, **kwargs: Any) -> nn.Module:
    """Build a model from a registered name or `package.module:factory`, passing keyword options.

    The model carries its `prunekit.spec.ModelSpec` (see `spec_of`), so `pk.save` records it."""
    return spec_for(spec, **kwargs).build_model()
