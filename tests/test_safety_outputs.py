"""Issue 15: outputs never clobber inputs, files respect the umask, and the listed user mistakes end in
one line, not a traceback. Every case checks the user's bytes are intact and the message names the problem."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import prunekit as pk
import zoo
from prunekit.cli import main
from prunekit.errors import OutputError
from prunekit.fileio import atomic_dir, atomic_write, check_output, temp_dir


def digest(root: Path) -> dict[str, str]:
    if root.is_file():
        return {"": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for n in needles:
        assert n in err, err
    return err


# ------------------------------------------------------------------ the guard itself
def test_check_output_relations_with_inputs(tmp_path):
    src = tmp_path / "data"
    (src / "seq").mkdir(parents=True)
    (src / "seq" / "0001.png").write_bytes(b"png")
    with pytest.raises(OutputError, match=r"is the input"):
        check_output(src, [src], kind="folder", allow_existing=True)
    with pytest.raises(OutputError, match=r"is inside the input"):
        check_output(src / "seq" / "0001.png", [src], kind="file", allow_existing=True)
    with pytest.raises(OutputError, match=r"contains the input"):
        check_output(tmp_path, [src], kind="folder", allow_existing=True)
    # symlinks are resolved: a link that points into the input is the input
    link = tmp_path / "link"
    link.symlink_to(src / "seq")
    with pytest.raises(OutputError, match=r"is inside the input"):
        check_output(link / "report.csv", [src], kind="file")
    alias = tmp_path / "alias"
    alias.symlink_to(src)
    with pytest.raises(OutputError, match=r"contains the input"):
        check_output(tmp_path / "x" / "..", [alias / "seq"], kind="folder", allow_existing=True)
    # siblings are fine; None inputs are skipped
    assert check_output(tmp_path / "out", [src, None], kind="folder") == (tmp_path / "out").resolve()


def test_check_output_existing_paths(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    with pytest.raises(OutputError, match=r"is a file, not a folder"):
        check_output(f, kind="folder", allow_existing=True)
    with pytest.raises(OutputError, match=r"notes\.txt is a file, so nothing can be written below it"):
        check_output(f / "sub", kind="folder")
    with pytest.raises(OutputError, match=r"already exists \(file\)"):
        check_output(f, kind="file")
    with pytest.raises(OutputError, match=r"is not an output of this command"):
        check_output(f, kind="file", allow_existing=True, marker=lambda p: p.read_text() == "ours")
    with pytest.raises(OutputError, match=r"is a folder; give a file name"):
        check_output(tmp_path, kind="file", allow_existing=True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match=r"not a regular file"):
        check_output(fifo, kind="file", allow_existing=True)
    folder = tmp_path / "folder"
    folder.mkdir()
    check_output(folder, kind="folder")  # empty: fine
    (folder / "x").write_text("x")
    with pytest.raises(OutputError, match=r"already exists \(non-empty folder\); pass --overwrite"):
        check_output(folder, kind="folder", marker="meta.json")
    with pytest.raises(OutputError, match=r"no meta\.json inside"):
        check_output(folder, kind="folder", allow_existing=True, marker="meta.json")
    (folder / "meta.json").write_text("{}")
    check_output(folder, kind="folder", allow_existing=True, marker="meta.json")
    assert f.read_text() == "mine" and (folder / "x").read_text() == "x"


# ------------------------------------------------------------------ umask
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.txt", "x")
        d = temp_dir(tmp_path, ".t")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("y")
        from prunekit.schedule.checkpoint import save_checkpoint

        ck = save_checkpoint(tmp_path / "ckpts", "1", torch.nn.Linear(2, 2), None, {"cursor": {}}, keep_last=1)
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(tmp_path / "a.txt") == 0o666 & ~umask
    assert mode(d) == mode(tmp_path / "folder") == mode(ck) == 0o777 & ~umask
    assert mode(ck / "state.pt") == mode(ck / "model" / "model.safetensors") == 0o666 & ~umask


# ------------------------------------------------------------------ tecogan-lmdb
def _frames(root: Path, seqs=("s1", "s2"), n=3) -> None:
    rng = np.random.default_rng(0)
    for s in seqs:
        (root / s).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / s / f"{i:04d}.png"), rng.integers(0, 255, (8, 10, 3), dtype=np.uint8))


def test_lmdb_never_deletes_its_source(tmp_path, capsys):
    src = tmp_path / "data" / "train"
    _frames(src)
    (tmp_path / "data" / "unrelated.txt").write_text("keep")
    before = digest(tmp_path / "data")
    for out in (src, tmp_path / "data", tmp_path, src / "GT.lmdb"):
        assert main(["tecogan-lmdb", str(src), str(out), "--overwrite"]) == 2
        one_line_error(capsys, str(out), "input")
    assert digest(tmp_path / "data") == before
    # a foreign non-empty folder, even with --overwrite
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    assert main(["tecogan-lmdb", str(src), str(foreign), "--overwrite"]) == 2
    one_line_error(capsys, "no meta_info.json inside")
    assert (foreign / "thesis.tex").read_text() == "years of work"
    # our own store: refused without --overwrite, replaced with it
    store = tmp_path / "GT.lmdb"
    assert main(["tecogan-lmdb", str(src), str(store)]) == 0
    assert main(["tecogan-lmdb", str(src), str(store)]) == 2
    one_line_error(capsys, "already exists", "--overwrite")
    assert main(["tecogan-lmdb", str(src), str(store), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["GT.lmdb", "data", "mine"]  # no temporaries left
    # the sequences file is an input too
    seqs = store / "seqs.txt"
    seqs.write_text("s1\n")
    assert main(["tecogan-lmdb", str(src), str(store), "--overwrite", "--sequences-file", str(seqs)]) == 2
    one_line_error(capsys, "contains the input")
    assert seqs.read_text() == "s1\n"


# ------------------------------------------------------------------ prune
def _prune_config(tmp_path: Path, **over) -> str:
    cfg = {"model": "zoo:SRNetStack", "model_kwargs": {"nf": 8, "nb": 4}, "input_shapes": [[1, 3, 8, 8]],
           "strategy": "positional", "target": {"kind": "keep_blocks", "n": 3}, "out": str(tmp_path / "out")}
    cfg.update(over)
    file = tmp_path / "prune.yaml"
    file.write_text(json.dumps(cfg))
    return str(file)


def test_prune_never_overwrites_its_weights_or_config(tmp_path, capsys):
    dense = zoo.SRNetStack(nf=8, nb=4)
    pk.save(dense, pk.Plan.identity(dense), tmp_path / "dense")
    before = digest(tmp_path / "dense")
    for out in (tmp_path / "dense", tmp_path / "dense" / "pruned", tmp_path):
        cfg = _prune_config(tmp_path, weights=str(tmp_path / "dense"), out=str(out))
        assert main(["prune", "--config", cfg, "--overwrite"]) == 2
        one_line_error(capsys, "input")
    assert digest(tmp_path / "dense") == before
    # a plain .safetensors state_dict as weights, out naming that very file
    from safetensors.torch import save_file

    sd = tmp_path / "dense.safetensors"
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, str(sd))
    sd_bytes = sd.read_bytes()
    assert main(["prune", "--config", _prune_config(tmp_path, weights=str(sd), out=str(sd))]) == 2
    one_line_error(capsys, "is the input")
    assert sd.read_bytes() == sd_bytes


def test_prune_output_folder_rules(tmp_path, capsys):
    cfg = _prune_config(tmp_path)
    assert main(["prune", "--config", cfg]) == 0
    first = digest(tmp_path / "out")
    assert main(["prune", "--config", cfg]) == 2
    one_line_error(capsys, "already exists", "--overwrite")
    assert digest(tmp_path / "out") == first
    assert main(["prune", "--config", cfg, "--overwrite"]) == 0  # an earlier prune output: replaced whole
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"plan.json", "spec.json", "model.safetensors", "report.json",
                                                              "report.md"}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "plan.json").write_text("someone else's")  # a checkpoint, but not a prune output
    assert main(["prune", "--config", cfg, "--out", str(foreign), "--overwrite"]) == 2
    one_line_error(capsys, "no report.json inside")
    assert (foreign / "plan.json").read_text() == "someone else's"
    a_file = tmp_path / "file.bin"
    a_file.write_bytes(b"\x00\x01")
    assert main(["prune", "--config", cfg, "--out", str(a_file)]) == 2
    one_line_error(capsys, "is a file, not a folder")
    assert a_file.read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("kwargs, needle", [({"nf": 8, "nb": 4, "wrong": 1}, "unexpected keyword argument 'wrong'"),
                                            ({"nf": 8, "nb": 4, "blocks": 2}, "'blocks'")])
def test_prune_bad_model_keywords_are_one_line(tmp_path, capsys, kwargs, needle):
    assert main(["prune", "--config", _prune_config(tmp_path, model_kwargs=kwargs)]) == 2
    one_line_error(capsys, "model_kwargs", needle)
    assert not (tmp_path / "out").exists()


def test_registered_factory_passing_kwargs_on_is_a_config_error(capsys, tmp_path):
    from prunekit.errors import ConfigError
    from prunekit.models import build_model

    with pytest.raises(ConfigError, match=r"'tecogan\.frnet'.*bogus"):
        build_model("tecogan.frnet", bogus=1)
    with pytest.raises(ConfigError, match=r"model_kwargs for 'torch\.nn:ReLU'.*'bogus'.*accepts \['inplace'\]"):
        build_model("torch.nn:ReLU", bogus=1)  # a plain factory: checked against its signature first


# ------------------------------------------------------------------ eval
def _eval_folders(tmp_path: Path, names=("car",)) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    rng = np.random.default_rng(1)
    for name in names:
        for root in (gt, pred):
            folder = root / name
            folder.mkdir(parents=True)
            for i in range(6):
                ok, png = cv2.imencode(".png", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
                (folder / f"{i:04d}.png").write_bytes(png.tobytes())  # cv2.imwrite cannot take non-UTF-8 names
    return gt, pred


def _eval(gt: Path, pred: Path, *extra: str) -> int:
    return main(["eval", "--pred", str(pred), "--gt", str(gt), "--metrics", "psnr", "--workers", "0",
                 "--device", "cpu", *extra])


def test_eval_reports_never_overwrite_frames_or_foreign_files(tmp_path, capsys):
    gt, pred = _eval_folders(tmp_path)
    before = digest(tmp_path)
    assert _eval(gt, pred, "--csv", str(gt / "car" / "0003.png")) == 2
    one_line_error(capsys, "--csv", "is inside the input")
    assert _eval(gt, pred, "--json", str(pred / "car" / "scores.json")) == 2
    one_line_error(capsys, "--json", "is inside the input")
    assert _eval(gt, pred, "--json", str(tmp_path)) == 2
    one_line_error(capsys, "is a folder; give a file name")
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\n1,2\n")
    before = digest(tmp_path)
    assert _eval(gt, pred, "--csv", str(notes)) == 2
    one_line_error(capsys, "notes.csv", "is not an output of this command")
    assert _eval(gt, pred, "--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.csv")) == 2
    one_line_error(capsys, "same file")
    assert digest(tmp_path) == before
    # new files, then a rerun replacing its own earlier reports
    for _ in range(2):
        assert _eval(gt, pred, "--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.json")) == 0
    assert (tmp_path / "r.csv").read_text().startswith("sequence,frames,PSNR")
    assert digest(gt) == {k[len("gt/"):]: v for k, v in before.items() if k.startswith("gt/")}


def test_eval_refuses_a_fifo_named_like_a_frame(tmp_path, capsys):
    gt, pred = _eval_folders(tmp_path)
    (pred / "car" / "0005.png").unlink()
    os.mkfifo(pred / "car" / "0005.png")

    def hung(*_):
        raise AssertionError("eval opened the FIFO and hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        assert _eval(gt, pred) == 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    one_line_error(capsys, "0005.png: is a FIFO", "regular files")


def test_eval_non_utf8_sequence_name_with_csv_and_json(tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name on a UTF-8 system
    gt, pred = _eval_folders(tmp_path, names=(name, "ok"))
    assert _eval(gt, pred, "--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.json")) == 0
    assert "caf\\xe9" in capsys.readouterr().out
    rows = (tmp_path / "r.csv").read_text(encoding="utf-8").splitlines()
    assert rows[1].startswith("caf\\xe9,6,")
    assert [s["name"] for s in json.loads((tmp_path / "r.json").read_text())["sequences"]] == ["caf\\xe9", "ok"]


# ------------------------------------------------------------------ convert
def test_convert_never_overwrites_files_or_its_source(tmp_path, capsys):
    from tecogan_plugin.nets import FRNet

    src = tmp_path / "G.pth"
    torch.save(FRNet(nb=1, nf=8).state_dict(), src)
    src_bytes = src.read_bytes()
    existing = tmp_path / "model.bin"
    existing.write_bytes(b"precious")
    assert main(["convert", "tecogan", str(src), str(existing)]) == 2
    one_line_error(capsys, "is a file, not a folder")
    assert main(["convert", "tecogan", str(src), str(src)]) == 2
    one_line_error(capsys, "is the input")
    assert main(["convert", "tecogan", str(src), str(tmp_path), "--overwrite"]) == 2
    one_line_error(capsys, "contains the input")
    assert existing.read_bytes() == b"precious" and src.read_bytes() == src_bytes
    out = tmp_path / "ckpt"
    assert main(["convert", "tecogan", str(src), str(out)]) == 0
    assert main(["convert", "tecogan", str(src), str(out)]) == 2
    one_line_error(capsys, "already exists", "--overwrite")
    assert main(["convert", "tecogan", str(src), str(out), "--overwrite"]) == 0
    assert {p.name for p in out.iterdir()} == {"plan.json", "model.safetensors", "spec.json"}


# ------------------------------------------------------------------ bench
def test_bench_out_never_replaces_a_foreign_folder(tmp_path, capsys):
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "paper.pdf").write_bytes(b"%PDF")
    assert main(["bench", "tecogan", "--out", str(foreign), "--fresh", "--no-progress"]) == 2
    one_line_error(capsys, "no settings.json inside")
    assert (foreign / "paper.pdf").read_bytes() == b"%PDF"
    ckpt = foreign / "G.pth"
    ckpt.write_bytes(b"weights")
    (foreign / "settings.json").write_text("{}")
    assert main(["bench", "tecogan", "--out", str(foreign), "--fresh", "--checkpoint", str(ckpt)]) == 2
    one_line_error(capsys, "contains the input")
    assert ckpt.read_bytes() == b"weights"


def test_upscale_never_writes_into_its_input(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    (frames / "0000.png").write_bytes(png.tobytes())
    before = digest(frames)
    for out in (frames, frames / "sr", tmp_path):
        assert main(["upscale", str(frames), "--model", str(tmp_path / "nope"), "--out", str(out)]) == 2
        one_line_error(capsys, "--out", "input")
    assert digest(frames) == before
