"""prunekit: structured pruning (residual blocks and channels) for PyTorch models."""

__version__ = "0.1.0"
