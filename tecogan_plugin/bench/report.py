"""The benchmark's results: one typed row per model, and what is written from them: JSON and CSV of
every number, report.md (the machine and settings, and a markdown table per dataset), a Pareto plot
(PSNR against parameters, FLOPs and measured latency) and a figure of zoomed crops with their
difference maps against the GT."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from prunekit.fileio import atomic_write
from tecogan_plugin.metrics import catalog


class BenchRow(BaseModel):
    """One model of the grid: how it was made, its size and cost, its quality per test set and its
    measured latency. rows/<key>.json keeps the part measured with the model itself (`measured()`);
    latency and the comparisons with the dense row are added once the whole grid is timed (`timed`)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    strategy: str  # a strategy name, `tp`, `dense` or `bicubic`
    finetune: str  # none / plain / distill, `control` for the dense control, `-` for references
    width: float = 0.0
    latency_target: float | None = None
    subpixel: int | None = None
    move_cost: str = "importance"  # latency series: how the planner priced its moves
    min_keep: float = 0.0  # latency series: the least fraction of a channel group the planner kept
    uniform: bool = False  # latency series: every block kept, all channel groups cut by one fraction
    refit: bool = False  # the pruned layers were refit to the dense ones by least squares before healing
    blocks: int
    params_total: int
    params_srnet: int
    gmacs: float
    tail: str = "convT"
    train_wall_s: float
    tp_ratio: float | None = None  # the Torch-Pruning baseline's uniform ratio (its rows only)
    metrics: dict[str, dict[str, float | None]]  # test set -> metric -> frame average
    latency_ms: float | None = None
    latency_p25_ms: float | None = None
    latency_p75_ms: float | None = None
    latency_min_ms: float | None = None
    latency_max_ms: float | None = None
    latency_ratio: float | None = None
    params_fnet: int | None = None
    params_removed_fnet_pct: float | None = None
    params_removed_total_pct: float | None = None
    params_removed_srnet_pct: float | None = None
    flops_removed_pct: float | None = None

    def record(self) -> dict[str, Any]:
        """The row as results.json holds it (`tp_ratio` only in the baseline's rows, `uniform` and
        `refit` only where set)."""
        data = self.model_dump()
        if data["tp_ratio"] is None:
            del data["tp_ratio"]
        for flag in ("uniform", "refit"):
            if not data[flag]:
                del data[flag]
        return data

    def measured(self) -> dict[str, Any]:
        """The fields known before the grid is timed (rows/<key>.json)."""
        data = self.record()
        return {k: data[k] for k in list(data)[: list(data).index("metrics") + 1]}

    def timed(self, latency: dict[str, float], ratio: float, dense: "BenchRow") -> "BenchRow":
        """This row with its latency statistics, its ratio to the dense latency and its reductions
        against the dense row."""
        fnet = self.params_total - self.params_srnet  # FRNet = FNet + SRNet
        return self.model_copy(update={
            "latency_ms": latency["median_ms"], "latency_p25_ms": latency["p25_ms"],
            "latency_p75_ms": latency["p75_ms"], "latency_min_ms": latency["min_ms"],
            "latency_max_ms": latency["max_ms"], "latency_ratio": ratio, "params_fnet": fnet,
            "params_removed_fnet_pct": 100 * (1 - fnet / (dense.params_total - dense.params_srnet)),
            "params_removed_total_pct": 100 * (1 - self.params_total / dense.params_total),
            "params_removed_srnet_pct": 100 * (1 - self.params_srnet / dense.params_srnet),
            "flops_removed_pct": 100 * (1 - self.gmacs / dense.gmacs),
        })


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def series_label(row: BenchRow) -> str:
    """`dense`, `bicubic`, or `strategy (heal[, w0.5][, lat0.33][, subpixel k3]) nb=N`: legend and crop titles."""
    if row.strategy == "dense":
        return "dense" if row.finetune != "control" else "dense + fine-tune budget (control)"
    if row.strategy == "bicubic":
        return "bicubic"
    options = [row.finetune]
    if row.width:
        options.append(f"w{row.width:g}")
    if row.latency_target is not None:
        options.append(f"lat{row.latency_target:g}")
    if row.move_cost != "importance":
        options.append(row.move_cost)
    if row.min_keep:
        options.append(f"floor{row.min_keep:g}")
    if row.uniform:
        options.append("uniform")
    if row.subpixel is not None:
        options.append(f"subpixel k{row.subpixel}")
    if row.refit:
        options.append("refit")
    return f"{row.strategy} ({', '.join(options)}) nb={row.blocks}"


def _series_line(row: BenchRow) -> str:
    """The label without the block count: one Pareto line per series."""
    return series_label(row).rsplit(" nb=", 1)[0]


def metric_columns(rows: Sequence[BenchRow]) -> list[catalog.Metric]:
    """The official metrics (n/a where not measured), then any other registered metric the rows hold."""
    held = {m for row in rows for values in row.metrics.values() for m in values}
    return [catalog.get(m) for m in catalog.names() if m in catalog.BUILTIN_NAMES or m in held]


def flat_rows(rows: Sequence[BenchRow]) -> list[dict]:
    """One flat record per (row, dataset): the shape of the CSV file."""
    columns = metric_columns(rows)
    out = []
    for row in rows:
        base = {k: v for k, v in row.record().items() if k != "metrics"}
        for dataset, values in row.metrics.items():
            out.append({**base, "dataset": dataset, **{m.name: values.get(m.name) for m in columns}})
    return out


def markdown_tables(rows: Sequence[BenchRow], flops_size: str) -> str:
    """A table per dataset with the study's Table-3 columns (params, PSNR, LPIPS, tOF) plus ours;
    `width` is the fraction of channels removed per coupled group (0: blocks only), `latency target`
    the fraction of the dense latency a planned series keeps, `tail` SRNet's upsampler."""
    datasets = sorted({d for row in rows for d in row.metrics})
    columns = metric_columns(rows)
    parts = []
    for dataset in datasets:
        parts.append(f"### {dataset}\n")
        parts.append(
            "| strategy | fine-tune | width | latency target | tail | blocks | params total | removed (total) "
            "| SRNet params | removed (SRNet) | FNet params | removed (FNet) "
            f"| GMACs @ {flops_size} | FLOPs removed | latency (ms) | latency IQR (ms) | latency vs dense "
            "| " + " | ".join(m.label for m in columns) + " |"
        )
        parts.append("|" + "---|" * (17 + len(columns)))
        for row in rows:
            m = row.metrics.get(dataset)
            if m is None:
                continue
            iqr = (f"{row.latency_p25_ms:.1f}-{row.latency_p75_ms:.1f}"
                   if row.latency_p25_ms is not None else "n/a")
            parts.append(
                f"| {row.strategy} | {row.finetune} | {row.width:g} | {_fmt(row.latency_target, 2)} "
                f"| {row.tail} | {row.blocks} "
                f"| {row.params_total:,} | {row.params_removed_total_pct:.1f}% "
                f"| {row.params_srnet:,} | {row.params_removed_srnet_pct:.1f}% "
                f"| {row.params_fnet:,} | {row.params_removed_fnet_pct:.1f}% "
                f"| {row.gmacs:.2f} | {row.flops_removed_pct:.1f}% | {_fmt(row.latency_ms, 1)} "
                f"| {iqr} | {_fmt(row.latency_ratio, 3)} "
                "| " + " | ".join(_fmt(m.get(c.name), c.digits) for c in columns) + " |"
            )
        parts.append("")
    return "\n".join(parts)


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def pareto_plot(rows: Sequence[BenchRow], dataset: str, path: Path) -> None:
    """PSNR against parameters, FLOPs and measured latency, one line per series (reference rows as points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_spec = [("params_total", 1e-6, "parameters, total (M)"), ("gmacs", 1.0, "GMACs per frame"),
                 ("latency_ms", 1.0, "latency, fast path (ms)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax in axes:  # 20 distinct colours: a grid of many series must not repeat one
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    series: dict[str, list[BenchRow]] = {}
    for row in rows:
        if dataset in row.metrics and row.metrics[dataset].get("psnr") is not None:
            series.setdefault(_series_line(row), []).append(row)
    for label, items in sorted(series.items()):
        reference = label.startswith("dense") or label == "bicubic"
        for ax, (x_key, scale, _) in zip(axes, axes_spec):
            points = sorted((r for r in items if getattr(r, x_key) is not None), key=lambda r: getattr(r, x_key))
            if points:
                ax.plot([getattr(r, x_key) * scale for r in points], [r.metrics[dataset]["psnr"] for r in points],
                        marker="*" if reference else "o", ms=10 if reference else 5, label=label)
    for ax, (_, _, xlabel) in zip(axes, axes_spec):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("PSNR-Y (dB)")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    fig.suptitle(f"TecoGAN FRNet pruning: quality vs size and speed ({dataset})")
    fig.tight_layout()
    _save_figure(fig, path)


def detail_box(gt: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left (y, x) of the size x size window of `gt` with the most gradient energy: the textured
    area where upsamplers differ, not a flat patch where every model looks alike."""
    gray = gt.astype(np.float64).mean(axis=2)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.diff(gray, axis=1) ** 2
    energy[1:, :] += np.diff(gray, axis=0) ** 2
    h, w = gray.shape
    if h <= size or w <= size:
        return 0, 0
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def crop_figure(gt: np.ndarray, crops: Sequence[tuple[str, np.ndarray]], path: Path, zoom: int = 4,
                diff_gain: float = 4.0) -> None:
    """GT and each model's crop, zoomed `zoom` x with nearest-neighbour pixels, and under each crop its
    |crop - GT| map (mean over RGB, x `diff_gain`, 0 = black) with the crop's PSNR in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [("GT", gt)] + list(crops)
    cols = min(len(entries), 5)
    rows = 2 * ((len(entries) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    ref = gt.astype(np.float64)
    for i, (label, image) in enumerate(entries):
        top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        top.imshow(np.kron(image, np.ones((zoom, zoom, 1), dtype=np.uint8)), interpolation="nearest")
        diff = np.abs(image.astype(np.float64) - ref).mean(axis=2)
        mse = float(((image.astype(np.float64) - ref) ** 2).mean())
        title = label if i == 0 else f"{label}\n{10 * np.log10(255.0 ** 2 / max(mse, 1e-10)):.2f} dB (RGB, this crop)"
        top.set_title(title, fontsize=7)
        if i:
            bottom.imshow(np.clip(diff * diff_gain, 0, 255), cmap="magma", vmin=0, vmax=255,
                          interpolation="nearest")
            bottom.set_title(f"|diff| x{diff_gain:g}", fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def write_results(rows: Sequence[BenchRow], meta: dict, out_dir: Path) -> None:
    """results.json (rows + meta), results.csv (one line per row and dataset) and one Pareto plot per
    dataset; report.md is written by `run_bench` (`report_markdown`)."""
    out_dir = Path(out_dir)
    atomic_write(out_dir / "results.json",
                 json.dumps({"meta": meta, "rows": [r.record() for r in rows]}, indent=2).encode())
    flat = flat_rows(rows)
    if flat:
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for row in flat for k in row))  # some rows carry extra fields (tp_ratio)
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
        atomic_write(out_dir / "results.csv", buf.getvalue().encode())
    for dataset in sorted({d for row in rows for d in row.metrics}):
        pareto_plot(rows, dataset, out_dir / f"pareto_{dataset}.png")


PACKAGES = ("prunekit", "torch", "torch-pruning", "fvcore", "lpips", "opencv-python-headless", "scikit-image")


def machine_info(device: Any = "cpu", threads: int | None = None) -> dict[str, Any]:
    """The machine and software a measurement ran on: the benchmark's results.json and every script in
    benchmarks/ describe it with this. `threads`: the torch CPU threads used (default: torch's setting)."""
    import importlib.metadata as md

    import torch

    device = torch.device(device)
    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    for pkg in PACKAGES:
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    return info


def machine_line(info: dict[str, Any]) -> str:
    """`machine_info` as one line of a report."""
    load = "/".join(f"{x:.1f}" for x in info["load_average"]) if info.get("load_average") else "n/a"
    gpu = f" ({info['gpu']})" if info.get("gpu") else ""
    return (f"{info['platform']}, {info['cpu_count']} CPU cores ({info['cpu']}), device {info['device']}{gpu}, "
            f"{info['torch_threads']} torch thread(s); torch {info['torch']}, Python {info['python']}; "
            f"load average (1/5/15 min) {load}")


def report_markdown(rows: Sequence[BenchRow], meta: dict[str, Any], flops_size: str) -> str:
    m = meta["machine"]
    lines = [
        f"# TecoGAN pruning benchmark — preset `{meta['preset']}`",
        "",
        meta["description"],
        "",
        f"- machine: {m['platform']}, {m['cpu_count']} CPU cores, device {m['device']}"
        + (f" ({m['gpu']})" if m.get("gpu") else ""),
        f"- software: prunekit {m['prunekit']}, torch {m['torch']}, torch-pruning {m['torch-pruning']}, "
        f"fvcore {m['fvcore']}, opencv {m['opencv-python-headless']}, scikit-image {m['scikit-image']}",
        f"- seed {meta['seed']}; training/fine-tuning wall time {meta['wall_s_training_total']} s in total; "
        f"finished {meta['finished']}",
        f"- FLOPs: {meta['flops_convention']}",
        f"- latency: {meta['latency']}",
        "- quality: official TecoGAN protocol (2 frames cut at each end, crop_8x8 border), frame averages",
        "- `dense / control`: the dense model trained for the healing budget more, i.e. the same total training "
        "as the healed rows; compare healed models with it, not only with `dense`",
    ]
    reasons: dict[str, list[str]] = {}
    for metric, why in meta.get("unavailable_metrics", {}).items():
        reasons.setdefault(why, []).append(metric)
    for why, metrics in reasons.items():
        lines.append(f"- {', '.join(metrics)}: unavailable — {why}")
    for key, why in meta.get("failed_models", {}).items():
        lines.append(f"- `{key}`: not in the tables — {why}")
    lines += ["", markdown_tables(rows, flops_size), "", "![Pareto](pareto_" +
              next(iter(rows[0].metrics)) + ".png)", "", "![crops](crops.png)", ""]
    return "\n".join(lines)
