"""Build a model from a spec string: a registered name (`tecogan.frnet`) or `package.module:factory`."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from prunekit.errors import ConfigError, UnknownNameError
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
    """Build a model from a registered name or `package.module:factory`, passing keyword options;
    options the factory does not take are a ConfigError naming them (checked before it is called)."""
    import inspect

    factory = resolve_factory(spec)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call speak
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            accepted = [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            raise ConfigError(f"model_kwargs for {spec!r}: {exc}; it accepts {accepted}") from None
    try:
        return factory(**kwargs)
    except TypeError as exc:  # a factory passing **kwargs on (to a class): its binding error is the user's
        if not any(m in str(exc) for m in ("unexpected keyword argument", "required positional argument",
                                           "required keyword-only argument", "multiple values for")):
            raise
        raise ConfigError(f"model_kwargs for {spec!r}: {exc}") from None
