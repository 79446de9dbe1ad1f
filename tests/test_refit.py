"""prunekit.refit: least-squares refit of pruned layers to the dense ones, on every layer kind it
handles (Conv2d with zero or reflect padding, stride-2 ConvTranspose2d, Linear) and in models of
several families (SR network with a transposed-conv tail, BatchNorm ResNet, pre-norm transformer)."""

import copy

import torch
from torch import nn

import families
import prunekit as pk
import zoo
from test_channels import TecoLike


def _error(model: nn.Module, dense: nn.Module, batches: list) -> float:
    with torch.no_grad():
        return sum(float(((model(*b) - dense(*b)) ** 2).mean()) for b in batches) / len(batches)


def _pruned(model: nn.Module, example: tuple, ratio: float = 0.5) -> nn.Module:
    graph = pk.analyze(model, example)
    plan = pk.plan(model, graph, strategy="magnitude", target=pk.ChannelRatio(ratio))
    return pk.apply(model, plan, example).eval()


def test_an_unpruned_copy_is_already_exact_for_every_layer_kind():
    """The equivalent-convolution view of each layer (im2col, zero-upsampled input for a transposed
    convolution) reproduces its output: a copy's error is zero and its weights stay as they are."""
    torch.manual_seed(0)
    for up in (nn.ConvTranspose2d(8, 6, 3, 2, 1, output_padding=1), nn.ConvTranspose2d(8, 6, 4, 2, 1),
               nn.ConvTranspose2d(8, 6, 3, 1, 1)):
        dense = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), up, nn.ReLU(),
                              nn.Conv2d(6, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten(1), nn.LazyLinear(4))
        data = [(torch.randn(2, 3, 5, 7),) for _ in range(2)]
        dense(*data[0])
        same = copy.deepcopy(dense)
        report = pk.refit(same, dense, data)
        assert [f.path for f in report.fitted] == ["0", "2", "4", "6"] and not report.skipped
        assert all(f.error_before < 1e-12 for f in report.fitted)
        for a, b in zip(same.parameters(), dense.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_refit_brings_width_pruned_models_of_several_families_back_towards_the_dense_one():
    torch.manual_seed(0)
    cases = [
        (TecoLike(8, 3), lambda: (torch.rand(1, 3, 10, 10),)),
        (families.ResNetLike(8).eval(), lambda: (torch.rand(2, 3, 8, 8),)),
        (zoo.Transformer(16, 2), lambda: (torch.randn(2, 6, 4), torch.ones(2, 6, dtype=torch.bool))),
    ]
    for dense, draw in cases:
        dense.eval()
        pruned = _pruned(dense, draw())
        calibration, held_out = [draw() for _ in range(16)], [draw() for _ in range(4)]
        before = _error(pruned, dense, held_out)
        report = pk.refit(pruned, dense, calibration)
        after = _error(pruned, dense, held_out)
        name = type(dense).__name__
        assert report.fitted and all(f.error_after <= f.error_before for f in report.fitted), name
        assert any(f.error_after < 0.5 * f.error_before for f in report.fitted), name
        assert after < 0.7 * before, f"{name}: held-out error {before:.4g} -> {after:.4g}"
        if isinstance(dense, TecoLike):  # the transposed-conv tail is refit too
            assert {"conv_up.0", "conv_up.2", "conv_out"} <= {f.path for f in report.fitted}


def test_layers_that_are_not_sub_tensors_of_the_dense_ones_are_left_alone_and_reported():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2),
                          nn.ReLU(), nn.Conv2d(8, 4, 1))
    pruned = copy.deepcopy(dense)
    with torch.no_grad():
        pruned[4].weight.add_(0.1)  # trained since pruning
    kept = pruned[4].weight.clone()
    report = pk.refit(pruned, dense, [(torch.rand(1, 3, 6, 6),)])
    assert "trained or replaced" in report.skipped["4"] and "grouped" in report.skipped["2"]
    torch.testing.assert_close(pruned[4].weight, kept, rtol=0, atol=0)
    conv1d = nn.Sequential(nn.Conv1d(3, 4, 1))
    assert "only Conv2d" in pk.refit(conv1d, copy.deepcopy(conv1d), [(torch.rand(1, 3, 5),)]).skipped["0"]


def test_a_prune_stage_refits_before_healing(tmp_path):
    from test_schedule import config

    from prunekit.schedule import run

    stages = [{"kind": "prune", "strategy": "magnitude", "calibration": 0, "refit": 4,
               "target": {"kind": "channel_ratio", "prune": 0.5}}]
    result = run(config(tmp_path / "refit", stages=stages))
    history = (tmp_path / "refit" / "metrics.csv").read_text()
    assert "refit_layers" in history
    plain = run(config(tmp_path / "plain", stages=[{**stages[0], "refit": 0}]))
    changed = [n for (n, a), (_, b) in zip(result.model.named_parameters(), plain.model.named_parameters())
               if a.shape == b.shape and not torch.equal(a, b)]
    assert changed, "the refit left every weight as plain pruning made it"
