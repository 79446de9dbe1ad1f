"""`prunekit run CONFIG [--resume] [--out DIR]`: run a train -> prune -> fine-tune schedule."""

from __future__ import annotations

import argparse



def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (.yaml, .yml, .toml or .json)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    p.add_argument("--out", metavar="DIR", help="run folder (overrides out_dir in the config)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_command(args: argparse.Namespace) -> int:
    from prunekit.schedule import run

    import os

    result = run(args.config, resume=args.resume, progress=not args.no_progress, out_dir=args.out)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()))
        print(f"run finished: {result.run_dir / 'final'}" + (f" ({shown})" if shown else ""))
    return 0
