"""Where frames come from and go to: a video file (OpenCV) or a folder of PNG frames.

Frames travel as HxWx3 RGB uint8 arrays, one at a time, so a whole video is never held in memory.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from prunekit.errors import ConfigError, DataError
from tecogan_plugin.data.frames import list_frames, read_frame, write_frame

__all__ = ["VIDEO_SUFFIXES", "FrameSource", "open_source", "FrameSink", "PngFolderSink", "VideoSink", "open_sink"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
# codecs this OpenCV build can write into each container; used when the input's codec cannot be written
# (OpenCV wheels cannot encode H.264, the usual codec of .mp4 inputs)
DEFAULT_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".webm": "VP80"}
DEFAULT_FPS = 25.0


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def fourcc_to_str(code: float) -> str | None:
    """OpenCV's numeric FOURCC property as 4 characters (None when the backend does not know it)."""
    value = int(code) & 0xFFFFFFFF
    if value == 0 or value == 0xFFFFFFFF:
        return None
    text = value.to_bytes(4, "little").decode("latin-1")
    return text if text.isprintable() else None


@dataclass
class FrameSource:
    """An input clip. Iterating yields RGB uint8 frames; `names` are the input file names for a folder."""

    path: Path
    kind: str  # "video" or "frames"
    count: int | None
    fps: float | None
    fourcc: str | None
    size: tuple[int, int] | None  # (width, height)
    names: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._iter_video() if self.kind == "video" else self._iter_frames()

    def _iter_frames(self) -> Iterator[np.ndarray]:
        first: tuple[str, tuple[int, ...]] | None = None
        for name in self.names:
            frame = read_frame(self.path / name)
            if first is None:
                first = (name, frame.shape)
            elif frame.shape != first[1]:
                raise DataError(
                    f"{self.path / name}: frame is {frame.shape[1]}x{frame.shape[0]}, but {first[0]} is "
                    f"{first[1][1]}x{first[1][0]}; all frames of a sequence must have one size"
                )
            yield frame

    def _iter_video(self) -> Iterator[np.ndarray]:
        cap = _open_capture(self.path)
        decoded = 0
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                decoded += 1
                yield _bgr_to_rgb(bgr, self.path, decoded - 1)
        finally:
            cap.release()
        if decoded == 0:
            raise DataError(f"{self.path}: no frame could be decoded from this video")
        if self.count and decoded < self.count:
            warnings.warn(
                f"{self.path}: decoding stopped after {decoded} of the {self.count} frames the container reports",
                stacklevel=2,
            )


def _bgr_to_rgb(img: np.ndarray, path: Path, index: int) -> np.ndarray:
    if img.dtype != np.uint8:
        raise DataError(f"{path}: frame {index} has pixel type {img.dtype}; only 8-bit video is supported")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, 2::-1])


def _open_capture(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DataError(f"{path}: OpenCV cannot open this file as a video")
    return cap


def open_source(path: str | os.PathLike) -> FrameSource:
    """A folder of PNG frames (ordered as the official metrics order them) or a video file."""
    path = Path(path)
    if path.is_dir():
        frames = list_frames(path)
        if not frames:
            raise DataError(f"{path}: folder holds no .png frames")
        return FrameSource(path, "frames", len(frames), None, None, None, [p.name for p in frames])
    if not path.exists():
        raise DataError(f"{path}: input does not exist (expected a video file or a folder of PNG frames)")
    cap = _open_capture(path)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        fourcc = fourcc_to_str(cap.get(cv2.CAP_PROP_FOURCC))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    return FrameSource(path, "video", count if count > 0 else None, fps if fps > 0 else None, fourcc, size)


class FrameSink:
    """Receives upscaled frames in order; `close` finishes the output (also after an error)."""

    path: Path
    written: int = 0

    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to finish by default."""

    def __enter__(self) -> "FrameSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PngFolderSink(FrameSink):
    """One PNG per frame, each written atomically, so a stopped run leaves only complete frames."""

    def __init__(self, path: Path, names: list[str] | None = None) -> None:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path}: exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.names = names
        self.written = 0

    def write(self, frame: np.ndarray) -> None:
        if self.names is not None and self.written < len(self.names):
            name = Path(self.names[self.written]).with_suffix(".png").name
        else:
            name = f"{self.written:06d}.png"
        write_frame(self.path / name, frame)
        self.written += 1


class VideoSink(FrameSink):
    """An OpenCV VideoWriter opened at the first frame (its size is known only then).

    It writes to a hidden temporary file next to `path` and moves it into place on `close`, so the
    output path only ever holds a finished, playable container (after an error: the frames written so far).
    """

    def __init__(self, path: Path, fps: float, fourcc: str | None, fourcc_given: bool = False) -> None:
        if fourcc is not None and len(fourcc) != 4:
            raise ConfigError(f"--codec must be a 4-character FOURCC such as MJPG or mp4v, got {fourcc!r}")
        if fps <= 0:
            raise ConfigError(f"--fps must be positive, got {fps}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fps = fps
        self.fourcc = fourcc
        self.fourcc_given = fourcc_given
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.written = 0

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        fallback = DEFAULT_CODECS.get(self.path.suffix.lower(), "MJPG")
        candidates = [c for c in (self.fourcc, fallback) if c]
        for i, code in enumerate(dict.fromkeys(candidates)):
            writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*code), self.fps, (width, height))
            if writer.isOpened():
                if i > 0:
                    warnings.warn(
                        f"{self.path}: OpenCV cannot write codec {self.fourcc!r} into {self.path.suffix}; "
                        f"wrote {code!r} instead",
                        stacklevel=3,
                    )
                self.fourcc = code
                return writer
            writer.release()
            if self.fourcc_given and code == self.fourcc:
                raise ConfigError(f"--codec {code!r}: OpenCV cannot write it into a {self.path.suffix} file")
        self.tmp.unlink(missing_ok=True)
        raise ConfigError(f"{self.path}: OpenCV cannot write a {self.path.suffix} video with codecs {candidates}")

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            self.writer = self._open(frame.shape[1], frame.shape[0])
        self.writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        self.written += 1

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        os.replace(self.tmp, self.path)


def open_sink(
    path: str | os.PathLike, source: FrameSource, *, fps: float | None = None, codec: str | None = None
) -> FrameSink:
    """A video file when `path` has a video suffix, else a folder of PNGs (named after the input frames
    when the input is a folder). Frame rate and codec come from the input video unless given; the
    input's codec is kept only for the same container type (else the container's default codec)."""
    path = Path(path)
    if path.resolve() == source.path.resolve():
        raise ConfigError(f"--out {path} is the input itself; choose another output path")
    if is_video_path(path):
        rate = fps or source.fps or DEFAULT_FPS
        same_container = source.kind == "video" and source.path.suffix.lower() == path.suffix.lower()
        return VideoSink(path, rate, codec or (source.fourcc if same_container else None), fourcc_given=codec is not None)
    if fps is not None or codec is not None:
        warnings.warn(f"--fps/--codec apply to video output only; {path} is a frame folder", stacklevel=2)
    return PngFolderSink(path, source.names or None)
