"""`prunekit upscale INPUT --model CHECKPOINT --out OUTPUT`: a user's own video through a (pruned) FRNet.

SIGINT and SIGTERM (as sent by Ctrl-C, `timeout` or a job scheduler) stop it cleanly: the frames done
so far become a finished, playable output (or nothing, when no frame was done), and it says which.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from prunekit.errors import ConfigError, PrunekitError
from tecogan_plugin.upscale.engine import DEFAULT_OVERLAP, load_generator, resolve_device, upscale_frames
from tecogan_plugin.upscale.video import DEFAULT_CRF, DEFAULT_PRESET, FrameSink, FrameSource, open_sink, open_source

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="video file (mp4/avi/mkv/...) or folder of PNG frames")
    p.add_argument("--model", required=True, metavar="CHECKPOINT",
                   help="prunekit checkpoint folder (dense or pruned), TecoGAN-PyTorch generator .pth, "
                   "or an FRNet step exported by `prunekit export` (.onnx)")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                   help="auto (default): onnxruntime for a .onnx model, else torch")
    p.add_argument("--out", required=True, metavar="OUTPUT",
                   help="video file (by suffix: .mp4 .avi .mkv .mov .m4v .webm) or folder for PNG frames; "
                        "a folder from a stopped run of the same command is continued")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="tile core size in LR px; default: whole frames when they fit in free memory, "
                        "else the largest tile that fits; 0: never tile")
    p.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, metavar="N",
                   help=f"LR px of context around each tile, rounded up to a multiple of 8 (default {DEFAULT_OVERLAP})")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="exact fast inference rewrites (default on)")
    p.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--warmup", type=int, default=5, metavar="N",
                   help="TecoGAN reflect warm-up frames run before frame 0, outputs dropped (default 5; 0: off)")
    p.add_argument("--fps", type=float, default=None,
                   help="output frame rate (video output; default: the input's frame times, and its audio is copied)")
    p.add_argument("--codec", default=None, metavar="NAME",
                   help="video encoder (libx264, libx265, libvpx-vp9, mpeg4, mjpeg, ffv1, ...; default: libx264 "
                        "for .mp4/.mkv/.mov, mjpeg for .avi, libvpx-vp9 for .webm)")
    p.add_argument("--crf", type=int, default=None, metavar="N",
                   help=f"constant quality for libx264/libx265/libvpx (lower is better; default {DEFAULT_CRF})")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help=f"libx264/libx265 speed preset, ultrafast..veryslow (default {DEFAULT_PRESET})")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept a truncated or corrupt input video: upscale the frames that decode, with a warning")


class _FirstShape:
    """Passes frames through and remembers the first frame's shape (the input resolution for the summary)."""

    shape: tuple[int, ...] | None = None

    def watch(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            if self.shape is None:
                self.shape = frame.shape
            yield frame


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, like KeyboardInterrupt, so no `except Exception` eats it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopSignals:
    """While active, SIGINT/SIGTERM raise Stopped in the main thread, except inside `deferred()` blocks
    (a frame being muxed), which finish first; once `closing`, further signals are ignored so that the
    output can be finished."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.defer = False
        self.closing = False

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.closing:
            return
        if self.defer:
            self.pending = signum
            return
        raise Stopped(signum)

    @contextmanager
    def installed(self) -> Iterator["_StopSignals"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.defer = True
        try:
            yield
        finally:
            self.defer = False
        if self.pending is not None:
            raise Stopped(self.pending)


def _job(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """What a frame folder's frames depend on; a folder is continued only by the same job."""

    def identity(path: str) -> dict[str, Any]:
        p = Path(path).resolve()
        return {"path": str(p), "mtime_ns": p.stat().st_mtime_ns}

    return {
        "input": identity(args.input), "model": identity(args.model), "device": device.type,
        "tile": args.tile, "tile_overlap": args.tile_overlap, "fast": args.fast, "half": args.half, "warmup": args.warmup,
    }


def run(args: argparse.Namespace) -> int:
    from prunekit.fileio import check_not_input

    check_not_input(args.out, [args.input, args.model], what="--out")  # frames written into the input are lost
    source = open_source(args.input, allow_partial=args.allow_partial)
    device = resolve_device(args.device)
    onnx = args.backend == "onnxruntime" or (args.backend == "auto" and str(args.model).lower().endswith(".onnx"))
    if onnx:
        from tecogan_plugin.upscale.onnx_backend import OnnxStep

        if args.half:
            raise ConfigError("--half is a PyTorch fast-path option; an ONNX step runs in the precision it was exported in")
        model, args.fast = OnnxStep(args.model, device), False  # the rewrites of --fast are PyTorch-only
    else:
        model = load_generator(args.model)
    first = _FirstShape()
    start = time.perf_counter()
    out_shape = None
    # options are checked here, before the output is created
    stream = upscale_frames(model, first.watch(iter(source)), tile=args.tile, overlap=args.tile_overlap,
                            device=device, fast=args.fast, half=args.half, warmup=args.warmup)
    signals = _StopSignals()
    sink: FrameSink | None = None
    with signals.installed():
        try:
            sink = open_sink(args.out, source, fps=args.fps, codec=args.codec, crf=args.crf, preset=args.preset,
                             job=_job(args, device))
            if source.count is not None and sink.written >= source.count:
                print(f"all {sink.written} frame(s) are already in {sink.path}; nothing to do")
                return 0
            if sink.skip:
                print(f"continuing {sink.path}: {sink.skip} complete frame(s) found; recomputing them without "
                      "writing them, to rebuild the recurrent state", file=sys.stderr)
            with tqdm(total=source.count, unit="frame", desc="upscale", dynamic_ncols=True) as bar:
                for hr in stream:
                    with signals.deferred():
                        sink.write(hr)
                    out_shape = hr.shape
                    bar.update(1)
        except Stopped as stop:
            _finish(signals, sink, complete=False)
            print(f"prunekit upscale: {stop}: {_stopped(sink, source, args.out)}", file=sys.stderr)
            return 128 + stop.signum
        except PrunekitError as exc:
            _finish(signals, sink, complete=False)
            raise type(exc)(f"{exc} [{_written(sink)}]" if sink is not None else str(exc)) from exc
        except BaseException:
            _finish(signals, sink, complete=False)
            raise
        _finish(signals, sink, complete=True)
    wall = time.perf_counter() - start
    print(_summary(sink, first.shape, out_shape, wall, device, args))  # type: ignore[arg-type]
    return 0


def _finish(signals: _StopSignals, sink: FrameSink | None, complete: bool) -> None:
    """Close the output with further stop signals ignored, so that it is finished, not half-written."""
    signals.closing = True
    if sink is not None:
        sink.close(complete=complete)


def _written(sink: FrameSink) -> str:
    return f"{sink.written} frame(s) already written to {sink.path} are complete"


def _stopped(sink: FrameSink | None, source: FrameSource, out: str) -> str:
    done = sink.written if sink is not None else 0
    said = f"stopped after {done}" + (f" of {source.count}" if source.count is not None else "") + " frames; "
    if sink is None or not sink.path.exists():
        return said + f"nothing written ({out} was not created)"
    if sink.path.is_dir():
        return said + f"the {done} complete frames are in {sink.path}{os.sep} (run the same command again to continue)"
    return said + f"wrote a playable partial video {sink.path}"


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
    if args.backend == "onnxruntime" or str(args.model).lower().endswith(".onnx"):
        mode = "onnxruntime"
    return (
        f"upscaled {n} frame(s) {res(in_shape)} -> {res(out_shape)} in {wall:.1f} s "
        f"({n / wall if wall > 0 else 0.0:.2f} frames/s) on {device} [{mode}] -> {sink.path}"
    )

