"""Plugin discovery. A plugin is a callable `register(registries)` published under the
`prunekit.plugins` entry-point group; it adds its models, layouts, datasets, evaluators, tasks
and CLI commands to the registries. prunekit never imports a plugin by name."""

from __future__ import annotations

import types
import warnings
from importlib.metadata import entry_points

from prunekit import registry

ENTRY_POINT_GROUP = "prunekit.plugins"
_loaded: set[str] = set()


def registries() -> types.SimpleNamespace:
    """The object handed to each plugin's `register` function."""
    return types.SimpleNamespace(
        strategies=registry.STRATEGIES,
        models=registry.MODELS,
        layouts=registry.LAYOUTS,
        datasets=registry.DATASETS,
        evaluators=registry.EVALUATORS,
        tasks=registry.TASKS,
        commands=registry.COMMANDS,
        runners=registry.RUNNERS,
        replacements=registry.REPLACEMENTS,
        channel_importance=registry.CHANNEL_IMPORTANCE,
    )


def load_plugins() -> list[str]:
    """Run every installed plugin's `register` once; returns the names loaded so far."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded:
            continue
        _loaded.add(ep.name)
        try:
            ep.load()(registries())
        except Exception as exc:  # a broken plugin must not break prunekit itself
            warnings.warn(f"prunekit plugin {ep.name!r} failed to load: {exc!r}", stacklevel=2)
    return sorted(_loaded)
