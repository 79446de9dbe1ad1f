"""Metrics of a run: a long-format CSV in the run folder (record, step, stage, phase, iteration, name,
value; `record` numbers the log calls), TensorBoard when
installed, and a tqdm bar (loss, rate, ETA) shown only on a terminal unless disabled."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from prunekit.fileio import atomic_write

FIELDS = ["record", "global_step", "stage", "phase", "iteration", "name", "value"]


class MetricsLog:
    """Appends rows to `metrics.csv` and keeps them (grouped per log call) as `history`. On resume the
    file is cut back to the `resume_rows` rows a checkpoint recorded, so it matches an uninterrupted run."""

    def __init__(self, run_dir: Path, enabled: bool, resume_rows: int | None = None) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.csv"
        self.history: list[dict[str, Any]] = []
        self.rows = 0
        self._records = 0
        self._tb = None
        if not enabled:
            return
        kept: list[dict[str, Any]] = []
        if resume_rows is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                kept = list(csv.DictReader(f))[:resume_rows]
        self._rewrite(kept)
        self.rows = len(kept)
        self.history = _group(kept)
        self._records = int(kept[-1]["record"]) + 1 if kept else 0
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:  # tensorboard is optional
            self._tb = None

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
        atomic_write(self.path, buf.getvalue())

    def log(self, global_step: int, stage: str, phase: str, iteration: int, values: dict[str, float]) -> None:
        row = {"global_step": global_step, "stage": stage, "phase": phase, "iteration": iteration, **values}
        self.history.append(row)
        if not self.enabled:
            return
        record = self._records
        self._records += 1
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            for name, value in values.items():
                w.writerow({"record": record, "global_step": global_step, "stage": stage, "phase": phase, "iteration": iteration,
                            "name": name, "value": repr(float(value))})
                self.rows += 1
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{phase}/{name}", value, global_step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The history recorded in `run_dir/metrics.csv` (empty when there is none), read only."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return _group(list(csv.DictReader(f)))


def _group(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Long-format CSV rows back into one dict per log call (as `MetricsLog.log` builds them)."""
    out: list[dict[str, Any]] = []
    last = None
    for r in rows:
        if r["record"] != last:
            last = r["record"]
            out.append({"global_step": int(r["global_step"]), "stage": r["stage"], "phase": r["phase"],
                        "iteration": int(r["iteration"])})
        out[-1][r["name"]] = float(r["value"])
    return out


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0) -> tqdm:
    """A bar that is silent off a terminal (logs, CI) or when disabled."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not (enabled and sys.stderr.isatty()),
                dynamic_ncols=True, leave=False)
