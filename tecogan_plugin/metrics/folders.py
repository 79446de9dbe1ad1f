"""`evaluate_folders`: score per-sequence folders of PNG frames (outputs vs targets)."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from prunekit.errors import DataError
from tecogan_plugin.data.frames import list_frames, read_frame
from tecogan_plugin.metrics.report import MetricsReport
from tecogan_plugin.metrics.video_metrics import VideoMetrics


def _read_all(paths: list[Path]) -> np.ndarray:
    # PNG decoding releases the GIL, so a few threads overlap it with each other.
    with ThreadPoolExecutor(4) as ex:
        frames = list(ex.map(read_frame, paths))
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise DataError(f"{paths[0].parent}: frames have different sizes {sorted(sizes)}")
    return np.stack(frames)


def require_regular(paths: list[Path]) -> None:
    """DataError for a frame that is not a regular file: opening a FIFO named like a frame would wait
    forever for a writer, and a device or socket is no image either."""
    for p in paths:
        try:
            mode = os.stat(p).st_mode
        except OSError as exc:
            raise DataError(f"{p}: cannot read ({exc.strerror or exc})") from None
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise DataError(f"{p}: is {kind}, not a PNG file; eval reads only regular files (remove or rename it)")


def display_name(name: str) -> str:
    """A sequence folder name as printable UTF-8: bytes that are not UTF-8 (kept by Python as surrogate
    escapes) are shown as \\xNN, so tables, CSV and JSON can be written; the folder is still read by its name."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def sequence_names(gt_root: str | os.PathLike) -> list[str]:
    """The sequence folders under `gt_root`, sorted by name."""
    root = Path(gt_root)
    if not root.is_dir():
        raise DataError(f"{root}: target folder does not exist")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise DataError(f"{root}: no sequence sub-folders")
    return names


def evaluate_folders(
    pred_root: str | os.PathLike, gt_root: str | os.PathLike, sequences: list[str] | None = None, **opts
) -> MetricsReport:
    """Score `pred_root/<seq>/*.png` against `gt_root/<seq>/*.png` for each sequence (default: every
    sub-folder of `gt_root`). Frames are listed by the official rule. `opts` go to VideoMetrics."""
    pred_root, gt_root = Path(pred_root), Path(gt_root)
    if not pred_root.is_dir():
        raise DataError(f"{pred_root}: output folder does not exist")
    names = list(sequences) if sequences else sequence_names(gt_root)
    missing = [n for n in names if not (pred_root / n).is_dir()]
    if missing and not sequences:
        present = [n for n in names if n not in missing]
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            f"{pred_root}: no output folder for {len(missing)} of the {len(names)} sequences in {gt_root} ({shown}); "
            + (f"to score only those present, pass --sequences {','.join(present)}" if present else
               "expected one sub-folder of PNG frames per sequence, named as in the ground-truth folder")
        )
    with VideoMetrics(**opts) as vm:
        for name in names:
            gt_paths = list_frames(gt_root / name)
            pred_paths = list_frames(pred_root / name)
            if len(gt_paths) != len(pred_paths):
                raise DataError(
                    f"sequence {name!r}: {pred_root / name} has {len(pred_paths)} frames but "
                    f"{gt_root / name} has {len(gt_paths)}"
                )
            if not gt_paths:
                raise DataError(f"{gt_root / name}: no .png frames")
            require_regular(pred_paths + gt_paths)
            vm.update(display_name(name), _read_all(pred_paths), _read_all(gt_paths))
        return vm.compute()
