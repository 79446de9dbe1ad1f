"""What a `prunekit` subcommand is, and the one way to add some (core and plugins alike).

A command is listed by name and help and imported only when it runs (`LazyCommand`), so that
`prunekit --help` imports no command's code; `Command` is the loaded form. `add_commands` adds a
batch all or nothing: a name already taken, or given twice, is a NameConflictError before any of
the batch is registered."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from prunekit.errors import NameConflictError
from prunekit.registry import COMMANDS


@dataclass(frozen=True)
class Command:
    """A CLI subcommand: `add_arguments(parser)` declares options, `run(args)` returns an exit code."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]

    def load(self) -> Command:
        return self


@dataclass(frozen=True)
class LazyCommand:
    """A subcommand listed by name and help; `module` (with its `arguments` and `run` functions) is
    imported only when this subcommand is the one being run."""

    name: str
    help: str
    module: str
    arguments: str = "add_arguments"
    run: str = "run"

    def load(self) -> Command:
        code = importlib.import_module(self.module)
        return Command(self.name, self.help, getattr(code, self.arguments), getattr(code, self.run))


def add_commands(commands: Iterable[Command | LazyCommand], registry: Any = COMMANDS) -> None:
    """Register `commands` in `registry` (the COMMANDS registry, or the one a plugin's
    `register_commands` is handed); nothing is registered when any name collides."""
    batch = list(commands)
    names = [c.name for c in batch]
    taken = sorted({n for n in names if names.count(n) > 1}
                   | {c.name for c in batch if c.name in registry and registry.get(c.name) is not c})
    if taken:
        raise NameConflictError(f"command {', '.join(map(repr, taken))} is already registered; none of "
                                f"{names} was added")
    for c in batch:
        registry.register(c.name, c)


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator registering `run(args) -> int` as the subcommand `name` (imported eagerly: for commands
    that are cheap to import; list a LazyCommand through `add_commands` otherwise)."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        add_commands([Command(name, help, add_arguments, run)])
        return run

    return wrap
