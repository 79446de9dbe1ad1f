"""Results of an evaluation: per-frame values per sequence and the two dataset averages, as a
table, JSON and CSV.

Averages follow the official arithmetic: per-frame values are stored as float32 and a sequence's
sum is the float32 sum of its values; from there on everything is float64, as in the official script
(whose numpy promoted a float32 scalar combined with a Python number to float64): a sequence's mean
is its sum over its count; the "frame average" (the "total avg" that published tables use)
accumulates the sequences' sums and divides by the total count; the "sequence average" ("folder
avg") accumulates the sequences' means and divides by the number of sequences. (Keeping the means in
float32, as NumPy 2 would, moves PSNR means by up to about 2e-6 dB.)"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from prunekit.fileio import atomic_write
from tecogan_plugin.metrics.catalog import get as metric


def _label(name: str) -> str:
    return metric(name).label


@dataclass
class SequenceScores:
    """One sequence: float32 per-frame values per metric and the frame indices they belong to."""

    name: str
    n_frames: int
    values: dict[str, np.ndarray]
    frames: dict[str, list[int]]

    def sum(self, metric: str) -> float:
        """The float32 sum of the per-frame values (numpy's pairwise summation), as a float64."""
        return float(self.values[metric].sum())

    def count(self, metric: str) -> int:
        return int(self.values[metric].shape[0])

    def mean(self, metric: str) -> float | None:
        """float64 sum / count; None when the sequence has no value for this metric."""
        n = self.count(metric)
        return None if n == 0 else self.sum(metric) / n


@dataclass
class MetricsReport:
    """What `VideoMetrics.compute()` returns."""

    metrics: tuple[str, ...]
    sequences: list[SequenceScores]
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(m for m in self.metrics if m not in self.unavailable)

    def sequence(self, name: str) -> SequenceScores:
        for s in self.sequences:
            if s.name == name:
                return s
        raise KeyError(name)

    def count(self, metric: str) -> int:
        """Number of frame values of `metric` over all sequences."""
        return sum(s.count(metric) for s in self.sequences)

    def frame_avg(self, metric: str) -> float | None:
        """Sum over all frames of all sequences / total count ("total avg")."""
        total, n = 0.0, 0
        for s in self.sequences:
            total += s.sum(metric)
            n += s.count(metric)
        return None if n == 0 else total / n

    def sequence_avg(self, metric: str) -> float | None:
        """Mean of the per-sequence means ("folder avg"); sequences without a value (too short for
        a temporal metric) are left out rather than turning the average into NaN."""
        total, n = 0.0, 0
        for s in self.sequences:
            m = s.mean(metric)
            if m is not None:
                total += m
                n += 1
        return None if n == 0 else total / n

    def to_dict(self) -> dict:
        def num(v) -> float | None:
            return None if v is None else float(v)

        seqs = []
        for s in self.sequences:
            seqs.append(
                {
                    "name": s.name,
                    "frames": s.n_frames,
                    "mean": {m: num(s.mean(m)) for m in self.available},
                    "count": {m: s.count(m) for m in self.available},
                    "per_frame": {
                        m: {"frame": s.frames[m], "value": [float(v) for v in s.values[m]]} for m in self.available
                    },
                }
            )
        return {
            "metrics": list(self.metrics),
            "protocol": "TecoGAN official metrics (cut 2 frames per end, crop_8x8, Y PSNR/SSIM, LPIPS alex v0.1, "
            "Farneback tOF, tLP x100)",
            "frame_avg": {m: num(self.frame_avg(m)) for m in self.available},
            "sequence_avg": {m: num(self.sequence_avg(m)) for m in self.available},
            "count": {m: self.count(m) for m in self.available},
            "unavailable": dict(self.unavailable),
            "notes": list(self.notes),
            "sequences": seqs,
        }

    def to_json(self, path: str | os.PathLike) -> None:
        atomic_write(path, json.dumps(_finite(self.to_dict()), indent=2) + "\n")

    def to_csv(self, path: str | os.PathLike) -> None:
        """One row per sequence plus `frame_avg` and `sequence_avg` rows; a column per metric mean
        and per metric count."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        avail = self.available
        writer.writerow(["sequence", "frames", *[_label(m) for m in avail], *[f"n_{m}" for m in avail]])
        for s in self.sequences:
            writer.writerow([s.name, s.n_frames, *[_fmt_csv(s.mean(m)) for m in avail], *[s.count(m) for m in avail]])
        writer.writerow(["frame_avg", "", *[_fmt_csv(self.frame_avg(m)) for m in avail], *[self.count(m) for m in avail]])
        writer.writerow(["sequence_avg", "", *[_fmt_csv(self.sequence_avg(m)) for m in avail], *[len(self.sequences)] * len(avail)])
        atomic_write(path, buf.getvalue())

    def format_table(self) -> str:
        """A plain-text table: one row per sequence, then the frame and sequence averages."""
        avail = self.available
        header = ["sequence", "frames", *[_label(m) for m in avail]]
        rows = [[s.name, str(s.n_frames), *[_fmt(s.mean(m)) for m in avail]] for s in self.sequences]
        rows.append(["frame avg", str(sum(s.n_frames for s in self.sequences)), *[_fmt(self.frame_avg(m)) for m in avail]])
        rows.append(["sequence avg", "", *[_fmt(self.sequence_avg(m)) for m in avail]])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *rows]]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 2, "-" * len(lines[0]))
        counts = ", ".join(f"{_label(m)} {self.count(m)}" for m in avail)
        lines.append(f"frames scored: {counts}")
        by_reason: dict[str, list[str]] = {}  # LPIPS and tLP share one reason: say it once
        for m, reason in self.unavailable.items():
            by_reason.setdefault(reason, []).append(_label(m))
        for reason, names in by_reason.items():
            lines.append(f"{', '.join(names)}: unavailable - {reason}")
        lines.extend(self.notes)
        return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{float(v):.4f}"


def _fmt_csv(v) -> str:
    return "" if v is None else repr(float(v))


def _finite(obj):
    """JSON has no inf/NaN: write them as strings so the file stays standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
