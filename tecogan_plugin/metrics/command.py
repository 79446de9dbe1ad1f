"""`prunekit eval --pred DIR --gt DIR`: official-protocol metrics for folders of frames."""

from __future__ import annotations

import argparse

from tecogan_plugin.metrics.folders import evaluate_folders


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="folder of output sequences (one sub-folder of PNGs each)")
    p.add_argument("--gt", required=True, help="folder of target sequences, same sub-folder names")
    p.add_argument("--sequences", help="comma-separated sequence names (default: every sub-folder of --gt)")
    p.add_argument("--metrics", default="psnr,ssim,lpips,tof,tlp", help="comma-separated subset (default: all)")
    p.add_argument("--lpips-weights", help="torchvision alexnet-owt-7be5be79.pth (file or folder); default: torch hub cache")
    p.add_argument("--require-lpips", action="store_true", help="fail if the LPIPS backbone weights are missing")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--workers", type=int, default=2, help="worker processes for tOF/PSNR/SSIM (0 = in-process)")
    p.add_argument("--json", help="write the full report (per-frame values) as JSON here")
    p.add_argument("--csv", help="write per-sequence means and both averages as CSV here")


def run(args: argparse.Namespace) -> int:
    report = evaluate_folders(
        args.pred,
        args.gt,
        sequences=[s for s in args.sequences.split(",") if s] if args.sequences else None,
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        lpips_weights=args.lpips_weights,
        require_lpips=args.require_lpips,
        device=args.device,
        tof_workers=args.workers,
    )
    print(report.format_table())
    if args.json:
        report.to_json(args.json)
        print(f"wrote {args.json}")
    if args.csv:
        report.to_csv(args.csv)
        print(f"wrote {args.csv}")
    return 0
