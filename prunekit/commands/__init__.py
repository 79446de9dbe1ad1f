"""prunekit's own CLI subcommands; importing this package registers them."""

from prunekit.commands import analyze, export, prune, run  # noqa: F401
