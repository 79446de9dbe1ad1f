"""Write the benchmark's results: JSON and CSV of every number, a markdown table per dataset,
a Pareto plot (PSNR against parameters, FLOPs and measured latency) and a figure of zoomed crops
with their difference maps against the GT."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from prunekit.fileio import atomic_write
from tecogan_plugin.metrics import catalog


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def series_label(row: dict) -> str:
    """`dense`, `bicubic`, or `strategy (heal[, w0.5][, lat0.33][, subpixel k3]) nb=N`: legend and crop titles."""
    if row["strategy"] == "dense":
        return "dense" if row["finetune"] != "control" else "dense + fine-tune budget (control)"
    if row["strategy"] == "bicubic":
        return "bicubic"
    options = [row["finetune"]]
    if row.get("width"):
        options.append(f"w{row['width']:g}")
    if row.get("latency_target") is not None:
        options.append(f"lat{row['latency_target']:g}")
    if row.get("subpixel") is not None:
        options.append(f"subpixel k{row['subpixel']}")
    return f"{row['strategy']} ({', '.join(options)}) nb={row['blocks']}"


def _series_line(row: dict) -> str:
    """The label without the block count: one Pareto line per series."""
    return series_label(row).rsplit(" nb=", 1)[0]


def metric_columns(rows: Sequence[dict]) -> list[catalog.Metric]:
    """The official metrics (n/a where not measured), then any other registered metric the rows hold."""
    held = {m for row in rows for values in row["metrics"].values() for m in values}
    return [catalog.get(m) for m in catalog.names() if m in catalog.BUILTIN_NAMES or m in held]


def flat_rows(rows: Sequence[dict]) -> list[dict]:
    """One flat record per (row, dataset): the shape of the CSV file."""
    columns = metric_columns(rows)
    out = []
    for row in rows:
        base = {k: v for k, v in row.items() if k != "metrics"}
        for dataset, values in row["metrics"].items():
            out.append({**base, "dataset": dataset, **{m.name: values.get(m.name) for m in columns}})
    return out


def markdown_tables(rows: Sequence[dict], flops_size: str) -> str:
    """A table per dataset with the study's Table-3 columns (params, PSNR, LPIPS, tOF) plus ours;
    `width` is the fraction of channels removed per coupled group (0: blocks only), `latency target`
    the fraction of the dense latency a planned series keeps, `tail` SRNet's upsampler."""
    datasets = sorted({d for row in rows for d in row["metrics"]})
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
            m = row["metrics"].get(dataset)
            if m is None:
                continue
            target = row.get("latency_target")
            iqr = (f"{row['latency_p25_ms']:.1f}-{row['latency_p75_ms']:.1f}"
                   if row.get("latency_p25_ms") is not None else "n/a")
            parts.append(
                f"| {row['strategy']} | {row['finetune']} | {row['width']:g} | {_fmt(target, 2)} "
                f"| {row.get('tail', 'convT')} | {row['blocks']} "
                f"| {row['params_total']:,} | {row['params_removed_total_pct']:.1f}% "
                f"| {row['params_srnet']:,} | {row['params_removed_srnet_pct']:.1f}% "
                f"| {row['params_fnet']:,} | {row['params_removed_fnet_pct']:.1f}% "
                f"| {row['gmacs']:.2f} | {row['flops_removed_pct']:.1f}% | {_fmt(row.get('latency_ms'), 1)} "
                f"| {iqr} | {_fmt(row.get('latency_ratio'), 3)} "
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


def pareto_plot(rows: Sequence[dict], dataset: str, path: Path) -> None:
    """PSNR against parameters, FLOPs and measured latency, one line per series (reference rows as points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_spec = [("params_total", 1e-6, "parameters, total (M)"), ("gmacs", 1.0, "GMACs per frame"),
                 ("latency_ms", 1.0, "latency, fast path (ms)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax in axes:  # 20 distinct colours: a grid of many series must not repeat one
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    series: dict[str, list[dict]] = {}
    for row in rows:
        if dataset in row["metrics"] and row["metrics"][dataset].get("psnr") is not None:
            series.setdefault(_series_line(row), []).append(row)
    for label, items in sorted(series.items()):
        reference = label.startswith("dense") or label == "bicubic"
        for ax, (x_key, scale, _) in zip(axes, axes_spec):
            points = sorted((r for r in items if r.get(x_key) is not None), key=lambda r: r[x_key])
            if points:
                ax.plot([r[x_key] * scale for r in points], [r["metrics"][dataset]["psnr"] for r in points],
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


def write_results(rows: Sequence[dict], meta: dict, out_dir: Path) -> None:
    """results.json (rows + meta), results.csv (one line per row and dataset) and one Pareto plot per
    dataset; report.md is written by `run_bench` (grid.report_markdown)."""
    out_dir = Path(out_dir)
    atomic_write(out_dir / "results.json", json.dumps({"meta": meta, "rows": list(rows)}, indent=2).encode())
    flat = flat_rows(rows)
    if flat:
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for row in flat for k in row))  # some rows carry extra fields (tp_ratio)
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
        atomic_write(out_dir / "results.csv", buf.getvalue().encode())
    for dataset in sorted({d for row in rows for d in row["metrics"]}):
        pareto_plot(rows, dataset, out_dir / f"pareto_{dataset}.png")
