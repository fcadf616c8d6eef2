"""release layer: see README.md's layout."""
