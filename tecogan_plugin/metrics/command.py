"""`prunekit eval --pred DIR --gt DIR`: official-protocol metrics for folders of frames."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.errors import OutputError
from prunekit.fileio import check_output
from tecogan_plugin.metrics import catalog
from tecogan_plugin.metrics.folders import evaluate_folders


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="folder of output sequences (one sub-folder of PNGs each)")
    p.add_argument("--gt", required=True, help="folder of target sequences, same sub-folder names")
    p.add_argument("--sequences", help="comma-separated sequence names (default: every sub-folder of --gt)")
    p.add_argument("--metrics", help=f"comma-separated subset of {','.join(catalog.names())} (default: all)")
    p.add_argument("--lpips-weights", help="torchvision alexnet-owt-7be5be79.pth (file or folder); default: torch hub cache")
    p.add_argument("--require-lpips", action="store_true", help="fail if the LPIPS backbone weights are missing")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--workers", type=int, default=2, help="worker processes for tOF/PSNR/SSIM (0 = in-process)")
    p.add_argument("--json", help="write the full report (per-frame values) as JSON here (a new file, or an "
                   "earlier report; never inside --pred/--gt)")
    p.add_argument("--csv", help="write per-sequence means and both averages as CSV here (a new file, or an "
                   "earlier report; never inside --pred/--gt)")


def _head(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(4096).decode("utf-8", "replace")


def _is_json_report(path: Path) -> bool:
    """An earlier `--json` report (so a rerun may replace it; any other existing file is kept)."""
    return '"protocol": "TecoGAN official metrics' in _head(path)


def _is_csv_report(path: Path) -> bool:
    """An earlier `--csv` report."""
    return _head(path).startswith("sequence,frames,")


def report_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """--json and --csv checked before any scoring: not inside the frame folders or the weights, not a
    folder, and an existing file only when it is an earlier report of ours."""
    inputs = [args.pred, args.gt, args.lpips_weights]
    out = []
    for flag, path, marker in (("--json", args.json, _is_json_report), ("--csv", args.csv, _is_csv_report)):
        out.append(None if not path else check_output(path, inputs, kind="file", allow_existing=True,
                                                      marker=marker, what=flag))
    if out[0] is not None and out[0] == out[1]:
        raise OutputError(f"--json and --csv name the same file {args.json}; give two file names")
    return out[0], out[1]


def run(args: argparse.Namespace) -> int:
    json_path, csv_path = report_paths(args)
    report = evaluate_folders(
        args.pred,
        args.gt,
        sequences=[s for s in args.sequences.split(",") if s] if args.sequences else None,
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else None,
        lpips_weights=args.lpips_weights,
        require_lpips=args.require_lpips,
        device=args.device,
        tof_workers=args.workers,
    )
    print(report.format_table())
    if json_path is not None:
        report.to_json(json_path)
        print(f"wrote {args.json}")
    if csv_path is not None:
        report.to_csv(csv_path)
        print(f"wrote {args.csv}")
    return 0
