"""Name -> object registries. Everything a user can select by name (strategies, models, layouts,
datasets, evaluators, tasks, CLI commands, latency runners, structure replacements, channel
importance measures) lives in one of these, filled by prunekit itself and
by plugins found through the `prunekit.plugins` entry-point group.

A registry knows nothing of plugins: on a miss it calls the discovery hook that `prunekit.plugins`
installs (`set_discovery`), so plugin discovery sits above the registries, not beside them."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from prunekit.errors import NameConflictError, UnknownNameError

T = TypeVar("T")

_discover: Callable[[], object] = lambda: None  # replaced by prunekit.plugins.load_plugins


def set_discovery(discover: Callable[[], object]) -> None:
    """Install what a registry runs before reporting a name unknown (or listing every name)."""
    global _discover
    _discover = discover


class Registry(Generic[T]):
    """A named collection; `register` works as a call or as a decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        def add(item: T) -> T:
            if name in self._items and not overwrite and self._items[name] is not item:
                raise NameConflictError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        if name not in self._items:
            _discover()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def names(self, *, load_plugins: bool = True) -> list[str]:
        """Registered names; with `load_plugins` after running every plugin's registration first."""
        if load_plugins:
            _discover()
        return sorted(self._items)

    def resolve(self, name: str) -> T:
        """A registered name, or `package.module:attr` (imported, for objects not registered anywhere)."""
        if ":" not in name:
            return self.get(name)
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownNameError(f"cannot import module {module_name!r} from {self.kind} spec {name!r}: {exc}") from exc
        found: Any = module
        try:
            for part in attr.split("."):
                found = getattr(found, part)
        except AttributeError:
            raise UnknownNameError(f"module {module_name!r} has no attribute {attr!r} ({self.kind} spec {name!r})") from None
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


STRATEGIES: Registry[type] = Registry("strategy")
MODELS: Registry[Callable] = Registry("model")
LAYOUTS: Registry[object] = Registry("layout")
DATASETS: Registry[Callable] = Registry("dataset")
EVALUATORS: Registry[Callable] = Registry("evaluator")
TASKS: Registry[Callable] = Registry("task")
COMMANDS: Registry[object] = Registry("command")
RUNNERS: Registry[Callable] = Registry("runner")
REPLACEMENTS: Registry[Callable] = Registry("replacement")
CHANNEL_IMPORTANCE: Registry[Callable] = Registry("channel importance")
