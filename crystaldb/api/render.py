"""A stored cell as the API shows it: species and cartesian sites, and its file downloads.

The downloads are written by the formats' modules (CIF: `crystaldb.formats.cif.to_cif`,
extended XYZ: `crystaldb.formats.extxyz.to_extxyz`); they are named here so the schema has one
module to call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase.data import chemical_symbols

from crystaldb.formats.cif import to_cif
from crystaldb.formats.extxyz import to_extxyz

__all__ = ["cartesian", "species", "to_cif", "to_extxyz"]


def species(row: Any) -> list[str]:
    """Element symbol of each site."""
    return [chemical_symbols[z] for z in row.atomic_numbers]


def cartesian(row: Any) -> list[list[float]]:
    """Cartesian coordinates in angstrom: fractional times the lattice rows."""
    positions = np.asarray(row.frac_coords, dtype=float) @ np.asarray(row.lattice, dtype=float)
    return [[float(x) for x in site] for site in positions]
