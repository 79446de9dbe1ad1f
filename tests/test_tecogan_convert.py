"""Published TecoGAN-PyTorch generator files -> FRNet -> prunekit checkpoints."""

import json

import pytest
import torch

import prunekit as pk
from prunekit.errors import CheckpointError
from tecogan_plugin.convert import convert, infer_options, load_converted, load_published_generator
from tecogan_plugin.nets import FRNet


def _published_file(tmp_path, prefix="", **options):
    """Save a generator the way TecoGAN-PyTorch does (bare state_dict, optionally DataParallel-prefixed)."""
    model = FRNet(**options)
    path = tmp_path / "G.pth"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    return model, path


@pytest.mark.parametrize(
    "options",
    [dict(nb=2), dict(nb=3, degradation="BI"), dict(nb=1, scale=2)],
    ids=["BDx4", "BIx4", "BDx2"],
)
def test_options_inferred_and_weights_loaded(tmp_path, options):
    source, path = _published_file(tmp_path, **options)
    model = load_published_generator(path)
    expected = {"in_nc": 3, "out_nc": 3, "nf": 64, "nb": 10, "scale": 4, "degradation": "BD", **options}
    assert infer_options(model.state_dict()) == expected
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert not model.training


def test_module_prefix_is_stripped(tmp_path):
    _, path = _published_file(tmp_path, prefix="module.", nb=1)
    assert len(load_published_generator(path).srnet.resblocks) == 1


def test_mismatched_keys_are_listed(tmp_path):
    source = FRNet(nb=1).state_dict()
    source.pop("srnet.conv_out.bias")
    source["srnet.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(source, path)
    with pytest.raises(CheckpointError, match=r"missing: srnet\.conv_out\.bias; unexpected: srnet\.extra\.weight"):
        load_published_generator(path)


def test_not_a_generator_or_unsafe_file(tmp_path):
    path = tmp_path / "d.pth"
    torch.save({"dense.weight": torch.zeros(1, 4)}, path)
    with pytest.raises(CheckpointError, match="fnet.encoder1.0.weight"):
        load_published_generator(path)
    pickled = tmp_path / "obj.pth"
    torch.save({"net": FRNet(nb=0)}, pickled)  # a pickled module is refused, never unpickled
    with pytest.raises(CheckpointError, match="weights-only"):
        load_published_generator(pickled)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_published_generator(tmp_path / "missing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")  # torch.load raises a bare KeyError on this
    with pytest.raises(CheckpointError, match="weights-only"):
        load_published_generator(text)


def test_scale_must_agree_and_degradation_can_be_overridden(tmp_path):
    _, path = _published_file(tmp_path, nb=1, degradation="BI")
    with pytest.raises(CheckpointError, match="x4"):
        load_published_generator(path, scale=2)
    bd = load_published_generator(path, degradation="BD")
    assert bd.degradation == "BD" and "srnet.upsample_func.kernels" in bd.state_dict()


def test_convert_writes_a_loadable_prunekit_checkpoint(tmp_path):
    source, path = _published_file(tmp_path, nb=2, degradation="BI")
    out = convert(path, tmp_path / "ckpt")
    assert {p.name for p in out.iterdir()} == {"plan.json", "model.safetensors", "spec.json"}
    assert json.loads((out / "plan.json").read_text())["removed"] == []
    spec = json.loads((out / "spec.json").read_text())
    assert spec["build"] == "tecogan.frnet" and spec["kwargs"]["degradation"] == "BI" and spec["kwargs"]["nb"] == 2
    model = pk.load(out)  # the spec alone rebuilds it
    assert isinstance(model, FRNet) and model.degradation == "BI"
    model = load_converted(out)
    x = (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 64, 64))
    with torch.no_grad():
        torch.testing.assert_close(model(*x), source.eval()(*x))


def test_convert_command(tmp_path, capsys):
    from prunekit.cli import main

    _, path = _published_file(tmp_path, nb=1)
    assert main(["convert", "tecogan", str(path), str(tmp_path / "out")]) == 0
    assert "nb=1" in capsys.readouterr().out
    assert main(["convert", "tecogan", str(tmp_path / "nope.pth"), str(tmp_path / "o2")]) == 2
