"""`prunekit upscale` end to end: video and frame-folder inputs/outputs, PNG flavours, bad frames, options."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from prunekit.cli import main
from prunekit.errors import ConfigError
from tecogan_plugin.data.frames import read_frame, write_frame
from tecogan_plugin.nets import FRNet
from tecogan_plugin.upscale import load_generator, open_sink, open_source, upscale_frames
from tecogan_plugin.upscale.video import MARKER_FILE
from upscale_helpers import panning_frames, tiny_generator_file

H, W = 20, 36  # neither side a multiple of 8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny published-style generator file (bare state_dict)."""
    return tiny_generator_file(tmp_path_factory.mktemp("ckpt"), nb=2)


def frames(n: int, h: int = H, w: int = W) -> list[np.ndarray]:
    return panning_frames(n, h, w, seed=3)


def write_video(path: Path, clip: list[np.ndarray], fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (clip[0].shape[1], clip[0].shape[0]))
    assert writer.isOpened()
    for f in clip:
        writer.write(f[:, :, ::-1].copy())
    writer.release()


def video_props(path: Path) -> tuple[int, float, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    props = (n, cap.get(cv2.CAP_PROP_FPS), (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))))
    cap.release()
    return props


def upscale(*args: str) -> int:
    return main(["upscale", *map(str, args), "--device", "cpu"])


def test_video_to_video_keeps_count_size_and_rate(tmp_path, checkpoint, capsys):
    src = tmp_path / "in.avi"
    write_video(src, frames(7), fps=12.0)
    out = tmp_path / "out" / "up.avi"
    assert upscale(src, "--model", checkpoint, "--out", out) == 0
    assert video_props(out) == (7, 12.0, (4 * W, 4 * H))
    assert not list(out.parent.glob(".*"))  # the temporary file was moved into place
    summary = capsys.readouterr().out
    assert f"upscaled 7 frame(s) {W}x{H} -> {4 * W}x{4 * H}" in summary and "frames/s" in summary and "cpu" in summary


def test_video_to_frames_and_fps_override(tmp_path, checkpoint):
    src = tmp_path / "in.avi"
    write_video(src, frames(6), fps=10.0)
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / "pngs", "--tile", "16", "--tile-overlap", "8") == 0
    pngs = sorted((tmp_path / "pngs").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(6)]
    assert all(read_frame(p).shape == (4 * H, 4 * W, 3) for p in pngs)
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / "v.mp4", "--fps", "5", "--no-fast") == 0
    assert video_props(tmp_path / "v.mp4") == (6, 5.0, (4 * W, 4 * H))
    assert open_source(tmp_path / "v.mp4").codec == "h264"  # .mp4: H.264 by default, whatever the input's codec


def test_frame_folder_matches_python_api_and_converts_png_flavours(tmp_path, checkpoint):
    clip = frames(6)
    src = tmp_path / "seq"
    for i, f in enumerate(clip):
        write_frame(src / f"im{i + 1}.png", f)
    gray = cv2.cvtColor(clip[2], cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(src / "im3.png"), gray)  # 8-bit grayscale
    cv2.imwrite(str(src / "im5.png"), np.dstack([clip[4][:, :, ::-1], np.full((H, W), 255, np.uint8)]))  # RGBA
    with pytest.warns(UserWarning) as caught:
        assert upscale(src, "--model", checkpoint, "--out", tmp_path / "up") == 0
    said = " ".join(str(w.message) for w in caught)
    assert "im3.png" in said and "grayscale replicated" in said
    assert "im5.png" in said and "alpha channel dropped" in said
    names = sorted(p.name for p in (tmp_path / "up").iterdir() if p.name != MARKER_FILE)
    assert names == sorted(f"im{i + 1}.png" for i in range(6))  # input names kept
    clip[2] = np.repeat(gray[:, :, None], 3, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = list(upscale_frames(load_generator(checkpoint), clip, device="cpu"))
    for i, r in enumerate(ref):
        assert np.array_equal(read_frame(tmp_path / "up" / f"im{i + 1}.png"), r)


@pytest.mark.parametrize("out_name", ["up", "up.avi"])
def test_bad_frame_stops_with_its_name_and_keeps_earlier_frames(tmp_path, checkpoint, capsys, out_name):
    clip = frames(10)
    src = tmp_path / "seq"
    for i, f in enumerate(clip):
        write_frame(src / f"{i:04d}.png", f)
    data = (src / "0008.png").read_bytes()
    (src / "0008.png").write_bytes(data[: len(data) // 2])  # truncated
    out = tmp_path / out_name
    assert upscale(src, "--model", checkpoint, "--out", out) == 2
    err = capsys.readouterr().err
    assert "0008.png" in err and "8 frame(s) already written" in err
    ref = list(upscale_frames(load_generator(checkpoint), clip[:8], device="cpu"))
    if out.suffix:
        assert video_props(out)[0] == 8  # the container was finished, not left half-written
    else:
        assert sorted(p.name for p in out.iterdir() if p.name != MARKER_FILE) == [f"{i:04d}.png" for i in range(8)]
        assert all(np.array_equal(read_frame(out / f"{i:04d}.png"), ref[i]) for i in range(8))


def test_frame_of_another_size_is_named(tmp_path, checkpoint, capsys):
    src = tmp_path / "seq"
    for i, f in enumerate(frames(3)):
        write_frame(src / f"{i}.png", f)
    write_frame(src / "3.png", frames(1, H + 8, W)[0])
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / "o", "--warmup", "0") == 2
    err = capsys.readouterr().err
    assert "3.png" in err and f"{W}x{H + 8}" in err and "3 frame(s) already written" in err


def test_prunekit_checkpoint_via_cli(tmp_path, capsys):
    import prunekit as pk

    torch.manual_seed(0)
    model = FRNet(nf=8, nb=2)
    pk.save(model, pk.Plan.identity(model), tmp_path / "ckpt")
    write_video(tmp_path / "in.avi", frames(3), fps=8.0)
    assert upscale(tmp_path / "in.avi", "--model", tmp_path / "ckpt", "--out", tmp_path / "o") == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 3


def test_user_errors_exit_2_with_a_message(tmp_path, checkpoint, capsys):
    write_video(tmp_path / "in.avi", frames(2), fps=8.0)
    assert upscale(tmp_path / "nope.mp4", "--model", checkpoint, "--out", tmp_path / "o") == 2
    assert "nope.mp4" in capsys.readouterr().err
    assert upscale(tmp_path / "in.avi", "--model", checkpoint, "--out", tmp_path / "o", "--half") == 2
    assert "CUDA" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # bad options are caught before any output is created
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    assert upscale(tmp_path / "junk.avi", "--model", checkpoint, "--out", tmp_path / "o") == 2
    assert "junk.avi" in capsys.readouterr().err
    assert upscale(tmp_path / "in.avi", "--model", checkpoint, "--out", tmp_path / "o.avi", "--codec", "NOPE") == 2
    assert "NOPE" in capsys.readouterr().err
    assert upscale(tmp_path / "in.avi", "--model", checkpoint, "--out", tmp_path / "in.avi") == 2
    assert "input itself" in capsys.readouterr().err


def test_an_os_error_about_the_output_is_one_line(tmp_path, checkpoint, capsys):
    src = tmp_path / "seq"
    for i, f in enumerate(frames(2)):
        write_frame(src / f"{i}.png", f)
    (tmp_path / "a.txt").write_text("x")
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / "a.txt" / "o") == 2  # a file in the path
    err = capsys.readouterr().err
    assert "Traceback" not in err and "a.txt" in err and err.count("\n") == 1


def test_open_source_reads_video_metadata(tmp_path):
    write_video(tmp_path / "in.avi", frames(4), fps=15.0)
    src = open_source(tmp_path / "in.avi")
    assert (src.kind, src.count, src.fps, src.codec, src.size, src.audio) == ("video", 4, 15.0, "mjpeg", (W, H), None)
    decoded = list(src)
    assert len(decoded) == 4 and decoded[0].shape == (H, W, 3)
    # RGB order survives the BGR round trip (MJPG is lossy, so compare channel means)
    assert np.allclose(decoded[1].mean(axis=(0, 1)), frames(4)[1].mean(axis=(0, 1)), atol=6)
    with pytest.raises(ConfigError, match="not a folder"):
        (tmp_path / "file").write_text("x")
        open_sink(tmp_path / "file", src)
