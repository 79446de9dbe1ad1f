"""prunekit's own CLI subcommands, listed by name and help; each module is imported only when
its command runs (they need torch)."""

from prunekit.command import LazyCommand, add_commands
from prunekit.registry import COMMANDS

CORE_COMMANDS = (
    LazyCommand("analyze", "List a model's residual units (params, FLOPs share, nesting).",
                "prunekit.commands.analyze", "_add_arguments"),
    LazyCommand("prune", "Prune a model as a config file says; writes a checkpoint and a report.",
                "prunekit.commands.prune", "_add_arguments"),
    LazyCommand("run", "Train, prune and fine-tune as described by a run config (resumable; torchrun for DDP).",
                "prunekit.commands.run", "_arguments", "run_command"),
    LazyCommand("export", "Export a checkpoint to ONNX and check it against PyTorch with ONNX Runtime.",
                "prunekit.commands.export", "_add_arguments"),
)


def register() -> None:
    """Add the core commands (again is a no-op; `prunekit` calls this before the plugins add theirs)."""
    add_commands(CORE_COMMANDS, COMMANDS)
