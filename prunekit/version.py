"""The package version, in a module of its own so that any module can record it without importing
the `prunekit` package (whose lazy names would import that module back)."""

__version__ = "0.1.0"
