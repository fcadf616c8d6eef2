"""api layer: see README.md's layout."""
