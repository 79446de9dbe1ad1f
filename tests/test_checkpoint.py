"""Checkpoints: plan.json + model.safetensors, rebuilt from code, bit-exact, nothing unpickled."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import zoo
import prunekit as pk


def pruned_rcan() -> tuple[nn.Module, pk.Plan]:
    model = zoo.RCAN(n_groups=2, n_blocks=3)
    graph = pk.analyze(model, zoo.image())
    p = pk.plan(model, graph, strategy="magnitude", target=pk.KeepBlocks(n=3))
    return pk.apply(model, p), p


def test_save_load_bit_exact(tmp_path) -> None:
    small, p = pruned_rcan()
    pk.save(small, p, tmp_path / "ck")
    assert sorted(f.name for f in (tmp_path / "ck").iterdir()) == ["model.safetensors", "plan.json", "spec.json"]
    loaded = pk.load(tmp_path / "ck", build=lambda: zoo.RCAN(n_groups=2, n_blocks=3))
    x = zoo.image(batch=2)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), small.eval()(x))
    assert pk.load_plan(tmp_path / "ck" / "plan.json") == p


def test_load_by_class_and_spec_string(tmp_path) -> None:
    model = zoo.EDSR(nb=3)
    graph = pk.analyze(model, zoo.image())
    p = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(n=2))
    pk.save(pk.apply(model, p), p, tmp_path)
    by_class = pk.load(tmp_path, build=zoo.EDSR, build_kwargs={"nb": 3})
    by_spec = pk.load(tmp_path, build="zoo:EDSR", build_kwargs={"nb": 3})
    assert len(by_class.body) == len(by_spec.body) == 3  # 2 blocks + trunk conv
    assert all(torch.equal(a, b) for a, b in zip(by_class.state_dict().values(), by_spec.state_dict().values()))


class SharedBuffer(nn.Module):
    """Like TecoGAN BD mode: one buffer module reachable under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Module()
        self.up.register_buffer("kernels", torch.arange(8.0).reshape(2, 4))
        self.inner = nn.Module()
        self.inner.up = self.up
        self.blocks = nn.Sequential(zoo.EDSRBlock(3), zoo.EDSRBlock(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x) * self.up.kernels.sum()


def test_shared_tensors_saved_and_reloaded(tmp_path) -> None:
    model = SharedBuffer()
    graph = pk.analyze(model, zoo.image())
    p = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(n=1))
    pk.save(pk.apply(model, p), p, tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert torch.equal(stored["up.kernels"], stored["inner.up.kernels"])
    loaded = pk.load(tmp_path, build=SharedBuffer)
    assert loaded.up is loaded.inner.up and len(loaded.blocks) == 1


def test_missing_unexpected_and_wrong_shape_tensors_are_named(tmp_path) -> None:
    small, p = pruned_rcan()
    pk.save(small, p, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors.pop("head.weight")
    tensors["extra.weight"] = torch.zeros(1)
    tensors["tail.1.bias"] = torch.zeros(7)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(pk.CheckpointError) as err:
        pk.load(tmp_path, build=lambda: zoo.RCAN(n_groups=2, n_blocks=3))
    msg = str(err.value)
    assert "missing: head.weight" in msg and "unexpected: extra.weight" in msg and "tail.1.bias (checkpoint [7]" in msg


def test_missing_or_corrupt_files(tmp_path) -> None:
    build = lambda: zoo.RCAN(n_groups=2, n_blocks=3)  # noqa: E731
    with pytest.raises(pk.CheckpointError, match="does not exist"):
        pk.load(tmp_path / "nowhere", build=build)
    small, p = pruned_rcan()
    pk.save(small, p, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(pk.CheckpointError, match="model.safetensors"):
        pk.load(tmp_path, build=build)
    plan = json.loads((tmp_path / "plan.json").read_text())
    plan["surprise"] = 1
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(pk.CheckpointError, match="plan.json"):
        pk.load_plan(tmp_path / "plan.json")


def test_plan_for_another_model_is_a_mismatch(tmp_path) -> None:
    small, p = pruned_rcan()
    pk.save(small, p, tmp_path)
    with pytest.raises(pk.PlanMismatchError, match="parameters"):
        pk.load(tmp_path, build=lambda: zoo.RCAN(n_groups=2, n_blocks=4))


def test_save_leaves_no_temporary_files(tmp_path) -> None:
    small, p = pruned_rcan()
    pk.save(small, p, tmp_path)
    pk.save(small, p, tmp_path)  # overwriting an existing checkpoint
    assert sorted(f.name for f in tmp_path.iterdir()) == ["model.safetensors", "plan.json", "spec.json"]


def test_tecogan_frnet_bd_prune_save_load(tmp_path) -> None:
    """The headline case: FRNet (BD mode, shared `kernels` buffers) pruned to 5 blocks, saved, rebuilt
    from the registered spec, bit-exact, with the state_dict of a native 5-block FRNet."""
    from prunekit.models import build_model, resolve_factory
    from prunekit.registry import LAYOUTS

    inputs = resolve_factory("tecogan.frnet").example_inputs(lr_size=(8, 8))
    model = build_model("tecogan.frnet", degradation="BD").eval()
    graph = pk.analyze(model, inputs, LAYOUTS.get("tecogan.frnet"))
    assert [u.path for u in graph.leaves()] == [f"srnet.resblocks.{i}" for i in range(10)]
    p = pk.plan(model, graph, strategy="positional", target=pk.KeepBlocks(n=5))
    assert p.stats.params_before - p.stats.params_after == 5 * 73_856
    small = pk.apply(model, p)
    pk.save(small, p, tmp_path)
    loaded = pk.load(tmp_path, build="tecogan.frnet", build_kwargs={"degradation": "BD"}).eval()
    native = build_model("tecogan.frnet", degradation="BD", nb=5)
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in native.state_dict().items()}
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), small(*inputs))
