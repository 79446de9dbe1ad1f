"""Entry point registered under `prunekit.plugins`: each area of the plugin adds its own names."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

AREAS = (
    "tecogan_plugin.nets",
    "tecogan_plugin.fast",
    "tecogan_plugin.upsampler",
    "tecogan_plugin.layout",
    "tecogan_plugin.convert",
    "tecogan_plugin.data",
    "tecogan_plugin.metrics",
    "tecogan_plugin.train",
    "tecogan_plugin.upscale",
    "tecogan_plugin.bench",
)


def register(registries: SimpleNamespace) -> None:
    for area in AREAS:
        importlib.import_module(area).register(registries)
