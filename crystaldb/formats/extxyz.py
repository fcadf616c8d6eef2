"""Extended XYZ: the reader of (extended) XYZ files, the ``extxyz`` release writer, API frames.

The release writer puts every member in one ``structures.extxyz`` with its structure_id,
split, label and COD id in the frame's info; ``omdb_gap1`` writes its structures.xyz with the
same frames (`atoms_of`, `write_frames`), untagged.

Isotopes: a member with an isotope site (a deuterated crystal) gets a ``masses`` column, the
isotope's mass on its sites and ASE's natural masses on the others, which the reader reads back
as the isotope; members without one are written without the column.
"""

from __future__ import annotations

import io
from itertools import groupby
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

from crystaldb.core.isotopes import site_masses
from crystaldb.core.release_data import Member, ReleaseData
from crystaldb.formats.convert import Parsed, never_raises, parsed_from_frames
from crystaldb.formats.identifiers import ids_from_path
from crystaldb.formats.members import (
    cartesian,
    cod_id_of,
    frac_of,
    label_of,
    lattice_of,
    numbers_of,
    text_file,
)

EXTXYZ = "structures.extxyz"
XYZ_SNAP = 1e-8  # fractional; see xyz_frac
XYZ_ZERO = 5e-9  # angstrom; prints as 0.00000000 with ase's %16.8f


# --- reading ---------------------------------------------------------------------------------


@never_raises
def parse_extxyz_text(
    text: str, path: str, sha256: str | None = None, database: str | None = None
) -> Parsed:
    """Every frame of an (extended) XYZ file, with numeric info/calculator values as properties."""
    frames = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    return parsed_from_frames(frames, path, sha256, ids_from_path(path, database))


# --- writing a release -----------------------------------------------------------------------


def write_extxyz(data: ReleaseData, folder: Path) -> None:
    """One extended XYZ file; each frame's info has structure_id, split, the label, cod_id."""
    with text_file(folder / EXTXYZ) as handle:
        write_frames(handle, [_tagged_atoms(data, m) for m in data.members])


def _tagged_atoms(data: ReleaseData, member: Member) -> Atoms:
    """atoms_of(member) with the release's per-member facts in atoms.info."""
    atoms = atoms_of(member)
    atoms.info["structure_id"] = int(member.structure_id)
    atoms.info["split"] = member.split
    label = label_of(data, member, "extxyz", required=False)
    if label is not None:
        atoms.info[data.label_property or "label"] = label
    cod = cod_id_of(member)
    if cod is not None:
        atoms.info["cod_id"] = cod
    return atoms


def xyz_frac(member: Member) -> np.ndarray:
    """Fractional coordinates within XYZ_SNAP below 1 set to 0: the same site, stable in XYZ.

    XYZ positions have 8 decimals, so an atom on a cell face (fractional 0 in a triclinic cell)
    comes back from an import as -1e-10, which the importer wraps to 0.9999999999; exported as
    is, it would be written one lattice vector away. Snapping moves such a site by at most
    XYZ_SNAP * |a| (1e-7 Å in a 10 Å cell), so export -> import -> export gives the same bytes.
    """
    frac = frac_of(member)
    return np.where((frac > 1.0 - XYZ_SNAP) & (frac <= 1.0), 0.0, frac)


def atoms_of(member: Member) -> Atoms:
    """The member as a periodic ase.Atoms (cell rows = lattice vectors, cartesian positions)."""
    positions = cartesian(member, xyz_frac(member))
    # below the 8 written decimals: +0.0, so round-off never prints as -0.00000000
    positions[np.abs(positions) < XYZ_ZERO] = 0.0
    numbers, lattice = numbers_of(member), lattice_of(member)
    atoms = Atoms(numbers=numbers, positions=positions, cell=lattice, pbc=True)
    if member.mass_numbers is not None:
        _set_isotope_masses(atoms, member.mass_numbers)
    return atoms


def write_frames(handle: io.TextIOWrapper, frames: list[Atoms]) -> None:
    """ase.io.write's extended XYZ; no calculators and no constraints to look for, so say so.

    Same bytes as the defaults for Atoms built by atoms_of, without ase copying every frame to
    save calculator results and building a move mask per frame (about 10% of the time).
    Frames with explicit masses (isotopes) add a masses column.
    """
    for with_masses, run in groupby(frames, key=lambda atoms: atoms.has("masses")):
        columns = ["symbols", "positions", "masses"] if with_masses else ["symbols", "positions"]
        ase.io.write(handle, list(run), format="extxyz", write_results=False, columns=columns)


def _set_isotope_masses(atoms: Atoms, mass_numbers: Any) -> None:
    """Explicit masses so an isotope survives the file: its mass on its sites, ase's elsewhere."""
    mass_numbers = np.asarray(mass_numbers)
    isotopic = mass_numbers != 0
    masses = atoms.get_masses()
    masses[isotopic] = site_masses(atoms.numbers, mass_numbers)[isotopic]
    atoms.set_masses(masses)


# --- one stored cell, for the API ------------------------------------------------------------


def to_extxyz(cell: Any) -> str:
    """A stored cell as one extended XYZ frame to download; isotopes as masses, no occupancies."""
    atoms = Atoms(numbers=cell.atomic_numbers, cell=cell.lattice, pbc=True)
    atoms.set_scaled_positions(cell.frac_coords)
    atoms.info["structure_id"] = int(cell.id)
    columns = ["symbols", "positions"]
    if cell.mass_numbers is not None:
        _set_isotope_masses(atoms, cell.mass_numbers)
        columns.append("masses")
    handle = io.StringIO()
    ase.io.write(handle, atoms, format="extxyz", columns=columns)
    return handle.getvalue()
