"""`prunekit analyze`."""
