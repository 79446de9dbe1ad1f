"""(to be written)"""


def register(registries) -> None:
    """Add this area's names to the prunekit registries."""
