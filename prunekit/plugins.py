"""Plugin discovery. A plugin is a callable `register(registries)` published under the
`prunekit.plugins` entry-point group; it adds its models, layouts, datasets, evaluators, tasks
and CLI commands to the registries. prunekit never imports a plugin by name.

The module holding `register` may also define `register_commands(commands)`, which adds only the
plugin's CLI commands (as cheap `LazyCommand`s); the `prunekit` command calls it instead of
`register`, so that listing the commands does not import the plugin's models (and torch)."""

from __future__ import annotations

import importlib
import types
import warnings
from importlib.metadata import entry_points

from prunekit import registry

ENTRY_POINT_GROUP = "prunekit.plugins"
_loaded: set[str] = set()
_commands_loaded: set[str] = set()


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
    """Run every installed plugin's `register` once; returns the names loaded so far. The core's own
    runners and channel importances register on import, so they are imported here, not by `import prunekit`
    (which stays torch-free for a fast CLI start)."""
    importlib.import_module("prunekit.importance")
    importlib.import_module("prunekit.latency")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded:
            continue
        _loaded.add(ep.name)
        try:
            ep.load()(registries())
        except Exception as exc:  # a broken plugin must not break prunekit itself
            warnings.warn(f"prunekit plugin {ep.name!r} failed to load: {exc!r}", stacklevel=2)
    return sorted(_loaded)


def load_commands() -> None:
    """Register every installed plugin's CLI commands: through its cheap `register_commands` when it
    has one, else through its full `register`."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded or ep.name in _commands_loaded:
            continue
        try:
            cheap = getattr(importlib.import_module(ep.module), "register_commands", None)
        except Exception as exc:  # a broken plugin must not break prunekit itself
            _loaded.add(ep.name)
            warnings.warn(f"prunekit plugin {ep.name!r} failed to load: {exc!r}", stacklevel=2)
            continue
        if cheap is None:
            load_plugins()
            continue
        _commands_loaded.add(ep.name)
        try:
            cheap(registry.COMMANDS)
        except Exception as exc:
            warnings.warn(f"prunekit plugin {ep.name!r} failed to register its commands: {exc!r}", stacklevel=2)
