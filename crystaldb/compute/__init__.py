"""compute layer: see README.md's layout."""
