"""Issue 15 for `prunekit run`: run folders are locked against a second run (two real processes), a lock
left by a killed process is taken over and reported, the run folder never replaces a user's file or
folder, and resume refuses to guess (changed threads/version/config, missing teacher or config.json,
no run at all) while it recovers what it can (a corrupt newest checkpoint, leftovers of killed writes,
a finished run resumed again)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from prunekit.errors import CheckpointError, ConfigError, OutputError
from prunekit.schedule import run
from prunekit.schedule.checkpoint import list_checkpoints
from prunekit.schedule.runlock import LOCK_FILE, RunLock
from test_schedule import config

TESTS = Path(__file__).parent
REPO = TESTS.parent

# a short schedule: train 4 (checkpoint every 2), iterative prune 2 x (remove 1, finetune 2), finetune 2
STAGES = [
    {"kind": "train", "iterations": 4, "batch": 2},
    {"kind": "prune", "strategy": "magnitude", "calibration": 0, "target": {"kind": "keep_blocks", "n": 2},
     "iterative": {"remove": 1, "finetune": {"kind": "finetune", "iterations": 2, "batch": 2}}},
    {"kind": "finetune", "iterations": 2, "batch": 2, "distill": {"weight": 0.5}},
]


def small(out: Path, **over) -> dict:
    return config(out, stages=STAGES, ckpt_every=2, **over)


class Crash(RuntimeError):
    pass


def crash_at(step: int):
    def on_step(info):
        if info.global_step == step:
            raise Crash(f"killed at {step}")
    return on_step


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (name -> sha256), to show a folder is byte-for-byte untouched."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _child(script: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.communicate()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("child did not reach the expected point")
        time.sleep(0.05)


# a run that signals after its first optimiser step and then waits until told to go on
HOLDING_RUN = """
    import sys, time, torch
    from pathlib import Path
    from prunekit.schedule import run
    from test_safety_run import small
    torch.set_num_threads(1)
    out, started, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    def on_step(info):
        if info.global_step == 1:
            started.write_text("x")
            end = time.monotonic() + 120
            while not go.exists() and time.monotonic() < end:
                time.sleep(0.05)
    cfg = small(out)
    cfg["seed"] = int(sys.argv[4])
    run(cfg, on_step=on_step)
"""


def test_second_run_on_the_same_folder_is_refused_with_the_owners_pid(tmp_path):
    out, started, go = tmp_path / "run", tmp_path / "started", tmp_path / "go"
    child = _child(HOLDING_RUN, str(out), str(started), str(go), "0")
    try:
        _wait_for(started, child)
        before = tree_digest(out)
        with pytest.raises(OutputError, match=rf"another prunekit run \(PID {child.pid}\) is using this run folder"):
            run(small(out, seed=1))
        with pytest.raises(OutputError, match=rf"PID {child.pid}"):
            run(small(out), resume=True)
        assert tree_digest(out) == before  # the refused runs wrote nothing
        go.write_text("x")
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    finally:
        child.kill()
        child.communicate()
    # the run that owned the folder finished alone: its config and metrics are its own
    import json

    assert json.loads((out / "config.json").read_text())["seed"] == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == len(set(rows))
    assert (out / LOCK_FILE).read_text() == ""  # released cleanly


def test_a_killed_runs_lock_is_taken_over_and_its_leftovers_removed(tmp_path):
    out, started, go = tmp_path / "run", tmp_path / "started", tmp_path / "go"
    child = _child(HOLDING_RUN, str(out), str(started), str(go), "3")
    _wait_for(started, child)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert (out / LOCK_FILE).read_text().strip() == str(child.pid)  # the dead owner's PID is still in the file
    # what a kill in the middle of a checkpoint write and of an atomic file write leaves behind
    leftover = out / "checkpoints" / ".tmp-ckpt-abc123"
    (leftover / "model").mkdir(parents=True)
    (out / ".metrics.csv.x1y2.tmp").write_text("half")
    with pytest.warns(UserWarning) as caught:
        result = run(small(out), resume=True)  # no checkpoint yet: starts from the beginning
    messages = [str(w.message) for w in caught]
    assert any(f"run of PID {child.pid} ended without releasing its lock" in m for m in messages), messages
    assert any("stopped before its first checkpoint; starting it from the beginning" in m for m in messages)
    assert not leftover.exists() and not (out / ".metrics.csv.x1y2.tmp").exists()
    assert len(result.model.blocks) == 2


def test_run_lock_in_one_process_refuses_a_second_holder(tmp_path):
    with RunLock(tmp_path / "r"):
        with pytest.raises(OutputError, match=rf"PID {os.getpid()}"):
            RunLock(tmp_path / "r").acquire()
    RunLock(tmp_path / "r").acquire().release()  # free again after release


def test_out_dir_never_replaces_a_users_file_or_folder(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_bytes(b"my notes")
    with pytest.raises(OutputError, match=r"notes\.txt: is a file, not a folder"):
        run(small(a_file))
    assert a_file.read_bytes() == b"my notes"
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"\xff\xd8 jpeg")
    with pytest.raises(OutputError, match=r"photos: exists \(non-empty folder\) and is not an output of this command"):
        run(small(photos))
    with pytest.raises(OutputError, match=r"photos"):
        run(small(photos), resume=True)
    assert tree_digest(photos) == {"a.jpg": hashlib.sha256(b"\xff\xd8 jpeg").hexdigest()}
    # a folder below a file, and an out_dir that holds the init checkpoint
    with pytest.raises(OutputError, match=r"notes\.txt is a file"):
        run(small(a_file / "run"))
    init = tmp_path / "prev" / "final"
    first = run(small(tmp_path / "prev"))
    digest = tree_digest(init)
    with pytest.raises(OutputError, match=r"contains the input"):
        run(small(tmp_path / "prev" / "..", init_checkpoint=str(init)))
    with pytest.raises(OutputError, match=r"is inside the input"):
        run(small(init / "again", init_checkpoint=str(init)))
    assert tree_digest(init) == digest and first.plan is not None


def test_resume_without_a_run_is_an_error_and_creates_nothing(tmp_path):
    typo = tmp_path / "rnus" / "mine"
    with pytest.raises(ConfigError, match=r"rnus/mine holds no run to resume \(no config\.json, no checkpoints\)"):
        run(small(typo), resume=True)
    assert not typo.exists()


def test_resume_refuses_changed_threads_version_and_config(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run(small(out), on_step=crash_at(3))
    before = tree_digest(out)
    torch.set_num_threads(2)  # threads: null in the config, so the process default is what ran
    try:
        with pytest.raises(ConfigError, match=r"threads: the run used 1, this process has 2"):
            run(small(out), resume=True)
    finally:
        torch.set_num_threads(1)
    import prunekit.version

    monkeypatch.setattr(prunekit.version, "__version__", "9.9.9")
    with pytest.raises(ConfigError, match=r"prunekit: the run used '0\.1\.0', this process has '9\.9\.9'"):
        run(small(out), resume=True)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"threads: differ from the run being resumed"):
        run(small(out, threads=3), resume=True)
    # config.json edited to agree with a changed lr: the checkpoint's own record still disagrees
    changed = small(out)
    changed["stages"][0]["optimizer"] = {"lr": 0.5}
    from prunekit.config import load_config
    from prunekit.schedule import RunConfig

    (out / "config.json").write_text(load_config(RunConfig, changed).model_dump_json(indent=2))
    with pytest.raises(ConfigError, match=r"config_sha256: the run used"):
        run(changed, resume=True)
    (out / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"config\.json is missing"):
        run(changed, resume=True)
    after = tree_digest(out)
    assert {k: v for k, v in after.items() if k != "config.json"} == \
        {k: v for k, v in before.items() if k != "config.json"}


def test_resume_inside_an_iterative_prune_needs_the_teacher(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run(small(out), on_step=crash_at(6))  # inside the first fine-tune of the iterative prune
    import shutil

    shutil.rmtree(out / "teacher")
    with pytest.raises(CheckpointError, match=r"teacher is missing; the checkpoint .* needs the dense teacher"):
        run(small(out), resume=True)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    full = run(small(tmp_path / "full"))
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run(small(out), on_step=crash_at(5))  # the newest two checkpoints: end of train, first removal
    newest = list_checkpoints(out / "checkpoints")[-1]
    weights = newest / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated copy
    with pytest.warns(UserWarning, match=r"is unreadable .* resuming from the previous one"):
        resumed = run(small(out), resume=True)
    assert (out / "checkpoints" / f"corrupt-{newest.name}").is_dir()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert (out / "metrics.csv").read_bytes() == (tmp_path / "full" / "metrics.csv").read_bytes()


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    out = tmp_path / "run"
    first = run(small(out))
    before = tree_digest(out)
    again = run(small(out), resume=True)
    assert tree_digest(out) == before  # no duplicate CSV rows, no rewritten checkpoint
    assert again.metrics == first.metrics
    assert again.history == first.history
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])
    with pytest.raises(ConfigError, match=r"already holds a run"):
        run(small(out))


def test_cli_run_out_naming_a_file_is_one_line(tmp_path, capsys):
    import yaml

    from prunekit.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(small(tmp_path / "unused")))
    target = tmp_path / "results.csv"
    target.write_bytes(b"a,b\n1,2\n")
    assert main(["run", str(cfg), "--out", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "results.csv: is a file, not a folder" in err and "Traceback" not in err
    assert target.read_bytes() == b"a,b\n1,2\n"


def test_resume_after_a_kill_during_the_final_write_adds_no_rows(tmp_path):
    """Killed after the last checkpoint but before final/ and result.json were written."""
    import shutil

    out = tmp_path / "run"
    run(small(out))
    before = tree_digest(out)
    shutil.rmtree(out / "final")
    (out / "result.json").unlink()
    again = run(small(out), resume=True)
    after = tree_digest(out)
    weights = "final/model.safetensors"  # safetensors orders its metadata map at random: compare tensors
    assert {k: v for k, v in after.items() if k != weights} == {k: v for k, v in before.items() if k != weights}
    from prunekit.checkpoint import load

    final = load(out / "final", build=lambda: again.model.__class__(4, 8))
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, final.state_dict()[k])


def test_check_identity_names_each_difference(tmp_path):
    from prunekit.schedule.checkpoint import check_identity, run_identity

    now = run_identity({"seed": 1}, torch.device("cpu"), 1)
    check_identity(dict(now), now, tmp_path / "checkpoints" / "ckpt-1")
    recorded = {**now, "device": "cuda", "world_size": 2}
    with pytest.raises(ConfigError, match=r"device: the run used 'cuda', this process has 'cpu'.*world_size: the run "
                                          r"used 2"):
        check_identity(recorded, now, tmp_path / "checkpoints" / "ckpt-1")
    with pytest.raises(ConfigError, match=r"does not record the settings it was made with"):
        check_identity(None, now, tmp_path / "checkpoints" / "ckpt-1")
