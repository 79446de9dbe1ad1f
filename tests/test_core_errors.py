"""Every bad input of the core API raises its typed error, with a message naming the problem."""

from __future__ import annotations

import pytest
import torch

import zoo
import prunekit as pk


@pytest.fixture()
def edsr():
    model = zoo.EDSR(nb=4)
    return model, pk.analyze(model, zoo.image())


def test_unknown_strategy_lists_registered(edsr) -> None:
    model, graph = edsr
    with pytest.raises(pk.UnknownNameError, match="no_such_strategy.*magnitude"):
        pk.plan(model, graph, strategy="no_such_strategy", target=pk.KeepBlocks(n=2))


def test_keep_more_blocks_than_exist(edsr) -> None:
    model, graph = edsr
    with pytest.raises(pk.UnreachableTargetError, match="5"):
        pk.plan(model, graph, strategy="magnitude", target=pk.KeepBlocks(n=5))


def test_remove_everything(edsr) -> None:
    model, graph = edsr
    with pytest.raises(pk.UnreachableTargetError):
        pk.plan(model, graph, strategy="magnitude", target=pk.KeepBlocks(n=0))


def test_model_without_units() -> None:
    model = zoo.PlainCNN()
    graph = pk.analyze(model, zoo.image())  # analysis itself succeeds and reports 0 units
    assert graph.units == []
    with pytest.raises(pk.NoUnitsError, match="PlainCNN"):
        pk.plan(model, graph, strategy="magnitude", target=pk.KeepBlocks(n=1))


def test_wrong_input_shape_names_shapes() -> None:
    with pytest.raises(pk.InputShapeError, match=r"arg0.*\[2, 5, 8, 8\]"):
        pk.analyze(zoo.EDSR(), torch.rand(2, 5, 8, 8))


def test_two_block_targets_are_a_config_error(edsr) -> None:
    model, graph = edsr
    with pytest.raises(pk.ConfigError, match="keep_blocks"):
        pk.plan(model, graph, strategy="magnitude", target=[pk.KeepBlocks(n=2), pk.ParamsRatio(keep=0.5)])


def test_plan_for_another_model(edsr) -> None:
    model, graph = edsr
    p = pk.plan(model, graph, strategy="magnitude", target=pk.KeepBlocks(n=2))
    with pytest.raises(pk.PlanMismatchError, match=r"parameters"):
        pk.apply(zoo.EDSR(nb=5), p)
    renamed = p.model_copy(update={"removed": ["trunk.0"]})
    with pytest.raises(pk.PlanMismatchError, match="trunk.0"):
        pk.apply(model, renamed)


def test_graph_of_another_model(edsr) -> None:
    _, graph = edsr
    with pytest.raises(pk.PlanMismatchError, match="analysed"):
        pk.plan(zoo.EDSR(nb=2), graph, strategy="magnitude", target=pk.KeepBlocks(n=1))


def test_target_as_dict_and_bad_target(edsr) -> None:
    model, graph = edsr
    p = pk.plan(model, graph, strategy="magnitude", target={"kind": "keep_blocks", "n": 3})
    assert len(p.removed) == 1
    with pytest.raises(pk.ConfigError, match="keep_all"):
        pk.plan(model, graph, strategy="magnitude", target={"kind": "keep_all"})


def test_resolve_device_names_a_bad_request() -> None:
    import torch

    from prunekit.device import resolve_device
    from prunekit.errors import ConfigError

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert resolve_device("auto", index=1) == torch.device("cpu")
        with pytest.raises(ConfigError, match="'cuda:0' requested but CUDA is not available"):
            resolve_device("cuda:0")
    else:
        assert resolve_device("cuda", index=0) == torch.device("cuda", 0)
