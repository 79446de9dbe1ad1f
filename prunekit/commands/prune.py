"""`prunekit prune`."""
