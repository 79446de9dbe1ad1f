"""The `prunekit` command. Each subcommand is a `Command` in the COMMANDS registry, so plugins add
their own (`bench`, `eval`, `upscale`, ...) without editing this file."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from prunekit.errors import PrunekitError
from prunekit.registry import COMMANDS


@dataclass(frozen=True)
class Command:
    """A CLI subcommand: `add_arguments(parser)` declares options, `run(args)` returns an exit code."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator registering `run(args) -> int` as the subcommand `name`."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.register(name, Command(name, help, add_arguments, run))
        return run

    return wrap


def build_parser() -> argparse.ArgumentParser:
    import prunekit.commands  # noqa: F401  (registers the core commands)

    parser = argparse.ArgumentParser(prog="prunekit", description="Structured pruning for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS.names():
        cmd = COMMANDS.get(name)
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except PrunekitError as exc:
        print(f"prunekit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prunekit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
