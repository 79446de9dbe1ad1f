"""Plugin discovery. A plugin is a callable `register(registries)` published under the
`prunekit.plugins` entry-point group; it adds its models, layouts, datasets, evaluators, tasks
and CLI commands to the registries. prunekit never imports a plugin by name.

The module holding `register` may also define `register_commands(commands)`, which adds only the
plugin's CLI commands (as cheap `LazyCommand`s); the `prunekit` command calls it instead of
`register`, so that listing the commands does not import the plugin's models (and torch).

A plugin registers all or nothing: its names are staged first, and a name that is already taken
(or that it gives twice) is a NameConflictError before any of them reaches a registry. A plugin that
fails is reported as a warning and left out; prunekit itself keeps working."""

from __future__ import annotations

import importlib
import types
import warnings
from typing import Any, Callable

from prunekit import registry
from prunekit.errors import NameConflictError

ENTRY_POINT_GROUP = "prunekit.plugins"
_KINDS = ("strategies", "models", "layouts", "datasets", "evaluators", "tasks", "commands", "runners", "replacements",
          "channel_importance")
_loaded: set[str] = set()
_commands_loaded: set[str] = set()


def registries() -> types.SimpleNamespace:
    """The global registries, by the names a plugin's `register` uses."""
    return types.SimpleNamespace(**{kind: getattr(registry, kind.upper()) for kind in _KINDS})


class _Staged:
    """Collects one plugin's registrations for one registry; `commit` adds them once all are known."""

    def __init__(self, target: registry.Registry) -> None:
        self.target = target
        self.kind = target.kind
        self.items: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None, *, overwrite: bool = False):
        def add(item: Any) -> Any:
            if not overwrite and (name in self.items or name in self.target) and self.get(name) is not item:
                raise NameConflictError(f"{self.kind} {name!r} is already registered")
            self.items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> Any:
        return self.items[name] if name in self.items else self.target.get(name)

    def names(self, *, load_plugins: bool = False) -> list[str]:
        return sorted(set(self.items) | set(self.target.names(load_plugins=load_plugins)))

    def __contains__(self, name: object) -> bool:
        return name in self.items or name in self.target

    def commit(self) -> None:
        for name, item in self.items.items():
            self.target.register(name, item, overwrite=True)


def _register_whole(name: str, register: Callable[[Any], object], commands_only: bool = False) -> None:
    """Run `register` (a plugin's `register(registries)`, or its `register_commands(commands)`) on
    staged registries, then add everything it registered; on any error (a name conflict included)
    nothing of the plugin is added."""
    staged = {kind: _Staged(getattr(registry, kind.upper())) for kind in (("commands",) if commands_only else _KINDS)}
    try:
        register(staged["commands"] if commands_only else types.SimpleNamespace(**staged))
    except NameConflictError as exc:
        raise NameConflictError(f"prunekit plugin {name!r} was not loaded: {exc}") from None
    for stage in staged.values():
        stage.commit()


def load_plugins() -> list[str]:
    """Run every installed plugin's `register` once; returns the names loaded so far. The core's own
    runners and channel importances register on import, so they are imported here, not by `import prunekit`
    (which stays torch-free for a fast CLI start)."""
    from importlib.metadata import entry_points  # here: importing it costs ~20 ms at every start

    importlib.import_module("prunekit.importance")
    importlib.import_module("prunekit.latency")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded:
            continue
        _loaded.add(ep.name)
        try:
            _register_whole(ep.name, ep.load())
        except Exception as exc:  # a broken plugin must not break prunekit itself
            warnings.warn(_failure(ep.name, exc), stacklevel=2)
    return sorted(_loaded)


def load_commands() -> None:
    """Register every installed plugin's CLI commands: through its cheap `register_commands` when it
    has one, else through its full `register`."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded or ep.name in _commands_loaded:
            continue
        try:
            cheap = getattr(importlib.import_module(ep.module), "register_commands", None)
        except Exception as exc:  # a broken plugin must not break prunekit itself
            _loaded.add(ep.name)
            warnings.warn(_failure(ep.name, exc), stacklevel=2)
            continue
        if cheap is None:
            load_plugins()
            continue
        _commands_loaded.add(ep.name)
        try:
            _register_whole(ep.name, cheap, commands_only=True)
        except Exception as exc:
            warnings.warn(_failure(ep.name, exc), stacklevel=2)


def _failure(name: str, exc: Exception) -> str:
    return str(exc) if isinstance(exc, NameConflictError) else f"prunekit plugin {name!r} failed to load: {exc!r}"


registry.set_discovery(load_plugins)
