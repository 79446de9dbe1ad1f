"""The bundled TecoGAN pruning benchmark (`prunekit bench tecogan`)."""


def register(registries) -> None:
    """Add the `bench` command."""
