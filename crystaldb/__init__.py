"""crystaldb: a database-centric platform for crystal structures and their electronic properties."""

__version__ = "0.1.0"
