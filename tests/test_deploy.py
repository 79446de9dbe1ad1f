"""Deployment: width-pruned checkpoint folders through every command, ONNX export and its parity,
`upscale` on an exported step, and FRNet folders written before spec.json existed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import save_file

import prunekit as pk
from prunekit.cli import main
from prunekit.commands.analyze import resolve_layout
from prunekit.models import build_model
from tecogan_plugin.data.frames import read_frame, write_frame
from tecogan_plugin.nets import FRNet
from tecogan_plugin.upscale import load_generator, upscale_frames


def pruned_frnet() -> tuple[FRNet, pk.Plan]:
    """A tiny FRNet (nf 8, nb 3) pruned in depth (2 blocks kept) and width (half of SRNet's channels)."""
    torch.manual_seed(0)
    model = build_model("tecogan.frnet", nf=8, nb=3)
    inputs = pk.spec_of(model).example_inputs()
    graph = pk.analyze(model, inputs, resolve_layout("tecogan.frnet"))
    p = pk.plan(model, graph, strategy="magnitude", target=[pk.KeepBlocks(n=2), pk.ChannelRatio(prune=0.5)])
    return pk.apply(model, p, inputs).eval(), p


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    small, p = pruned_frnet()
    assert p.removed and p.channels
    return pk.save(small, p, tmp_path_factory.mktemp("ckpt") / "width_pruned")


@pytest.fixture(scope="module")
def onnx_file(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "step.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    return out


def clip_folder(path: Path, n: int = 4, h: int = 20, w: int = 28) -> Path:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (h + n, w + 2 * n, 3), dtype=np.uint8)
    path.mkdir()
    for i in range(n):
        write_frame(path / f"{i:04d}.png", np.ascontiguousarray(base[i:i + h, 2 * i:2 * i + w]))
    return path


def read_folder(path: Path) -> list[np.ndarray]:
    return [read_frame(f) for f in sorted(path.glob("*.png"))]


def test_width_pruned_frnet_loads_from_its_folder_alone(ckpt) -> None:
    small, _ = pruned_frnet()
    loaded = pk.load(ckpt)
    assert isinstance(loaded, FRNet) and len(loaded.srnet.resblocks) == 2
    assert loaded.srnet.conv_in[0].out_channels == small.srnet.conv_in[0].out_channels < 8
    x = pk.spec_of(loaded).example_inputs(seed=5)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(*x), small(*x))
        assert torch.equal(load_generator(ckpt)(*x), small(*x))


def test_analyze_takes_a_checkpoint_folder(ckpt, capsys) -> None:
    assert main(["analyze", str(ckpt), "--json"]) == 0
    graph = json.loads(capsys.readouterr().out)
    small, p = pruned_frnet()
    assert graph["total_params"] == p.stats.params_after
    assert [u["path"] for u in graph["units"]] == ["srnet.resblocks.0", "srnet.resblocks.1"]


def test_prune_takes_a_checkpoint_folder_and_prunes_it_further(ckpt, tmp_path) -> None:
    cfg = tmp_path / "prune.yaml"
    cfg.write_text(f"weights: {ckpt}\nstrategy: magnitude\ntarget: {{kind: keep_blocks, n: 1}}\nout: {tmp_path / 'out'}\n")
    assert main(["prune", "--config", str(cfg)]) == 0
    again = pk.load(tmp_path / "out")  # replays the first plan, then the second
    assert len(again.srnet.resblocks) == 1
    assert again.srnet.conv_in[0].out_channels == pk.load(ckpt).srnet.conv_in[0].out_channels
    assert len(json.loads((tmp_path / "out" / "spec.json").read_text())["prior_plans"]) == 1


def test_upscale_takes_a_width_pruned_folder(ckpt, tmp_path) -> None:
    src = clip_folder(tmp_path / "lr")
    assert main(["upscale", str(src), "--model", str(ckpt), "--out", str(tmp_path / "hr"), "--device", "cpu",
                 "--no-fast", "--warmup", "2"]) == 0
    expected = list(upscale_frames(pk.load(ckpt), read_folder(src), device="cpu", fast=False, warmup=2))
    got = read_folder(tmp_path / "hr")
    assert len(got) == 4 and all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_export_matches_pytorch_at_a_frame_size_it_was_not_exported_at(ckpt, onnx_file, capsys) -> None:
    model = pk.load(ckpt)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["lr_curr", "lr_prev", "hr_prev"]
    for h, w in [(27, 45), (16, 64)]:  # exported at 36x36
        gen = torch.Generator().manual_seed(h)
        x = (torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen),
             torch.rand(1, 3, 4 * h, 4 * w, generator=gen))
        (got,) = session.run(None, {n: t.numpy() for n, t in zip(["lr_curr", "lr_prev", "hr_prev"], x)})
        with torch.no_grad():
            ref = model(*x).numpy()
        assert got.shape == ref.shape == (1, 3, 4 * h, 4 * w)
        assert np.abs(got - ref).max() < 1e-4


def test_export_prints_the_difference_per_input_size(ckpt, tmp_path, capsys) -> None:
    assert main(["export", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    sizes = re.findall(r"inputs 1x3x(\d+x\d+),", out)
    assert len(set(sizes)) == 3 and "largest difference" in out


def test_export_fails_above_atol_and_writes_nothing(ckpt, tmp_path, capsys) -> None:
    assert main(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--atol", "1e-12"]) == 2
    assert "differs from PyTorch" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("inside", [".", "m.onnx", "sub/m.onnx"])
def test_export_refuses_an_output_in_the_checkpoint(ckpt, inside, capsys) -> None:
    before = sorted(p.name for p in ckpt.iterdir())
    assert main(["export", str(ckpt), "--out", str(ckpt / inside)]) == 2
    assert re.search(r"is the input itself|inside the input|is a folder", capsys.readouterr().err)
    assert sorted(p.name for p in ckpt.iterdir()) == before


def test_export_never_replaces_a_file_it_did_not_write(ckpt, tmp_path, capsys) -> None:
    mine = tmp_path / "notes.onnx"
    mine.write_text("the user's file")
    assert main(["export", str(ckpt), "--out", str(mine)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--out", str(mine), "--overwrite"]) == 2
    assert "not an output of this command" in capsys.readouterr().err
    assert mine.read_text() == "the user's file"
    exported = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--out", str(exported)]) == 0
    first = exported.read_bytes()
    assert main(["export", str(ckpt), "--out", str(exported)]) == 2  # an earlier export needs --overwrite
    assert main(["export", str(ckpt), "--out", str(exported), "--overwrite"]) == 0
    assert exported.read_bytes() == first


def test_upscale_with_onnxruntime_matches_pytorch(ckpt, onnx_file, tmp_path, capsys) -> None:
    src = clip_folder(tmp_path / "lr", n=5, h=19, w=30)
    assert main(["upscale", str(src), "--model", str(onnx_file), "--out", str(tmp_path / "onnx"),
                 "--device", "cpu", "--warmup", "3"]) == 0
    assert "[onnxruntime]" in capsys.readouterr().out
    assert main(["upscale", str(src), "--model", str(ckpt), "--out", str(tmp_path / "torch"), "--device", "cpu",
                 "--no-fast", "--warmup", "3"]) == 0
    onnx, ref = read_folder(tmp_path / "onnx"), read_folder(tmp_path / "torch")
    assert len(onnx) == len(ref) == 5
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(onnx, ref)) <= 1  # uint8 rounding at most


def test_generic_model_exports_with_token_ids_and_fixed_arguments(tmp_path) -> None:
    from test_spec import width_pruned_tokennet

    small, p, inputs = width_pruned_tokennet()
    pk.save(small, p, tmp_path / "ck")
    assert main(["export", str(tmp_path / "ck"), "--out", str(tmp_path / "tok.onnx")]) == 0
    session = ort.InferenceSession(str(tmp_path / "tok.onnx"), providers=["CPUExecutionProvider"])
    ids, mask, repeat, pool = inputs
    (got,) = session.run(None, {"ids": ids.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        assert np.abs(got - small(ids, mask, repeat, pool).numpy()).max() < 1e-5
    # and an ONNX file that is not an FRNet step is refused by upscale, with the reason
    assert main(["upscale", str(clip_folder(tmp_path / "lr")), "--model", str(tmp_path / "tok.onnx"),
                 "--out", str(tmp_path / "hr"), "--device", "cpu"]) == 2


# --- folders written before spec.json (prunekit 0.1) ----------------------------------------------------


def old_frnet_folder(path: Path, frnet_json: dict | None) -> tuple[FRNet, pk.Plan]:
    small, p = pruned_frnet()
    path.mkdir()
    (path / "plan.json").write_text(p.model_dump_json(indent=2))
    save_file({k: v.contiguous().clone() for k, v in small.state_dict().items()}, str(path / "model.safetensors"))
    if frnet_json is not None:
        (path / "frnet.json").write_text(json.dumps({"build": "tecogan.frnet", "build_kwargs": frnet_json}))
    return small, p


def test_old_frnet_folder_with_frnet_json_loads_and_upscales(tmp_path) -> None:
    small, _ = old_frnet_folder(tmp_path / "old", {"nf": 8, "nb": 3, "scale": 4, "degradation": "BD"})
    loaded = load_generator(tmp_path / "old")
    x = pk.spec_of(loaded).example_inputs()
    with torch.no_grad():
        assert torch.equal(loaded(*x), small(*x))
    assert main(["upscale", str(clip_folder(tmp_path / "lr")), "--model", str(tmp_path / "old"),
                 "--out", str(tmp_path / "hr"), "--device", "cpu"]) == 0


def test_old_width_pruned_folder_without_frnet_json_asks_for_nf(tmp_path) -> None:
    small, _ = old_frnet_folder(tmp_path / "old", None)
    with pytest.raises(pk.CheckpointError, match="nf"):
        load_generator(tmp_path / "old")
    assert len(load_generator(tmp_path / "old", nf=8).srnet.resblocks) == 2


@pytest.mark.parametrize("edit,message", [
    (lambda d: (d / "frnet.json").write_text(json.dumps({"build_kwargs": {"nf": 200000, "nb": 3}})), "nf"),
    (lambda d: (d / "frnet.json").write_text(json.dumps({"build_kwargs": {"nf": 8, "nb": 10**6}})), "nb"),
    (lambda d: (d / "plan.json").write_text(json.dumps({**json.loads((d / "plan.json").read_text()),
     "removed": ["srnet.resblocks.2"] * 5000})), "duplicated"),
])
def test_tampered_old_folders_are_refused_before_allocating(tmp_path, edit, message) -> None:
    old_frnet_folder(tmp_path / "old", {"nf": 8, "nb": 3})
    edit(tmp_path / "old")
    with pytest.raises(pk.CheckpointError, match=message):
        load_generator(tmp_path / "old")


def test_tampered_spec_options_are_refused(ckpt, tmp_path) -> None:
    import shutil

    shutil.copytree(ckpt, tmp_path / "ck")
    spec = json.loads((tmp_path / "ck" / "spec.json").read_text())
    spec["kwargs"]["nf"] = 200000
    (tmp_path / "ck" / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(pk.CheckpointError, match=r"spec.json: invalid options .*nf: .*less than or equal to 1024"):
        pk.load(tmp_path / "ck")
    assert main(["upscale", str(clip_folder(tmp_path / "lr")), "--model", str(tmp_path / "ck"),
                 "--out", str(tmp_path / "hr"), "--device", "cpu"]) == 2


def test_bench_checkpoint_takes_a_dense_folder_and_refuses_a_pruned_one(ckpt, tmp_path, monkeypatch, capsys) -> None:
    import tecogan_plugin.bench.grid as grid

    dense = build_model("tecogan.frnet", nf=8, nb=3)
    pk.save(dense, pk.Plan.identity(dense), tmp_path / "dense")
    seen = {}

    def fake_run_bench(preset, out, checkpoint=None, **kw):  # the grid itself is tested in test_tecogan_bench
        seen["checkpoint"] = checkpoint
        (out).mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("report")

    monkeypatch.setattr(grid, "run_bench", fake_run_bench)
    assert main(["bench", "tecogan", "--checkpoint", str(tmp_path / "dense"), "--out", str(tmp_path / "b")]) == 0
    assert seen["checkpoint"] == str(tmp_path / "dense")
    assert main(["bench", "tecogan", "--checkpoint", str(ckpt), "--out", str(tmp_path / "b")]) == 2
    assert "holds a pruned model" in capsys.readouterr().err
