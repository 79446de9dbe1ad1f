import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    """Every test starts from the same RNG state, single-threaded: tests use tiny tensors, where threads only add overhead."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
