"""A periodic structure as plain arrays: what every science function takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Cell:
    """One periodic structure: rows of `lattice` are lattice vectors in angstrom."""

    structure_id: int
    lattice: np.ndarray  # (3, 3)
    frac_coords: np.ndarray  # (n, 3)
    atomic_numbers: np.ndarray  # (n,)

    @property
    def positions(self) -> np.ndarray:
        """Cartesian positions in angstrom."""
        return self.frac_coords @ self.lattice

    @property
    def num_sites(self) -> int:
        """Number of sites in the cell."""
        return len(self.atomic_numbers)
