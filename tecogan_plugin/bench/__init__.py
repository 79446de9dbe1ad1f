"""The bundled TecoGAN pruning benchmark: `prunekit bench tecogan [--preset quick|paper]`."""

from __future__ import annotations

import argparse

from prunekit.errors import ConfigError


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", choices=["tecogan"], help="which benchmark to run")
    p.add_argument("--preset", default="quick", help="quick (default: built-in data, CPU, minutes), paper, or smoke (a pipeline check)")
    p.add_argument("--out", default=None, help="output folder (default: runs/bench-tecogan-<preset>): new, empty, or "
                   "an earlier benchmark's, which is continued")
    p.add_argument("--data-root", default=None, help="folder holding REDS/, Vid4/, ToS3/ (paper preset)")
    p.add_argument("--checkpoint", default=None,
                   help="dense model used instead of training: a published TecoGAN-PyTorch generator (.pth) "
                        "or a dense prunekit checkpoint folder")
    p.add_argument("--series", default=None,
                   help="comma-separated STRATEGY:HEAL[:wFRACTION][:latFRACTION[:sensitivity][:floorFRACTION]"
                        "[:uniform]][:subpixel[K]][:refit] "
                        "series, HEAL in "
                        "none|plain|distill; wFRACTION also removes that fraction of every prunable channel group "
                        "(FNet included); latFRACTION: one model keeping that fraction of the dense fast-path "
                        "latency (blocks and widths planned on measured latency; --blocks does not apply; "
                        "sensitivity: moves priced by measured output damage; floorFRACTION: no channel group "
                        "cut below that fraction of its width; uniform: every block kept, all groups cut by one "
                        "fraction); refit: the pruned layers refit to the dense model by least squares before "
                        "healing; "
                        "subpixel[K]: SRNet's ConvTranspose tail replaced by a fitted sub-pixel head (kernel K, "
                        "default 3); tp:HEAL:latFRACTION[:refit] is the Torch-Pruning baseline at the same measured "
                        "latency. E.g. block_influence:distill:lat0.33:subpixel,tp:distill:lat0.33; default: "
                        "the preset's")
    p.add_argument("--blocks", default=None, help="comma-separated block counts to keep (default 9,7,5,3,1)")
    p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    p.add_argument("--lpips-weights", default=None, help="torchvision AlexNet ImageNet weights for LPIPS/tLP")
    p.add_argument("--fresh", action="store_true", help="delete an earlier run in --out instead of continuing it")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def _run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from tecogan_plugin.bench.grid import run_bench
    from tecogan_plugin.bench.presets import Series, get_preset

    preset = get_preset(args.preset)
    update: dict = {}
    if args.series:
        update["series"] = [Series.parse(s.strip()) for s in args.series.split(",") if s.strip()]
    if args.blocks:
        try:
            update["blocks"] = [int(b) for b in args.blocks.split(",")]
        except ValueError:
            raise ConfigError(f"--blocks: expected comma-separated integers, got {args.blocks!r}") from None
        if any(b < 1 or b >= preset.task["nb"] for b in update["blocks"]):
            raise ConfigError(f"--blocks: each count must be in 1..{preset.task['nb'] - 1}, got {args.blocks!r}")
    if args.seed is not None:
        update["seed"] = args.seed
    preset = preset.model_copy(update=update)
    if args.checkpoint and Path(args.checkpoint).is_dir():
        from prunekit.checkpoint import PLAN_FILE, read_plan

        if not (Path(args.checkpoint) / PLAN_FILE).is_file():
            raise ConfigError(f"--checkpoint: {args.checkpoint} is a folder without {PLAN_FILE}, not a prunekit checkpoint")
        saved = read_plan(Path(args.checkpoint) / PLAN_FILE)
        if saved.removed or saved.channels:
            raise ConfigError(f"--checkpoint: {args.checkpoint} holds a pruned model; the benchmark prunes a dense one")
    elif args.checkpoint and not Path(args.checkpoint).is_file():
        raise ConfigError(f"--checkpoint: {args.checkpoint} is neither a file nor a checkpoint folder")
    from prunekit.fileio import check_output

    # a new or empty folder, or an earlier benchmark (settings.json) to continue or, with --fresh, replace
    out = Path(args.out or f"runs/bench-tecogan-{preset.name}")
    check_output(out, [args.data_root, args.checkpoint, args.lpips_weights], kind="folder", allow_existing=True,
                 marker="settings.json", what="--out")
    if args.fresh and out.exists():
        shutil.rmtree(out)
    run_bench(preset, out, data_root=args.data_root, checkpoint=args.checkpoint,
              lpips_weights=args.lpips_weights, progress=not args.no_progress)
    print((out / "report.md").read_text())
    return 0
