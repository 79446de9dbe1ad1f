import pytest
import torch
from torch import nn

from prunekit import registry, strategies
from prunekit.errors import ConfigError, UnknownNameError
from prunekit.strategies import Calibration, Strategy, get_strategy, register_strategy


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class Net(nn.Module):
    """head -> 5 residual blocks -> tail; block 1 has an all-zero branch, block 3 a 40x one."""

    ZERO, BIG = "blocks.1", "blocks.3"

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(c) for _ in range(5)])
        self.tail = nn.Conv2d(c, 3, 3, padding=1)
        with torch.no_grad():
            for p in self.blocks[1].parameters():
                p.zero_()
            for p in self.blocks[3].parameters():
                p.mul_(40.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.blocks(self.head(x)))


UNITS = [f"blocks.{i}" for i in range(5)]


def calibration(fit: nn.Module | None = None) -> Calibration:
    """Two input batches; with `fit`, targets are that model's outputs plus a little noise, as
    for a trained model (removing a large branch then hurts the task loss)."""
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(2, 3, 8, 8, generator=gen) for _ in range(2)]
    if fit is None:
        return Calibration(inputs=inputs)
    with torch.no_grad():
        targets = [fit(x) + 0.1 * torch.randn(2, 3, 8, 8, generator=gen) for x in inputs]
    return Calibration(inputs=inputs, targets=targets, loss_fn=nn.functional.mse_loss)


def ranking(scores: dict[str, float]) -> list[str]:
    """Paths from first-to-remove to last-to-remove."""
    return sorted(scores, key=scores.__getitem__)


@pytest.mark.parametrize(
    "name, kwargs, task_loss",
    [
        ("magnitude", {"norm": "l1"}, False),
        ("magnitude", {"norm": "l2", "per_param": False}, False),
        ("block_influence", {}, False),
        ("ablation", {}, False),
        ("ablation", {}, True),
        ("taylor", {}, True),
    ],
)
def test_zero_branch_removed_first_and_big_branch_kept_last(name, kwargs, task_loss):
    model = Net()
    data = calibration(model if task_loss else None)
    scores = get_strategy(name, **kwargs).score(model, None, UNITS, data)
    order = ranking(scores)
    assert set(scores) == set(UNITS)
    assert order[0] == Net.ZERO, scores
    assert order[-1] == Net.BIG, scores
    assert scores[Net.ZERO] == pytest.approx(0.0, abs=1e-12)


def test_scoring_leaves_model_unchanged():
    model = Net()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    get_strategy("taylor").score(model, None, UNITS, calibration(model))
    get_strategy("ablation").score(model, None, UNITS, calibration())
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "mode, removal",
    [
        ("last", [4, 3, 2, 1, 0]),
        ("first", [0, 1, 2, 3, 4]),
        ("spread", [2, 0, 3, 1, 4]),
    ],
)
def test_positional_orders(mode, removal):
    scores = get_strategy("positional", mode=mode).score(Net(), None, UNITS, None)
    assert ranking(scores) == [UNITS[i] for i in removal]


def test_positional_default_keeps_the_first_blocks():
    scores = get_strategy("positional").score(Net(), None, UNITS, None)
    assert ranking(scores)[-2:] == ["blocks.1", "blocks.0"]


def test_random_is_seeded():
    a = get_strategy("random", seed=3).score(Net(), None, UNITS, None)
    b = get_strategy("random", seed=3).score(Net(), None, UNITS, None)
    c = get_strategy("random", seed=4).score(Net(), None, UNITS, None)
    assert a == b
    assert a != c


def test_units_from_graph_accepted():
    from prunekit.graph import analyze

    model = Net()
    graph = analyze(model, torch.randn(1, 3, 8, 8))
    scores = get_strategy("magnitude").score(model, graph, graph.leaves(), None)
    assert ranking(scores)[0] == Net.ZERO


def test_data_requirements_are_explained():
    with pytest.raises(ConfigError, match="needs calibration data"):
        get_strategy("block_influence").score(Net(), None, UNITS, None)
    with pytest.raises(ConfigError, match="needs a task loss"):
        get_strategy("taylor").score(Net(), None, UNITS, calibration())
    with pytest.raises(ConfigError, match="targets has 1 entries but inputs has 2"):
        Calibration(inputs=[torch.zeros(1), torch.zeros(1)], targets=[torch.zeros(1)])


@pytest.mark.parametrize("name, task_loss", [("block_influence", False), ("taylor", True), ("magnitude", False)])
def test_unknown_unit_path_is_a_config_error_and_leaves_no_hook(name, task_loss):
    model = Net()
    with pytest.raises(ConfigError, match=r"\['blocks\.9'\] are not submodules of Net"):
        get_strategy(name).score(model, None, ["blocks.0", "blocks.9"], calibration(model if task_loss else None))
    assert not any(m._forward_hooks for m in model.modules())


def test_plain_list_of_inputs_is_calibration():
    batches = calibration().inputs
    model = Net()
    from_list = get_strategy("block_influence").score(model, None, UNITS, batches)
    from_calib = get_strategy("block_influence").score(model, None, UNITS, Calibration(inputs=batches))
    assert from_list == from_calib


def test_unknown_name_and_bad_options():
    with pytest.raises(UnknownNameError, match="positional"):
        get_strategy("no-such-strategy")
    with pytest.raises(ConfigError, match="accepts"):
        get_strategy("magnitude", nrom="l1")
    with pytest.raises(ConfigError, match="mode"):
        get_strategy("positional", mode="middle")


def test_register_custom_strategy():
    @register_strategy("test-param-count")
    class ParamCount(Strategy):
        def score(self, model, graph, units, data=None):
            return {u: float(sum(p.numel() for p in model.get_submodule(u).parameters())) for u in units}

    try:
        strategy = get_strategy("test-param-count")
        assert strategy.name == "test-param-count"
        assert "test-param-count" in registry.STRATEGIES.names()
        assert strategy.score(Net(), None, ["blocks.0"], None) == {"blocks.0": 2 * (4 * 4 * 9 + 4)}
    finally:
        registry.STRATEGIES._items.pop("test-param-count")


def test_builtins_registered():
    assert {"positional", "magnitude", "block_influence", "ablation", "taylor", "random"} <= set(
        registry.STRATEGIES.names()
    )
    assert strategies.BlockInfluence.needs_data and not strategies.Magnitude.needs_data
