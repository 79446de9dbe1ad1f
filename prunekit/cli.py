"""The `prunekit` command. Each subcommand is an entry of the COMMANDS registry, added through
`prunekit.command.add_commands` (prunekit's in `prunekit.commands`, plugins' in their
`register_commands`), so plugins add their own (`bench`, `eval`, `upscale`, ...) without editing this file.

Listing the commands must stay cheap (`prunekit --help` should not import torch): commands are
registered as `LazyCommand`s (name, help, and where the code is), and only the chosen one is imported.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from typing import Sequence

from prunekit import commands
from prunekit.command import Command, LazyCommand, command
from prunekit.errors import PrunekitError
from prunekit.plugins import load_commands
from prunekit.registry import COMMANDS

__all__ = ["Command", "LazyCommand", "available_commands", "build_parser", "command", "describe_os_error", "main"]

EXIT_USER_ERROR = 2  # bad input: PrunekitError, or an OS error about the user's files
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a program ended by SIGPIPE (`prunekit ... | head`)


def available_commands() -> dict[str, Command | LazyCommand]:
    """Every subcommand, prunekit's and the plugins', without importing their code."""
    commands.register()
    load_commands()
    return {name: COMMANDS.get(name) for name in COMMANDS.names(load_plugins=False)}  # type: ignore[misc]


def _debug_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the full traceback when a command fails")


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand listed; only `chosen`'s code is imported, for its options."""
    parser = argparse.ArgumentParser(prog="prunekit", description="Structured pruning for PyTorch models.")
    _debug_option(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in available_commands().items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        if name == chosen:
            loaded = cmd.load()
            _debug_option(p, argparse.SUPPRESS)  # `prunekit CMD ... --debug` works too
            loaded.add_arguments(p)
            p.set_defaults(_run=loaded.run)
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _cwd_importable() -> None:
    """Models named `module:factory` are found in the working directory, as with `python -m`; it goes
    last on the path, so that a local file cannot shadow an installed package (e.g. a `torch.py`)."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.append(cwd)


def describe_os_error(exc: OSError | UnicodeError) -> str:
    """One line for an OS error about a user's file: which file, what happened, what to do."""
    if isinstance(exc, (UnicodeDecodeError, UnicodeEncodeError)):
        return f"text or a file name is not valid {exc.encoding} ({exc.reason} at position {exc.start}); use UTF-8"
    if isinstance(exc, UnicodeError):
        return f"text or a file name cannot be converted ({exc}); use UTF-8"
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    what = exc.strerror or str(exc)
    hint = {
        errno.ENOENT: "check the path",
        errno.EACCES: "check its permissions or choose another path",
        errno.EPERM: "check its permissions or choose another path",
        errno.EISDIR: "a file was expected here, not a folder",
        errno.ENOTDIR: "a folder was expected here, or a part of the path is a file",
        errno.ENOSPC: "free some disk space",
        errno.EROFS: "choose a writable location",
        errno.EEXIST: "remove it or choose another path",
    }.get(exc.errno or 0)
    return f"{where + ': ' if where else ''}{what}" + (f" ({hint})" if hint else "")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _cwd_importable()
    parser = build_parser(_chosen(argv))
    args = parser.parse_args(argv)
    name = f"prunekit {args.command}"
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
        return code
    except BrokenPipeError:
        # the reader went away (`prunekit analyze --json | head`): stop quietly; send what Python
        # would still flush at exit to /dev/null so that no second error is printed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except PrunekitError as exc:
        return _fail(name, str(exc), args.debug)
    except (OSError, UnicodeError) as exc:
        return _fail(name, describe_os_error(exc) + ("" if args.debug else " [--debug shows where]"), args.debug)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


def _fail(name: str, message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"{name}: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
