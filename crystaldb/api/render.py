"""Structures as files: CIF (pymatgen) and extended XYZ (ase).

Isotopes (`mass_numbers`): extended XYZ gets a masses column, the isotope's mass on its sites
and ase's natural masses on the others, as release exports write it and crystaldb's readers
read it back. CIF cannot say it here: pymatgen's writer spells deuterium and tritium as H.
"""

from __future__ import annotations

import io
from typing import Any

import ase.io
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from pymatgen.core import Lattice
from pymatgen.core import Structure as PymatgenStructure
from pymatgen.io.cif import CifWriter

from crystaldb.core.isotopes import site_masses


def species(row: Any) -> list[str]:
    """Element symbol of each site."""
    return [chemical_symbols[z] for z in row.atomic_numbers]


def cartesian(row: Any) -> list[list[float]]:
    """Cartesian coordinates in angstrom: fractional times the lattice rows."""
    positions = np.asarray(row.frac_coords, dtype=float) @ np.asarray(row.lattice, dtype=float)
    return [[float(x) for x in site] for site in positions]


def to_cif(row: Any) -> str:
    """A CIF of the stored cell, partial occupancies kept."""
    occupancies = row.occupancies or [1.0] * len(row.atomic_numbers)
    sites = [{symbol: occ} for symbol, occ in zip(species(row), occupancies, strict=True)]
    structure = PymatgenStructure(Lattice(row.lattice), sites, row.frac_coords)
    return str(CifWriter(structure))


def to_extxyz(row: Any) -> str:
    """One extended XYZ frame (symbols and positions, masses with isotopes; occupancies cannot
    be written)."""
    atoms = Atoms(numbers=row.atomic_numbers, cell=row.lattice, pbc=True)
    atoms.set_scaled_positions(row.frac_coords)
    atoms.info["structure_id"] = int(row.id)
    columns = ["symbols", "positions"]
    if row.mass_numbers is not None:
        isotopic = np.asarray(row.mass_numbers) != 0
        masses = atoms.get_masses()
        numbers = np.asarray(row.atomic_numbers)
        masses[isotopic] = site_masses(numbers, np.asarray(row.mass_numbers))[isotopic]
        atoms.set_masses(masses)
        columns.append("masses")
    handle = io.StringIO()
    ase.io.write(handle, atoms, format="extxyz", columns=columns)
    return handle.getvalue()
