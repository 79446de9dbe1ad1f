"""Entry point registered under `prunekit.plugins`: each area of the plugin adds its own names.

The CLI commands are listed here by name and help (`register_commands`), so that `prunekit --help`
lists them without importing the plugin's models; each command's module is imported when it runs."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

from prunekit.command import LazyCommand, add_commands

AREAS = (
    "tecogan_plugin.nets",
    "tecogan_plugin.fast",
    "tecogan_plugin.upsampler",
    "tecogan_plugin.layout",
    "tecogan_plugin.data",
    "tecogan_plugin.metrics",
    "tecogan_plugin.train",
    "tecogan_plugin.bench.baselines",
)

COMMANDS = (
    LazyCommand("bench", "Run the bundled TecoGAN pruning benchmark (the study's grid) and write a report.",
                "tecogan_plugin.bench", "_arguments", "_run"),
    LazyCommand("convert", "Convert a published checkpoint (TecoGAN-PyTorch generator) to a prunekit checkpoint.",
                "tecogan_plugin.convert", "_add_arguments", "_run"),
    LazyCommand("eval", "Score folders of frames with the TecoGAN official-protocol metrics "
                "(PSNR, SSIM, LPIPS, tOF, tLP100).", "tecogan_plugin.metrics.command"),
    LazyCommand("tecogan-lmdb", "Pack PNG sequences into an LMDB training store (TecoGAN key format).",
                "tecogan_plugin.data.lmdb_store", "_add_arguments", "_run"),
    LazyCommand("upscale", "Upscale a video file or a folder of PNG frames with a TecoGAN generator "
                "(no ground truth needed).", "tecogan_plugin.upscale.command"),
)


def register_commands(commands) -> None:
    add_commands(COMMANDS, commands)


def register(registries: SimpleNamespace) -> None:
    register_commands(registries.commands)
    for area in AREAS:
        importlib.import_module(area).register(registries)
