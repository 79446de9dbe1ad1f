"""Write the benchmark's results: JSON and CSV of every number, a markdown table per dataset,
a Pareto plot (PSNR against parameters and FLOPs) and a side-by-side crop of frames."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from prunekit.fileio import atomic_write

METRICS = ("psnr", "ssim", "lpips", "tof", "tlp")
METRIC_LABELS = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓", "tof": "tOF ↓", "tlp": "tLP100 ↓"}


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def series_label(row: dict) -> str:
    """`dense`, `strategy (heal)` or, for a width series, `strategy (heal, w0.5)`: legend and crop titles."""
    if row["strategy"] == "dense":
        return "dense" if row["finetune"] != "control" else "dense + fine-tune budget (control)"
    return f"{row['strategy']} ({row['finetune']}" + (f", w{row['width']:g})" if row["width"] else ")")


def flat_rows(rows: Sequence[dict]) -> list[dict]:
    """One flat record per (row, dataset): the shape of the CSV file."""
    out = []
    for row in rows:
        base = {k: v for k, v in row.items() if k != "metrics"}
        for dataset, values in row["metrics"].items():
            out.append({**base, "dataset": dataset, **{m: values.get(m) for m in METRICS}})
    return out


def markdown_tables(rows: Sequence[dict], flops_size: str) -> str:
    """A table per dataset with the study's Table-3 columns (params, PSNR, LPIPS, tOF) plus ours;
    `width` is the fraction of channels removed per coupled group (0: blocks only)."""
    datasets = sorted({d for row in rows for d in row["metrics"]})
    parts = []
    for dataset in datasets:
        parts.append(f"### {dataset}\n")
        parts.append(
            "| strategy | fine-tune | width | blocks | params total | removed (total) | SRNet params "
            "| removed (SRNet) | FNet params | removed (FNet) "
            f"| GMACs @ {flops_size} | FLOPs removed | latency (ms) | PSNR | SSIM | LPIPS | tOF | tLP100 |"
        )
        parts.append("|" + "---|" * 18)
        for row in rows:
            m = row["metrics"].get(dataset)
            if m is None:
                continue
            parts.append(
                f"| {row['strategy']} | {row['finetune']} | {row['width']:g} | {row['blocks']} "
                f"| {row['params_total']:,} | {row['params_removed_total_pct']:.1f}% "
                f"| {row['params_srnet']:,} | {row['params_removed_srnet_pct']:.1f}% "
                f"| {row['params_fnet']:,} | {row['params_removed_fnet_pct']:.1f}% "
                f"| {row['gmacs']:.2f} | {row['flops_removed_pct']:.1f}% | {_fmt(row.get('latency_ms'), 1)} "
                f"| {_fmt(m.get('psnr'), 3)} | {_fmt(m.get('ssim'), 4)} | {_fmt(m.get('lpips'), 4)} "
                f"| {_fmt(m.get('tof'), 4)} | {_fmt(m.get('tlp'), 3)} |"
            )
        parts.append("")
    return "\n".join(parts)


def pareto_plot(rows: Sequence[dict], dataset: str, path: Path) -> None:
    """PSNR against parameters and against FLOPs, one line per (strategy, fine-tune, width) series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax in axes:  # 20 distinct colours: a grid of many series must not repeat one
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    series: dict[str, list[dict]] = {}
    for row in rows:
        if dataset in row["metrics"] and row["metrics"][dataset].get("psnr") is not None:
            series.setdefault(series_label(row), []).append(row)
    for label, items in sorted(series.items()):
        for ax, x_key, scale in ((axes[0], "params_total", 1e-6), (axes[1], "gmacs", 1.0)):
            items = sorted(items, key=lambda r: r[x_key])
            xs = [r[x_key] * scale for r in items]
            ys = [r["metrics"][dataset]["psnr"] for r in items]
            ax.plot(xs, ys, marker="*" if label.startswith("dense") else "o", ms=10 if label.startswith("dense") else 5, label=label)
    axes[0].set_xlabel("parameters, total (M)")
    axes[1].set_xlabel("GMACs per frame")
    for ax in axes:
        ax.set_ylabel("PSNR-Y (dB)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"TecoGAN FRNet pruning: quality vs size ({dataset})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def crop_montage(crops: Sequence[tuple[str, np.ndarray]], path: Path) -> None:
    """Lay labelled HxWx3 uint8 crops side by side (GT, bicubic, dense, pruned ...) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(crops)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, image) in zip(axes.flat, crops):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def write_results(rows: Sequence[dict], meta: dict, out_dir: Path) -> None:
    """results.json (rows + meta), results.csv (one line per row and dataset) and one Pareto plot per
    dataset; report.md is written by `run_bench` (grid.report_markdown)."""
    out_dir = Path(out_dir)
    atomic_write(out_dir / "results.json", json.dumps({"meta": meta, "rows": list(rows)}, indent=2).encode())
    flat = flat_rows(rows)
    if flat:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
        atomic_write(out_dir / "results.csv", buf.getvalue().encode())
    for dataset in sorted({d for row in rows for d in row["metrics"]}):
        pareto_plot(rows, dataset, out_dir / f"pareto_{dataset}.png")
