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
from prunekit.export import BUILD_KEY, DEFAULT_ATOL, DEFAULT_OPSET, export_onnx
from prunekit.fileio import check_output


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint folder written by pk.save / prunekit prune")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="output format (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file (written atomically); new, or with "
                   "--overwrite an earlier export")
    p.add_argument("--overwrite", action="store_true", help="replace an ONNX file an earlier `prunekit export` wrote")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"largest allowed |ONNX Runtime - PyTorch| on the check inputs (default {DEFAULT_ATOL:g})")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--model-arg", "-m", action="append", default=[], metavar="KEY=VALUE",
                   help="with --build: keyword option for the dense model (repeatable)")
    add_build_argument(p)


def written_by_export(path: Path) -> bool:
    """True for an ONNX file carrying the metadata `prunekit export` writes (what --overwrite may replace)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001  protobuf's DecodeError and friends: not an ONNX file, so not ours
        return False
    return any(p.key == BUILD_KEY for p in model.metadata_props)


def run(args: argparse.Namespace) -> int:
    ckpt, out = Path(args.checkpoint), Path(args.out)
    if not args.atol >= 0:
        raise ConfigError(f"--atol must be >= 0, got {args.atol}")
    check_output(out, [ckpt], kind="file", allow_existing=args.overwrite, marker=written_by_export, what="--out")
    model, spec = load_checkpoint_model(args.checkpoint, args.build, parse_kwargs(args.model_arg) or None)
    report = export_onnx(model, spec, out, atol=args.atol, opset=args.opset)
    for shapes, diff in report.diffs:
        print(f"  inputs {shapes}: max |onnxruntime - pytorch| = {diff:.3g}")
    print(f"exported {ckpt} ({spec.build}) -> {out} (ONNX opset {report.opset}); "
          f"largest difference {report.max_abs_diff:.3g} <= atol {args.atol:g}")
    return 0
