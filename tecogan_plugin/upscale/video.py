"""Where frames come from and go to: a video file (PyAV, FFmpeg's libraries) or a folder of PNG frames.

Frames travel as HxWx3 RGB uint8 arrays, one at a time, so a whole video is never held in memory.
Video output is H.264 (libx264, yuv420p) in .mp4/.m4v/.mov/.mkv by default; each output frame keeps
its input frame's timestamp (same time base and frame rate, variable rates included), and the input's
audio is copied alongside: remuxed as is when the output container can hold its codec, else
re-encoded to the container's audio codec (AAC for MP4).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np

from prunekit.errors import ConfigError, DataError
from prunekit.fileio import atomic_write
from tecogan_plugin.data.frames import list_frames, png_info, read_frame, write_frame

__all__ = [
    "VIDEO_SUFFIXES", "DEFAULT_CODECS", "DEFAULT_CRF", "DEFAULT_PRESET", "FrameSource", "open_source",
    "FrameSink", "PngFolderSink", "VideoSink", "open_sink",
]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
DEFAULT_CODECS = {
    ".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
    ".avi": "mjpeg",  # AVI has no timestamps for H.264's reordered frames; MJPEG plays everywhere
    ".webm": "libvpx-vp9",  # WebM holds only VP8/VP9/AV1
}
# OpenCV-style FOURCCs that earlier versions of --codec took, as FFmpeg encoder names
FOURCC_CODECS = {
    "avc1": "libx264", "h264": "libx264", "x264": "libx264", "hev1": "libx265", "hvc1": "libx265",
    "hevc": "libx265", "mp4v": "mpeg4", "xvid": "mpeg4", "divx": "mpeg4", "mjpg": "mjpeg",
    "vp80": "libvpx", "vp90": "libvpx-vp9", "ffv1": "ffv1",
}
CRF_RANGES = {"libx264": (0, 51), "libx265": (0, 51), "libvpx": (4, 63), "libvpx-vp9": (0, 63), "libsvtav1": (0, 63)}
PRESET_CODECS = ("libx264", "libx265")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
PIXEL_FORMATS = {"mjpeg": "yuvj420p", "ffv1": "yuv444p"}  # else yuv420p, what players expect
DEFAULT_CRF = 18  # libx264: visually near-lossless, the usual choice for archiving a result
DEFAULT_PRESET = "medium"
DEFAULT_FPS = 25.0
MARKER_FILE = ".prunekit-upscale.json"  # in a frame folder output: which run wrote it (to continue it)
_TMP_FRAME = re.compile(r"\..+\.png\..+\.tmp")  # what atomic_write leaves behind when a run is killed


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class FrameSource:
    """An input clip. Iterating yields RGB uint8 frames, decoded one at a time.

    For a video, `timestamps` (set up by a `VideoSink` that keeps the input's frame times) receives
    each decoded frame's pts (in `time_base`) until the sink gives it to the matching output frame; `audio` names the first audio stream's codec, if any. A video that
    decodes fewer frames than its container reports (truncated or corrupt) raises DataError at its end
    unless `allow_partial`. `names` are the input file names for a folder.
    """

    path: Path
    kind: str  # "video" or "frames"
    count: int | None
    fps: float | None
    codec: str | None
    size: tuple[int, int] | None  # (width, height)
    names: list[str] = field(default_factory=list)
    time_base: Fraction | None = None
    rate: Fraction | None = None
    audio: str | None = None
    duration: float | None = None  # seconds, as the container reports it
    count_exact: bool = True  # False: `count` is estimated from the duration
    allow_partial: bool = False
    timestamps: deque | None = field(default=None, repr=False)

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
        if self.timestamps is not None:
            self.timestamps.clear()
        decoded, last_time = 0, None
        with _open_input(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    rgb = frame.to_ndarray(format="rgb24")
                    if self.timestamps is not None:
                        self.timestamps.append(frame.pts)
                    decoded, last_time = decoded + 1, frame.time
                    yield rgb
            except av.FFmpegError as exc:
                self._cut_short(decoded, f"{self._stopped_after(decoded)} ({exc})")
                return
        if decoded == 0:
            raise DataError(f"{self.path}: no frame could be decoded from this video")
        if self.count_exact and self.count and decoded < self.count:
            self._cut_short(decoded, self._stopped_after(decoded))
        elif not self.count_exact and self.duration and last_time is not None:
            slack = max(0.5, 3 / self.fps) if self.fps else 0.5  # the last frame's own duration is not known
            if last_time < self.duration - slack:
                self._cut_short(decoded, f"decoding stopped after {decoded} frames, at {last_time:.2f} s of the "
                                         f"{self.duration:.2f} s the container reports")

    def _stopped_after(self, decoded: int) -> str:
        known = self.count_exact and self.count
        return f"decoding stopped after {decoded}" + (f" of the {self.count} frames the container reports" if known else " frames")

    def _cut_short(self, decoded: int, what: str) -> None:
        if not self.allow_partial or decoded == 0:
            raise DataError(
                f"{self.path}: {what}; the file is truncated or corrupt"
                + ("" if decoded == 0 else " (pass --allow-partial to accept the frames that decode)")
            )
        warnings.warn(f"{self.path}: {what}; kept the {decoded} frame(s) that decode (--allow-partial)", stacklevel=3)


def _open_input(path: Path) -> Any:
    try:
        container = av.open(str(path), metadata_errors="replace")
    except (av.FFmpegError, OSError, UnicodeError) as exc:
        raise DataError(f"{path}: cannot open this file as a video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: file has no video stream")
    return container


def _frame_count(stream: Any, rate: Fraction | None, duration: float | None) -> tuple[int | None, bool]:
    """Frames the container reports (exact), else an estimate from its duration, else None."""
    if stream.frames:
        return int(stream.frames), True
    if duration and rate:
        return round(duration * float(rate)), False
    return None, False


def _duration(stream: Any, container: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def open_source(path: str | os.PathLike, *, allow_partial: bool = False) -> FrameSource:
    """A folder of PNG frames (ordered as the official metrics order them) or a video file."""
    path = Path(path)
    if path.is_dir():
        frames = list_frames(path)
        if not frames:
            raise DataError(f"{path}: folder holds no .png frames")
        return FrameSource(path, "frames", len(frames), None, None, None, [p.name for p in frames])
    if not path.exists():
        raise DataError(f"{path}: input does not exist (expected a video file or a folder of PNG frames)")
    with _open_input(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        duration = _duration(stream, container)
        count, exact = _frame_count(stream, rate, duration)
        return FrameSource(
            path, "video", count, float(rate) if rate else None,
            stream.codec_context.name, (stream.codec_context.width, stream.codec_context.height),
            time_base=stream.time_base, rate=Fraction(rate) if rate else None, audio=audio,
            duration=duration, count_exact=exact, allow_partial=allow_partial,
        )


class FrameSink:
    """Receives upscaled frames in order; `close` finishes the output (also after an error).

    `written`: frames of the output that are complete (for a continued frame folder, those found on
    disk count too); `skip`: leading frames already on disk, which `write` accepts and drops.
    """

    path: Path
    written: int = 0
    skip: int = 0

    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def close(self, complete: bool = True) -> None:
        """Finish the output; `complete=False` after a stop or an error."""

    def __enter__(self) -> "FrameSink":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(complete=exc_type is None)


class PngFolderSink(FrameSink):
    """One PNG per frame, each written atomically, so a stopped run leaves only complete frames.

    With `job` (what the run depends on: input, model, options) the folder is marked as this run's
    (MARKER_FILE). Running the same job into the folder again continues it: the leading frames that
    are on disk and complete are kept (`skip`), stale temporary files of a killed write are removed.
    A folder marked by another job, or holding files without a marker, is refused rather than mixed.
    """

    def __init__(self, path: Path, names: list[str] | None = None, job: dict[str, Any] | None = None) -> None:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path}: exists and is not a folder")
        self.path = path
        self.names = names
        self.created = not path.exists()
        self.skip = self.written = 0
        if job is not None:
            self.skip = self.written = self._claim(job)

    def name(self, index: int) -> str:
        if self.names is not None and index < len(self.names):
            return Path(self.names[index]).with_suffix(".png").name
        return f"{index:06d}.png"

    def _claim(self, job: dict[str, Any]) -> int:
        """Mark the folder for `job`; return how many leading frames a previous run of it completed."""
        marker = self.path / MARKER_FILE
        if marker.is_file():
            try:
                previous = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--out {self.path}: unreadable {MARKER_FILE} ({exc}); delete it or choose another folder") from None
            if previous != job:
                changed = sorted(k for k in set(job) | set(previous) if job.get(k) != previous.get(k))
                raise ConfigError(
                    f"--out {self.path}: holds frames of another upscale run (it differs in {', '.join(changed)}); "
                    "choose another folder, or delete this one to start over"
                )
        elif self.path.is_dir() and any(self.path.iterdir()):
            raise ConfigError(
                f"--out {self.path}: folder exists and holds files that prunekit upscale did not write; "
                "choose a new or empty folder"
            )
        for stale in self.path.glob(".*.tmp") if self.path.is_dir() else ():
            if _TMP_FRAME.fullmatch(stale.name):
                stale.unlink()
        done = 0
        while True:
            frame = self.path / self.name(done)
            try:
                png_info(frame)  # present and complete (ends in the IEND chunk)
            except DataError:
                break
            done += 1
        atomic_write(marker, json.dumps(job, indent=2, sort_keys=True))
        return done

    def write(self, frame: np.ndarray) -> None:
        if self.skip:
            self.skip -= 1
            return
        write_frame(self.path / self.name(self.written), frame)
        self.written += 1

    def close(self, complete: bool = True) -> None:
        if self.written == 0 and self.created:  # stopped before the first frame: leave nothing behind
            (self.path / MARKER_FILE).unlink(missing_ok=True)
            if self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()


def _encoder_name(codec: str) -> str:
    name = FOURCC_CODECS.get(codec.lower(), codec)
    try:
        found = av.Codec(name, "w")
    except (av.FFmpegError, ValueError):  # unknown name
        found = None
    if found is None or found.type != "video":
        raise ConfigError(
            f"--codec {codec!r}: not a video encoder of this FFmpeg build; use e.g. libx264, libx265, "
            "libvpx-vp9, mpeg4, mjpeg or ffv1"
        )
    return found.name


class VideoSink(FrameSink):
    """An FFmpeg encoder and muxer opened at the first frame (its size is known only then).

    It writes to a hidden temporary file next to `path` and moves it into place on `close`, so the
    output path only ever holds a finished, playable container: after a stop or an error, the frames
    written so far (with the audio up to the last of them). Nothing stays behind when no frame was done.
    """

    def __init__(
        self,
        path: Path,
        source: FrameSource | None = None,
        *,
        fps: float | None = None,
        codec: str | None = None,
        crf: int | None = None,
        preset: str | None = None,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ConfigError(f"--fps must be positive, got {fps}")
        self.codec = _encoder_name(codec or DEFAULT_CODECS.get(path.suffix.lower(), "libx264"))
        self.options = _encoder_options(self.codec, crf, preset)
        self.path = path
        self.source = source
        retimed = fps is not None and source is not None and source.kind == "video"
        self.keep_times = source is not None and source.kind == "video" and source.time_base is not None and not retimed
        if retimed and source.audio:
            warnings.warn(f"--fps changes the timing, so the audio of {source.path} is not copied", stacklevel=3)
        rate = fps or (source.fps if source is not None else None) or DEFAULT_FPS
        self.rate = (source.rate if self.keep_times and source.rate else None) or Fraction(rate).limit_denominator(1001)
        self.time_base = source.time_base if self.keep_times else 1 / self.rate
        self.copy_audio = self.keep_times and source.audio is not None
        if self.keep_times:
            source.timestamps = deque()  # type: ignore[union-attr]
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.container: Any = None
        self.stream: Any = None
        self.audio: _AudioCopy | None = None
        self.last_pts: int | None = None
        self.written = 0

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.container = av.open(str(self.tmp), "w")
            stream = self.container.add_stream(self.codec, rate=self.rate)
            formats = [f.name for f in (stream.codec_context.codec.video_formats or ())]
            stream.pix_fmt = PIXEL_FORMATS.get(self.codec) or ("yuv420p" if not formats or "yuv420p" in formats else formats[0])
            if stream.pix_fmt.endswith("420p") and (width % 2 or height % 2):
                raise ConfigError(f"{self.path}: {self.codec} in yuv420p needs even frame sides, got {width}x{height}")
            stream.width, stream.height = width, height
            stream.time_base = stream.codec_context.time_base = self.time_base
            stream.options = self.options
            self.stream = stream
            if self.copy_audio:
                self.audio = _AudioCopy(self.source.path, self.container, self.path)  # type: ignore[union-attr]
        except av.FFmpegError as exc:
            self._discard()
            raise ConfigError(f"{self.path}: cannot write {self.codec} video into {self.path.suffix} ({exc})") from None
        except BaseException:
            self._discard()
            raise

    def _next_pts(self) -> int:
        if self.keep_times and self.source is not None and self.source.timestamps:
            pts = self.source.timestamps.popleft()
            if pts is not None and (self.last_pts is None or pts > self.last_pts):
                return int(pts)
        if self.last_pts is None:
            return 0
        return self.last_pts + max(1, round(1 / (self.rate * self.time_base)))

    def write(self, frame: np.ndarray) -> None:
        if self.container is None:
            self._open(frame.shape[1], frame.shape[0])
        pts = self._next_pts()
        image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        image.pts, image.time_base = pts, self.time_base
        try:
            if self.audio is not None:
                self.audio.until(pts * self.time_base)  # audio up to this frame, interleaved
            for packet in self.stream.encode(image):
                self.container.mux(packet)
        except av.FFmpegError as exc:
            raise DataError(f"{self.path}: writing frame {self.written} failed ({exc})") from None
        self.last_pts = pts
        self.written += 1

    def close(self, complete: bool = True) -> None:
        if self.container is None:
            return
        try:
            if self.written == 0:
                self._discard()
                return
            for packet in self.stream.encode(None):  # flush the encoder's delayed frames
                self.container.mux(packet)
            if self.audio is not None:
                frame_time = 1 / self.rate
                self.audio.until(None if complete else (self.last_pts * self.time_base + frame_time))
                self.audio.close()
            self.container.close()
            self.container = None
            os.replace(self.tmp, self.path)
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        if self.audio is not None:
            self.audio.close()
            self.audio = None
        if self.container is not None:
            try:
                self.container.close()
            except av.FFmpegError:
                pass
            self.container = None
        self.tmp.unlink(missing_ok=True)


def _encoder_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
    options: dict[str, str] = {}
    if codec in CRF_RANGES:
        low, high = CRF_RANGES[codec]
        value = DEFAULT_CRF if crf is None else crf
        if not low <= value <= high:
            raise ConfigError(f"--crf for {codec} must be in {low}..{high}, got {value}")
        options["crf"] = str(value)
        if codec.startswith("libvpx"):
            options["b"] = "0"  # constant quality, no bitrate cap
    elif crf is not None:
        raise ConfigError(f"--crf applies to {', '.join(CRF_RANGES)}; {codec} has no CRF")
    if codec in PRESET_CODECS:
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        options["preset"] = preset or DEFAULT_PRESET
    elif preset is not None:
        raise ConfigError(f"--preset applies to {', '.join(PRESET_CODECS)}; {codec} has no preset")
    return options


class _AudioCopy:
    """The input's first audio stream, read packet by packet and written into `output`: as is when the
    container can hold its codec, else re-encoded to the container's audio codec."""

    def __init__(self, source: Path, output: Any, out_path: Path) -> None:
        self.input = av.open(str(source))
        stream = self.input.streams.audio[0]
        self.packets = self.input.demux(stream)
        self.pending: Any = None
        if stream.codec_context.name in output.supported_codecs:
            self.out = output.add_stream_from_template(stream)
            self.encoder = None
        else:
            target = "aac" if "aac" in output.supported_codecs else output.default_audio_codec
            self.out = output.add_stream(target, rate=stream.codec_context.sample_rate)
            self.encoder = self.out
            warnings.warn(
                f"{out_path}: {out_path.suffix} cannot hold the input's {stream.codec_context.name} audio; "
                f"re-encoded it to {target}", stacklevel=5,
            )
        self.output = output

    def until(self, time: Fraction | None) -> None:
        """Copy the packets that start before `time` seconds (all remaining ones for None)."""
        while True:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                return
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's empty end-of-stream packet
            start = (packet.pts if packet.pts is not None else packet.dts) * packet.time_base
            if time is not None and start >= time:
                self.pending = packet
                return
            self._put(packet)

    def _put(self, packet: Any) -> None:
        if self.encoder is None:
            packet.stream = self.out
            self.output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples itself
            for out_packet in self.encoder.encode(frame):
                self.output.mux(out_packet)

    def close(self) -> None:
        if self.encoder is not None and self.input is not None:
            for out_packet in self.encoder.encode(None):
                self.output.mux(out_packet)
        if self.input is not None:
            self.input.close()
            self.input = None


def open_sink(
    path: str | os.PathLike,
    source: FrameSource,
    *,
    fps: float | None = None,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    job: dict[str, Any] | None = None,
) -> FrameSink:
    """A video file when `path` has a video suffix, else a folder of PNGs (named after the input frames
    when the input is a folder; `job` makes it continuable, see PngFolderSink). Frame times and audio
    come from the input video unless `fps` is given; the codec is the container's default unless given."""
    path = Path(path)
    if path.resolve() == source.path.resolve():
        raise ConfigError(f"--out {path} is the input itself; choose another output path")
    if is_video_path(path):
        return VideoSink(path, source, fps=fps, codec=codec, crf=crf, preset=preset)
    if any(v is not None for v in (fps, codec, crf, preset)):
        warnings.warn(f"--fps/--codec/--crf/--preset apply to video output only; {path} is a frame folder", stacklevel=2)
    return PngFolderSink(path, source.names or None, job)
