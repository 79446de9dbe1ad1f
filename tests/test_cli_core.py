"""`prunekit analyze` and `prunekit prune` end to end, in-process."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
import prunekit as pk
from prunekit.cli import main


def test_analyze_table_shows_nesting(capsys) -> None:
    assert main(["analyze", "zoo:RCAN", "--input-shape", "1,3,8,8"]) == 0
    out = capsys.readouterr().out
    assert "6 units (4 removable blocks)" in out
    lines = {line.strip().split()[0]: line for line in out.splitlines() if line.strip().startswith("body.")}
    assert lines["body.0.body.1"].startswith("  body.0.body.1")  # indented under its group
    assert lines["body.0"].startswith("body.0")
    assert "3,004" in lines["body.0"]


def test_analyze_json(capsys) -> None:
    assert main(["analyze", "zoo:SRNetStack", "-m", "nb=3", "--input-shape", "1,3,8,8", "--json"]) == 0
    graph = pk.Graph.model_validate_json(capsys.readouterr().out)
    assert [u.params for u in graph.leaves()] == [73_856] * 3
    assert graph.unit("resblocks").container


def test_analyze_bad_input_shape_exits_2(capsys) -> None:
    assert main(["analyze", "zoo:EDSR", "--input-shape", "1,5,8,8"]) == 2
    assert "[1, 5, 8, 8]" in capsys.readouterr().err


def test_analyze_needs_shapes_without_registered_inputs(capsys) -> None:
    assert main(["analyze", "zoo:EDSR"]) == 2
    assert "--input-shape" in capsys.readouterr().err


def write_config(path, **overrides) -> str:
    cfg = {
        "model": "zoo:SRNetStack",
        "model_kwargs": {"nf": 16, "nb": 6},
        "input_shapes": [[1, 3, 8, 8]],
        "strategy": "magnitude",
        "target": {"kind": "keep_blocks", "n": 4},
        "out": str(path / "out"),
    }
    cfg.update(overrides)
    file = path / "prune.yaml"
    file.write_text(json.dumps(cfg))  # JSON is valid YAML
    return str(file)


def test_prune_writes_checkpoint_and_report(tmp_path, capsys) -> None:
    assert main(["prune", "--config", write_config(tmp_path)]) == 0
    out = tmp_path / "out"
    assert {f.name for f in out.iterdir()} == {"plan.json", "spec.json", "model.safetensors", "report.json", "report.md"}
    report = json.loads((out / "report.json").read_text())
    assert len(report["removed"]) == 2
    assert report["stats"]["params_before"] - report["stats"]["params_after"] == 2 * (2 * (16 * 16 * 9 + 16))
    assert "| params |" in (out / "report.md").read_text()
    model = pk.load(out, build="zoo:SRNetStack", build_kwargs={"nf": 16, "nb": 6})
    assert len(model.resblocks) == 4


def test_prune_from_dense_weights_toml(tmp_path) -> None:
    torch.manual_seed(3)
    dense = zoo.SRNetStack(nf=16, nb=6)
    pk.save(dense, pk.Plan.identity(dense), tmp_path / "dense")
    toml = tmp_path / "prune.toml"
    toml.write_text(
        'model = "zoo:SRNetStack"\nweights = "%s"\ninput_shapes = [[1, 3, 8, 8]]\nstrategy = "positional"\n'
        'out = "%s"\n[model_kwargs]\nnf = 16\nnb = 6\n[[target]]\nkind = "keep_blocks"\nn = 5\n'
        % (tmp_path / "dense", tmp_path / "out")
    )
    assert main(["prune", "--config", str(toml)]) == 0
    small = pk.load(tmp_path / "out", build=lambda: zoo.SRNetStack(nf=16, nb=6))
    assert pk.load_plan(tmp_path / "out").removed == ["resblocks.5"]  # positional: drop the last block
    # the surviving layers carry the dense weights
    assert torch.equal(small.conv_in[0].weight, dense.conv_in[0].weight)
    assert torch.equal(small.resblocks[4].conv[2].weight, dense.resblocks[4].conv[2].weight)


@pytest.mark.parametrize(
    "override, field",
    [({"target": {"kind": "keep_blocks"}}, "target"), ({"surprise": 1}, "surprise"), ({"strategy": 3}, "strategy")],
)
def test_prune_bad_config_names_field(tmp_path, capsys, override, field) -> None:
    assert main(["prune", "--config", write_config(tmp_path, **override)]) == 2
    assert field in capsys.readouterr().err


def test_prune_unreachable_target_exits_2(tmp_path, capsys) -> None:
    assert main(["prune", "--config", write_config(tmp_path, target={"kind": "keep_blocks", "n": 9})]) == 2
    assert "prunekit prune: error" in capsys.readouterr().err


def test_analyze_registered_model_defaults(capsys) -> None:
    """A registered model's own example inputs get the options they share with the model (`scale`),
    and its registered layout is used."""
    assert main(["analyze", "tecogan.frnet", "-m", "nb=3", "-m", "scale=2", "--json"]) == 0
    graph = pk.Graph.model_validate_json(capsys.readouterr().out)
    assert [u.path for u in graph.units] == [f"srnet.resblocks.{i}" for i in range(3)]
    assert graph.input_shapes["arg2"] == [1, 3, 64, 64]


def test_analyze_several_input_shapes(capsys) -> None:
    assert main(["analyze", "tecogan.frnet", "--input-shape", "1,3,8,8", "1,3,8,8", "1,3,32,32"]) == 0
    assert "10 units (10 removable blocks)" in capsys.readouterr().out


def test_prune_from_plain_safetensors_state_dict(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(4)
    dense = zoo.SRNetStack(nf=16, nb=6)
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, str(tmp_path / "dense.safetensors"))
    cfg = write_config(tmp_path, weights=str(tmp_path / "dense.safetensors"), strategy="positional")
    assert main(["prune", "--config", cfg]) == 0
    small = pk.load(tmp_path / "out", build=lambda: zoo.SRNetStack(nf=16, nb=6))
    assert torch.equal(small.resblocks[3].conv[0].weight, dense.resblocks[3].conv[0].weight)
    assert torch.equal(small.conv_out.weight, dense.conv_out.weight)
