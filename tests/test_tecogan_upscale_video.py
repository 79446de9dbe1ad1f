"""Video files through PyAV: H.264 out by default, audio copied, frame times kept, codec/CRF options,
truncated inputs. Every clip is made here with PyAV (tiny: 32x24, a few frames, a sine tone)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from prunekit.cli import main
from tecogan_plugin.upscale import load_generator, open_source, upscale_frames
from upscale_helpers import panning_frames, tiny_generator_file

W, H = 32, 24
RATE = 16000  # audio sample rate


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_generator_file(tmp_path_factory.mktemp("ckpt"))


def lr_frames(n: int) -> list[np.ndarray]:
    return panning_frames(n, H, W, seed=5)


def make_clip(
    path: Path, n: int = 8, fps: int = 12, *, codec: str = "libx264", audio: str | None = "aac",
    times: list[float] | None = None,
) -> None:
    """n frames at `fps` (or at `times` seconds: variable rate) plus n/fps seconds of a 440 Hz tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = W, H
        video.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        # the muxer may change the stream's time base once it starts; frames keep this one
        time_base = video.time_base = video.codec_context.time_base = Fraction(1, 1000) if times else Fraction(1, fps)
        if audio:
            sound = out.add_stream(audio, rate=RATE)
            sound.layout = "mono"
        for i, frame in enumerate(lr_frames(n)):
            image = av.VideoFrame.from_ndarray(frame, format="rgb24")
            image.pts = round(times[i] * 1000) if times else i
            image.time_base = time_base
            for packet in video.encode(image):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio:
            t = np.arange(RATE * n // fps) / RATE
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, wave.shape[1], 1024):
                tone = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start : start + 1024]),
                                                  format="flt", layout="mono")
                tone.sample_rate, tone.pts = RATE, start
                for packet in sound.encode(tone):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)


def probe(path: Path) -> dict:
    """What a player sees: codecs, pixel format, frame times (s), decoded frames, audio packets."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
        info = {"video": v.codec_context.name, "pix_fmt": v.codec_context.pix_fmt, "rate": v.average_rate,
                "times": [round(t, 4) for t, _ in frames], "frames": [f for _, f in frames]}
        has_audio = bool(c.streams.audio)
    if has_audio:
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            info["audio"] = a.codec_context.name
            info["audio_packets"] = [bytes(p) for p in c.demux(a) if p.size]
            info["audio_rate"] = a.codec_context.sample_rate
    return info


def upscale(*args) -> int:
    return main(["upscale", *map(str, args), "--device", "cpu"])


def test_h264_aac_in_gives_h264_with_the_same_audio_and_times(tmp_path, checkpoint, capsys):
    make_clip(tmp_path / "in.mp4")
    assert upscale(tmp_path / "in.mp4", "--model", checkpoint, "--out", tmp_path / "out.mp4") == 0
    src, out = probe(tmp_path / "in.mp4"), probe(tmp_path / "out.mp4")
    assert (out["video"], out["pix_fmt"], out["rate"]) == ("h264", "yuv420p", 12)
    assert out["times"] == src["times"] and len(out["times"]) == 8
    assert out["frames"][0].shape == (4 * H, 4 * W, 3)
    assert out["audio"] == "aac" and out["audio_packets"] == src["audio_packets"]  # remuxed, not re-encoded
    # CRF 18 H.264 keeps the network output close (tiny frames of noise are the hard case for a codec)
    ref = list(upscale_frames(load_generator(checkpoint), [f for f in src["frames"]], device="cpu"))
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(out["frames"], ref)]) < 6
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no hidden partial file


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_other_containers_are_h264_with_audio_remuxed(tmp_path, checkpoint, suffix):
    make_clip(tmp_path / "in.mp4", n=5)
    out = tmp_path / f"out{suffix}"
    assert upscale(tmp_path / "in.mp4", "--model", checkpoint, "--out", out, "--preset", "ultrafast") == 0
    got, src = probe(out), probe(tmp_path / "in.mp4")
    # Matroska cannot store the AAC priming packet's negative time, so its muxer shifts every stream
    # alike; it keeps times in ms
    shift = got["times"][0] - src["times"][0]
    assert got["video"] == "h264" and np.allclose(got["times"], np.add(src["times"], shift), atol=1e-3)
    assert got["audio"] == "aac" and got["audio_packets"] == src["audio_packets"]


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path, checkpoint):
    make_clip(tmp_path / "in.mp4", n=4)
    with pytest.warns(UserWarning, match="re-encoded it to opus"):
        assert upscale(tmp_path / "in.mp4", "--model", checkpoint, "--out", tmp_path / "o.webm") == 0
    got = probe(tmp_path / "o.webm")
    assert got["video"] == "vp9" and got["audio"] == "opus" and len(got["frames"]) == 4
    assert len(got["audio_packets"]) >= 10  # 1/3 s of sound in 20 ms Opus packets


def test_variable_frame_times_are_kept(tmp_path, checkpoint):
    times = [0.0, 0.04, 0.2, 0.24, 0.5, 0.9]
    make_clip(tmp_path / "vfr.mkv", n=6, audio=None, times=times)
    assert upscale(tmp_path / "vfr.mkv", "--model", checkpoint, "--out", tmp_path / "o.mp4") == 0
    got = probe(tmp_path / "o.mp4")
    assert got["times"] == times and "audio" not in got


def test_fps_override_retimes_and_drops_audio(tmp_path, checkpoint):
    make_clip(tmp_path / "in.mp4", n=4)
    with pytest.warns(UserWarning, match="audio"):
        assert upscale(tmp_path / "in.mp4", "--model", checkpoint, "--out", tmp_path / "o.mp4", "--fps", "5") == 0
    got = probe(tmp_path / "o.mp4")
    assert got["times"] == [0.0, 0.2, 0.4, 0.6] and "audio" not in got


def test_codec_and_crf_options(tmp_path, checkpoint, capsys):
    make_clip(tmp_path / "in.mp4", n=4, audio=None)
    sizes = {}
    for crf in (4, 40):
        out = tmp_path / f"crf{crf}.mp4"
        assert upscale(tmp_path / "in.mp4", "--model", checkpoint, "--out", out, "--crf", crf) == 0
        sizes[crf] = out.stat().st_size
    assert sizes[40] < sizes[4] / 2  # the quality setting reached the encoder
    assert upscale(tmp_path / "in.mp4", "--model", checkpoint, "--out", tmp_path / "m.avi") == 0
    assert probe(tmp_path / "m.avi")["video"] == "mjpeg"  # .avi: MJPEG by default
    assert upscale(tmp_path / "in.mp4", "--model", checkpoint, "--out", tmp_path / "x.mkv", "--codec", "mp4v") == 0
    assert probe(tmp_path / "x.mkv")["video"] == "mpeg4"  # OpenCV-style FOURCCs still work
    capsys.readouterr()
    for bad, said in [(("--crf", "70"), "0..51"), (("--preset", "quick"), "--preset"), (("--codec", "NOPE"), "NOPE"),
                      (("--codec", "mjpeg", "--crf", "20"), "no CRF")]:
        assert upscale(tmp_path / "in.mp4", "--model", checkpoint, "--out", tmp_path / "bad.mp4", *bad) == 2
        assert said in capsys.readouterr().err
        assert not (tmp_path / "bad.mp4").exists()


def test_truncated_video_is_an_error_unless_allow_partial(tmp_path, checkpoint, capsys):
    make_clip(tmp_path / "full.avi", n=40, codec="mjpeg", audio=None)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    assert open_source(tmp_path / "cut.avi").count == 40  # what the header promises
    assert upscale(tmp_path / "cut.avi", "--model", checkpoint, "--out", tmp_path / "o.mp4") == 2
    err = capsys.readouterr().err
    assert "cut.avi" in err and "of the 40 frames" in err and "--allow-partial" in err
    read = int(err.split("decoding stopped after ")[1].split()[0])
    assert 10 < read < 30
    with pytest.warns(UserWarning, match=f"kept the {read} frame"):
        assert upscale(tmp_path / "cut.avi", "--model", checkpoint, "--out", tmp_path / "p.mp4", "--allow-partial") == 0
    assert len(probe(tmp_path / "p.mp4")["frames"]) == read


def test_garbage_and_audio_only_files_are_named(tmp_path, checkpoint, capsys):
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 1000)
    assert upscale(tmp_path / "junk.mp4", "--model", checkpoint, "--out", tmp_path / "o.mp4") == 2
    assert "junk.mp4" in capsys.readouterr().err
    with av.open(str(tmp_path / "sound.m4a"), "w") as out:
        s = out.add_stream("aac", rate=RATE)
        tone = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt", layout="mono")
        tone.sample_rate, tone.pts = RATE, 0
        for p in [*s.encode(tone), *s.encode(None)]:
            out.mux(p)
    assert upscale(tmp_path / "sound.m4a", "--model", checkpoint, "--out", tmp_path / "o.mp4") == 2
    assert "no video stream" in capsys.readouterr().err


def test_decoding_and_encoding_stream_in_flat_memory(tmp_path):
    """Python-side memory of reading a clip and writing it back does not grow with its length
    (frames are held one at a time; frame times queue only between decoder and encoder)."""
    import tracemalloc

    from tecogan_plugin.upscale.video import open_sink

    peaks = {}
    for n in (10, 60):
        make_clip(tmp_path / f"in{n}.mp4", n=n, fps=25)
        source = open_source(tmp_path / f"in{n}.mp4")
        tracemalloc.start()
        with open_sink(tmp_path / f"out{n}.mp4", source, preset="ultrafast") as sink:
            for frame in source:
                sink.write(np.repeat(np.repeat(frame, 4, axis=0), 4, axis=1))  # 128x96, 36 KiB per frame
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(probe(tmp_path / f"out{n}.mp4")["frames"]) == n
    assert peaks[60] < peaks[10] + 200_000  # holding the 50 extra frames would take 1.8 MB
