"""Video super-resolution metrics under the official TecoGAN protocol: PSNR and SSIM on Y, LPIPS,
tOF and tLP100, with the frame and sequence averages of the published tables.

Public names are imported on first use, so worker processes that only need the CPU metric modules
do not pay for importing torch and lpips."""

from __future__ import annotations

import importlib

_PUBLIC = {
    "VideoMetrics": "tecogan_plugin.metrics.video_metrics",
    "ALL_METRICS": "tecogan_plugin.metrics.video_metrics",
    "MetricsReport": "tecogan_plugin.metrics.report",
    "SequenceScores": "tecogan_plugin.metrics.report",
    "evaluate_folders": "tecogan_plugin.metrics.folders",
    "Metric": "tecogan_plugin.metrics.catalog",
}
__all__ = [*_PUBLIC, "register"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(registries) -> None:
    """The metric descriptors (registered by `catalog` on import) and the `tecogan.video` evaluator class
    (the `prunekit eval` command is listed in tecogan_plugin.plugin)."""
    import tecogan_plugin.metrics.catalog  # noqa: F401  (registers the descriptors)
    from tecogan_plugin.metrics.video_metrics import VideoMetrics

    registries.evaluators.register("tecogan.video", VideoMetrics)
