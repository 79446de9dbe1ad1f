"""`prunekit export CKPT --format onnx --out FILE`: a checkpoint folder as an ONNX file, verified.

The model is rebuilt from the checkpoint's spec, exported (see prunekit.export) and run with ONNX
Runtime on the example inputs (for models whose entry says so, at other input sizes too); the
command fails, writing nothing, when the largest difference from PyTorch exceeds --atol.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.commands.analyze import add_build_argument, load_checkpoint_model, parse_kwargs
from prunekit.errors import ConfigError
from prunekit.export import DEFAULT_ATOL, DEFAULT_OPSET, export_onnx


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint folder written by pk.save / prunekit prune")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="output format (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file (written atomically)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"largest allowed |ONNX Runtime - PyTorch| on the check inputs (default {DEFAULT_ATOL:g})")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--model-arg", "-m", action="append", default=[], metavar="KEY=VALUE",
                   help="with --build: keyword option for the dense model (repeatable)")
    add_build_argument(p)


def check_out(checkpoint: Path, out: Path) -> None:
    """Refuse an output that is the checkpoint folder or lies inside it (it would change the checkpoint)."""
    ckpt, target = checkpoint.resolve(), out.resolve()
    if target == ckpt or ckpt in target.parents:
        raise ConfigError(f"--out {out} is inside the checkpoint folder {checkpoint}; write the export elsewhere")
    if target.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as model.onnx")


def run(args: argparse.Namespace) -> int:
    ckpt, out = Path(args.checkpoint), Path(args.out)
    if not args.atol >= 0:
        raise ConfigError(f"--atol must be >= 0, got {args.atol}")
    check_out(ckpt, out)
    model, spec = load_checkpoint_model(args.checkpoint, args.build, parse_kwargs(args.model_arg) or None)
    report = export_onnx(model, spec, out, atol=args.atol, opset=args.opset)
    for shapes, diff in report.diffs:
        print(f"  inputs {shapes}: max |onnxruntime - pytorch| = {diff:.3g}")
    print(f"exported {ckpt} ({spec.build}) -> {out} (ONNX opset {report.opset}); "
          f"largest difference {report.max_abs_diff:.3g} <= atol {args.atol:g}")
    return 0
