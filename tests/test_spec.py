"""Model specs: checkpoints that say what they hold, inputs rebuilt with their dtypes, bounded metadata."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import prunekit as pk
import zoo
from prunekit.registry import MODELS
from prunekit.spec import ModelEntry, ModelSpec, describe_inputs, spec_of, tensor, value

VOCAB = 50


class TokenBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class TokenNet(nn.Module):
    """Token ids + a bool mask + an int and a string option: nothing here is a float tensor input."""

    def __init__(self, d: int = 16, nb: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.blocks = nn.Sequential(*[TokenBlock(d) for _ in range(nb)])
        self.head = nn.Linear(d, classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, repeat: int = 1, pool: str = "mean") -> torch.Tensor:
        x = self.embed(ids)
        for _ in range(repeat):
            x = self.blocks(x)
        x = x * mask.unsqueeze(-1)
        x = x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1) if pool == "mean" else x.amax(1)
        return self.head(x)


def token_inputs(batch: int = 2) -> list:
    return [tensor("ids", (batch, 7), "int64", 0, VOCAB), tensor("mask", (batch, 7), "bool"),
            value("repeat", 2), value("pool", "max")]


MODELS.register("test.tokennet", ModelEntry(factory=TokenNet, inputs=token_inputs), overwrite=True)


def width_pruned_tokennet() -> tuple[nn.Module, pk.Plan, tuple]:
    model = pk.spec_for("test.tokennet", d=16, nb=3).build_model()
    inputs = spec_of(model).example_inputs()
    graph = pk.analyze(model, inputs)
    p = pk.plan(model, graph, strategy="magnitude", target=[pk.KeepBlocks(n=2), pk.ChannelRatio(prune=0.5)])
    return pk.apply(model, p, inputs), p, inputs


def test_inputs_are_rebuilt_with_their_dtypes_and_values() -> None:
    spec = pk.spec_for("test.tokennet")
    ids, mask, repeat, pool = spec.example_inputs()
    assert ids.dtype == torch.int64 and 0 <= int(ids.min()) and int(ids.max()) < VOCAB
    assert mask.dtype == torch.bool and (repeat, pool) == (2, "max")
    again = ModelSpec.model_validate_json(spec.model_dump_json()).example_inputs()
    assert torch.equal(again[0], ids) and torch.equal(again[1], mask)


def test_width_pruned_token_model_round_trip_without_build(tmp_path) -> None:
    small, p, inputs = width_pruned_tokennet()
    assert p.channels and p.removed  # both depth and width pruned
    pk.save(small, p, tmp_path / "ck")
    saved = json.loads((tmp_path / "ck" / "spec.json").read_text())
    assert saved["build"] == "test.tokennet" and saved["kwargs"] == {"d": 16, "nb": 3}
    assert [i["dtype"] for i in saved["inputs"][:2]] == ["int64", "bool"]
    loaded = pk.load(tmp_path / "ck")  # no build=
    with torch.no_grad():
        assert torch.equal(loaded.eval()(*inputs), small.eval()(*inputs))


def test_module_factory_spec_from_described_inputs(tmp_path) -> None:
    """A user's own model, never registered: `module:factory` plus inputs described from real ones."""
    model = TokenNet(d=8, nb=2)
    ids = torch.randint(0, VOCAB, (1, 5))
    ids[0, 0] = VOCAB - 1
    example = (ids, torch.ones(1, 5, dtype=torch.bool), 1, "mean")
    spec = ModelSpec(build="test_spec:TokenNet", kwargs={"d": 8, "nb": 2}, inputs=describe_inputs(example))
    assert spec.inputs[0].high == VOCAB and spec.inputs[3].value == "mean"
    graph = pk.analyze(model, example)
    p = pk.plan(model, graph, strategy="magnitude", target=pk.ChannelRatio(prune=0.5))
    small = pk.apply(model, p, example)
    pk.save(small, p, tmp_path, spec=spec)
    loaded = pk.load(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(*example), small(*example))


def test_describe_refuses_what_a_spec_cannot_hold() -> None:
    with pytest.raises(pk.ConfigError, match="'arg1' is a list"):
        describe_inputs((torch.zeros(1), [1, 2]))


def test_class_is_recorded_when_the_model_has_no_spec(tmp_path) -> None:
    model = zoo.EDSR(nb=3)  # built directly, not through a spec
    graph = pk.analyze(model, zoo.image())
    p = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(n=2))
    pk.save(pk.apply(model, p), p, tmp_path / "default")
    assert json.loads((tmp_path / "default" / "spec.json").read_text())["build"] == "zoo:EDSR"
    # the class was recorded but not nb=3 (EDSR's default is another), so load says what is missing
    with pytest.raises(pk.CheckpointError, match="without a complete spec"):
        pk.load(tmp_path / "default")
    assert len(pk.load(tmp_path / "default", build=zoo.EDSR, build_kwargs={"nb": 3}).body) == 3


def test_prune_again_records_prior_plans(tmp_path) -> None:
    """A loaded pruned model, pruned again and saved, loads alone: the spec replays both plans."""
    small, p, inputs = width_pruned_tokennet()
    pk.save(small, p, tmp_path / "one")
    loaded = pk.load(tmp_path / "one")
    p2 = pk.plan(loaded, pk.analyze(loaded, inputs), strategy="magnitude", target=pk.KeepBlocks(n=1))
    smaller = pk.apply(loaded, p2, inputs)
    pk.save(smaller, p2, tmp_path / "two")
    assert len(json.loads((tmp_path / "two" / "spec.json").read_text())["prior_plans"]) == 1
    again = pk.load(tmp_path / "two")
    with torch.no_grad():
        assert torch.equal(again(*inputs), smaller(*inputs))
    assert len(again.blocks) == 1


def old_layout_checkpoint(path) -> tuple[nn.Module, pk.Plan]:
    """A checkpoint as prunekit 0.1 wrote it: plan.json + model.safetensors, no spec.json."""
    model = zoo.EDSR(nb=3)
    graph = pk.analyze(model, zoo.image())
    p = pk.plan(model, graph, strategy="positional", target=[pk.KeepBlocks(n=2), pk.ChannelRatio(prune=0.25)])
    small = pk.apply(model, p)
    path.mkdir()
    (path / "plan.json").write_text(p.model_dump_json(indent=2))
    save_file({k: v.contiguous().clone() for k, v in small.state_dict().items()}, str(path / "model.safetensors"),
              metadata={"format": "pt", "prunekit_version": "0.1.0"})
    return small, p


def test_old_layout_still_loads(tmp_path) -> None:
    small, _ = old_layout_checkpoint(tmp_path / "old")
    with pytest.raises(pk.CheckpointError, match="no spec.json.*pass build="):
        pk.load(tmp_path / "old")
    loaded = pk.load(tmp_path / "old", build="zoo:EDSR", build_kwargs={"nb": 3})
    x = zoo.image()
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
    # saving it again records the spec, so the next load needs nothing
    pk.save(loaded, pk.Plan.identity(loaded), tmp_path / "resaved")
    with torch.no_grad():
        assert torch.equal(pk.load(tmp_path / "resaved")(x), small(x))


def tamper(path, file: str, edit) -> None:
    data = json.loads((path / file).read_text())
    edit(data)
    (path / file).write_text(json.dumps(data))


@pytest.mark.parametrize("file,edit,message", [
    ("plan.json", lambda d: d.update(removed=d["removed"] * 5000), "duplicated entries"),
    ("plan.json", lambda d: d.update(input_shapes={"arg0": [60000, 60000]}), "at most 67,108,864 elements"),
    ("plan.json", lambda d: d["channels"][0].update(idxs=[0, 0]), "distinct"),
    ("spec.json", lambda d: d["inputs"][0].update(shape=[60000, 60000]), "limit 67,108,864"),
    ("spec.json", lambda d: d.update(kwargs={"d": 200000, "nb": 3}), "into 480,012,600,004 parameters"),
    ("spec.json", lambda d: d.update(kwargs={"d": 17, "nb": 3}), "parameters"),
    ("spec.json", lambda d: d.update(inputs=[d["inputs"][0]] * 65), "at most 64"),
])
def test_tampered_metadata_is_refused_before_allocating(tmp_path, file, edit, message) -> None:
    small, p, _ = width_pruned_tokennet()
    pk.save(small, p, tmp_path)
    tamper(tmp_path, file, edit)
    with pytest.raises(pk.CheckpointError, match=message):
        pk.load(tmp_path)


def test_consistently_tampered_size_is_refused_by_the_weights_bound(tmp_path) -> None:
    """Options, spec params and plan agree on a huge model: the stored weights are the bound."""
    small, p, _ = width_pruned_tokennet()
    pk.save(small, p, tmp_path)
    huge = 480_012_600_004
    tamper(tmp_path, "spec.json", lambda d: d.update(kwargs={"d": 200000, "nb": 3}, params=huge))
    tamper(tmp_path, "plan.json", lambda d: d["stats"].update(params_before=huge))
    with pytest.raises(pk.CheckpointError, match="more than 1000x"):
        pk.load(tmp_path)


def test_oversized_metadata_file_is_refused(tmp_path, monkeypatch) -> None:
    from prunekit import checkpoint

    small, p, _ = width_pruned_tokennet()
    pk.save(small, p, tmp_path)
    monkeypatch.setattr(checkpoint, "MAX_METADATA_BYTES", 100)
    with pytest.raises(pk.CheckpointError, match="more than the limit 100"):
        pk.load(tmp_path)


def test_schedule_final_folder_loads_alone(tmp_path) -> None:
    """The schedule engine composes its plans from the dense model; the spec it records must agree."""
    from prunekit.schedule import run
    from test_schedule import config

    stages = [{"kind": "prune", "strategy": "magnitude", "calibration": 0, "target": {"kind": "keep_blocks", "n": 2},
               "iterative": {"remove": 1, "finetune": {"kind": "finetune", "iterations": 1, "batch": 2}}},
              {"kind": "prune", "strategy": "magnitude", "calibration": 0,
               "target": {"kind": "channel_ratio", "prune": 0.5}}]
    result = run(config(tmp_path / "run", stages=stages))
    again = pk.load(result.run_dir / "final")
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), result.model.eval()(x))


def test_plain_factory_with_example_inputs_attribute_still_works() -> None:
    """The pre-spec convention: a factory carrying `example_inputs`; building leaves the caller's RNG alone."""
    def factory(d: int = 8) -> nn.Module:
        return TokenNet(d=d, nb=2)

    factory.example_inputs = lambda: (torch.randint(0, VOCAB, (1, 4)), torch.ones(1, 4, dtype=torch.bool))
    MODELS.register("test.plain_tokennet", factory, overwrite=True)
    model = pk.spec_for("test.plain_tokennet", d=8).build_model()
    spec = spec_of(model)
    assert [i.dtype for i in spec.inputs] == ["int64", "bool"] and spec.kwargs == {"d": 8}
    torch.manual_seed(123)
    TokenNet(d=8, nb=2)
    after_plain = torch.rand(3)
    torch.manual_seed(123)
    pk.spec_for("test.plain_tokennet", d=8).build_model()
    assert torch.equal(torch.rand(3), after_plain)  # same RNG use as building the class directly
