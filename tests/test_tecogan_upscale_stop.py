"""Stopping and continuing `prunekit upscale`: SIGTERM/SIGINT to a real process leave a playable partial
video or nothing; a frame folder continues where a killed run stopped, with the frames of a full run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from prunekit.cli import main
from tecogan_plugin.data.frames import read_frame, write_frame
from tecogan_plugin.upscale.video import MARKER_FILE
from upscale_helpers import panning_frames, tiny_generator_file

H, W = 16, 24

# Runs `prunekit upscale` with each frame slowed down, and tells the test (one line on stdout) when a
# given number of frames is done, so that the signal lands mid-run at a known point.
CHILD = """
import sys, time
from tecogan_plugin.upscale import command

real = command.upscale_frames
announce_at = int(sys.argv[1])

def slow(*args, **kwargs):
    for i, frame in enumerate(real(*args, **kwargs)):
        if i == announce_at:
            print(f"at {i}", flush=True)
        time.sleep(0.3)
        yield frame

command.upscale_frames = slow
from prunekit.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_generator_file(tmp_path_factory.mktemp("ckpt"))


def frames(n: int) -> list[np.ndarray]:
    return panning_frames(n, H, W, seed=9)


def frame_folder(path: Path, n: int) -> Path:
    for i, f in enumerate(frames(n)):
        write_frame(path / f"{i:04d}.png", f)
    return path


def run_and_signal(tmp_path: Path, sig: int, announce_at: int, *args) -> tuple[int, str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cmd = [sys.executable, str(script), str(announce_at), "upscale", *map(str, args), "--device", "cpu"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline()  # blocks until the child is at the announced frame
        assert line.startswith(f"at {announce_at}"), line + child.stderr.read()
        child.send_signal(sig)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    return child.returncode, err


def count_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_sigterm_mid_run_leaves_a_playable_partial_video(tmp_path, checkpoint):
    src = frame_folder(tmp_path / "seq", 40)
    out = tmp_path / "out" / "up.mp4"
    rc, err = run_and_signal(tmp_path, signal.SIGTERM, 3, src, "--model", checkpoint, "--out", out, "--warmup", "0")
    assert rc == 128 + signal.SIGTERM, err
    said = err.strip().splitlines()[-1]
    assert "SIGTERM" in said and "of 40 frames; wrote a playable partial video" in said and str(out) in said
    done = int(said.split("stopped after ")[1].split()[0])
    assert 3 <= done < 40  # frames 0..2 were done when the signal was sent
    assert count_frames(out) == done  # finished container: every frame done is in it
    assert sorted(p.name for p in out.parent.iterdir()) == ["up.mp4"]  # no hidden partial file


def upscale(*args) -> int:
    return main(["upscale", *map(str, args), "--device", "cpu"])


@pytest.fixture
def signal_at(monkeypatch):
    """In-process variant: the process signals itself once `at` frames are done (a real signal, handled
    by the command's handler like one from outside)."""
    from tecogan_plugin.upscale import command

    real = command.upscale_frames

    def arm(sig: int, at: int) -> None:
        fired = []

        def signalling(*args, **kwargs):  # signals in the first run only
            for i, frame in enumerate(real(*args, **kwargs)):
                if i == at and not fired:
                    fired.append(i)
                    os.kill(os.getpid(), sig)
                yield frame

        monkeypatch.setattr(command, "upscale_frames", signalling)

    return arm


@pytest.mark.parametrize("out_name", ["up.mp4", "pngs"])
def test_sigint_before_the_first_frame_leaves_nothing(tmp_path, checkpoint, signal_at, capsys, out_name):
    src = frame_folder(tmp_path / "seq", 6)
    signal_at(signal.SIGINT, 0)
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / out_name) == 128 + signal.SIGINT
    assert "SIGINT: stopped after 0 of 6 frames; nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]


def test_a_stopped_folder_run_continues_with_the_frames_of_a_full_run(tmp_path, checkpoint, signal_at, capsys):
    src = frame_folder(tmp_path / "seq", 12)
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / "full") == 0
    part = tmp_path / "part"
    signal_at(signal.SIGTERM, 6)
    assert upscale(src, "--model", checkpoint, "--out", part) == 128 + signal.SIGTERM
    assert "stopped after 6 of 12 frames; the 6 complete frames are in" in capsys.readouterr().err
    assert sorted(p.name for p in part.glob("*.png")) == [f"{i:04d}.png" for i in range(6)]
    # what a SIGKILL during a write leaves: a stale temporary file in place of the frame being written
    (part / "0005.png").unlink()
    (part / ".0005.png.x1y2.tmp").write_bytes(b"partial")
    assert upscale(src, "--model", checkpoint, "--out", part) == 0
    assert "continuing" in capsys.readouterr().err
    assert sorted(p.name for p in part.iterdir()) == sorted([MARKER_FILE] + [f"{i:04d}.png" for i in range(12)])
    for i in range(12):  # the recurrent state was rebuilt: the frames equal an uninterrupted run's
        assert np.array_equal(read_frame(part / f"{i:04d}.png"), read_frame(tmp_path / "full" / f"{i:04d}.png")), i
    assert upscale(src, "--model", checkpoint, "--out", part) == 0  # finished: nothing to do
    assert "nothing to do" in capsys.readouterr().out


def test_a_folder_of_another_run_or_foreign_files_is_refused(tmp_path, checkpoint, capsys):
    src = frame_folder(tmp_path / "seq", 3)
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / "o") == 0
    marker = json.loads((tmp_path / "o" / MARKER_FILE).read_text())
    assert marker["input"]["path"] == str(src.resolve()) and marker["warmup"] == 5
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / "o", "--warmup", "0") == 2
    err = capsys.readouterr().err
    assert "another upscale run" in err and "warmup" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before  # untouched
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert upscale(src, "--model", checkpoint, "--out", tmp_path / "mine") == 2
    assert "did not write" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
