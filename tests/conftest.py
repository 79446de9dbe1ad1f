import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    """Every test starts from the same RNG state, with few threads so the suite is stable on 2 cores."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
