"""`prunekit upscale INPUT --model CHECKPOINT --out OUTPUT`: a user's own video through a (pruned) FRNet."""

from __future__ import annotations

import argparse
import time
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from prunekit.cli import Command
from prunekit.errors import PrunekitError
from tecogan_plugin.upscale.engine import DEFAULT_OVERLAP, load_generator, resolve_device, upscale_frames
from tecogan_plugin.upscale.video import FrameSink, open_sink, open_source

HELP = "Upscale a video file or a folder of PNG frames with a TecoGAN generator (no ground truth needed)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="video file (mp4/avi/mkv/...) or folder of PNG frames")
    p.add_argument("--model", required=True, metavar="CHECKPOINT",
                   help="prunekit checkpoint folder (dense or pruned) or TecoGAN-PyTorch generator .pth")
    p.add_argument("--out", required=True, metavar="OUTPUT",
                   help="video file (by suffix: .mp4 .avi .mkv .mov .m4v .webm) or folder for PNG frames")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="tile core size in LR px; default: whole frames on CPU, fitted to free memory on CUDA; 0: never tile")
    p.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, metavar="N",
                   help=f"LR px of context around each tile, rounded up to a multiple of 8 (default {DEFAULT_OVERLAP})")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="exact fast inference rewrites (default on)")
    p.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--warmup", type=int, default=5, metavar="N",
                   help="TecoGAN reflect warm-up frames run before frame 0, outputs dropped (default 5; 0: off)")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (video output; default: the input's)")
    p.add_argument("--codec", default=None, metavar="FOURCC",
                   help="output codec (video output; default: the input's when OpenCV can write it)")


class _FirstShape:
    """Passes frames through and remembers the first frame's shape (the input resolution for the summary)."""

    shape: tuple[int, ...] | None = None

    def watch(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            if self.shape is None:
                self.shape = frame.shape
            yield frame


def run(args: argparse.Namespace) -> int:
    from prunekit.fileio import check_not_input

    check_not_input(args.out, [args.input, args.model], what="--out")  # frames written into the input are lost
    source = open_source(args.input)
    model = load_generator(args.model)
    device = resolve_device(args.device)
    first = _FirstShape()
    start = time.perf_counter()
    out_shape = None
    # options are checked here, before the output is created
    stream = upscale_frames(model, first.watch(iter(source)), tile=args.tile, overlap=args.tile_overlap,
                            device=device, fast=args.fast, half=args.half, warmup=args.warmup)
    with open_sink(args.out, source, fps=args.fps, codec=args.codec) as sink:
        with tqdm(total=source.count, unit="frame", desc="upscale", dynamic_ncols=True) as bar:
            try:
                for hr in stream:
                    sink.write(hr)
                    out_shape = hr.shape
                    bar.update(1)
            except PrunekitError as exc:
                raise type(exc)(f"{exc} [{_written(sink)}]") from exc
    wall = time.perf_counter() - start
    print(_summary(sink, first.shape, out_shape, wall, device, args))
    return 0


def _written(sink: FrameSink) -> str:
    return f"{sink.written} frame(s) already written to {sink.path} are complete"


def _summary(
    sink: FrameSink,
    in_shape: tuple[int, ...] | None,
    out_shape: tuple[int, ...] | None,
    wall: float,
    device: torch.device,
    args: argparse.Namespace,
) -> str:
    def res(shape: tuple[int, ...] | None) -> str:
        return f"{shape[1]}x{shape[0]}" if shape is not None else "-"

    n = sink.written
    mode = ("fast" if args.fast else "plain") + (" fp16" if args.half else "")
    return (
        f"upscaled {n} frame(s) {res(in_shape)} -> {res(out_shape)} in {wall:.1f} s "
        f"({n / wall if wall > 0 else 0.0:.2f} frames/s) on {device} [{mode}] -> {sink.path}"
    )


UPSCALE = Command("upscale", HELP, add_arguments, run)
