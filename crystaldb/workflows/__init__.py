"""Whole workflows built from the jobs: the demo and the OMDB-GAP1 protocol."""
