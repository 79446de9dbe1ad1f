"""`prunekit run`."""
