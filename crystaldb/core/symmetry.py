"""Space groups from spglib, and a fingerprint that identifies a structure whatever its cell.

Fingerprint (``crystaldb-fp-v1``), a dedup key invariant to site order, origin shift, choice
of cell (supercell, conventional or primitive, any equivalent basis) and rotation in space:

1. spglib ``standardize_cell(to_primitive=True)`` at the given symprec: the primitive cell,
   with positions and metric idealised to the symmetry found (so symmetry-related noise
   below symprec does not change the key).
2. Niggli-reduce the lattice (spglib ``niggli_reduce``), make the basis right-handed, and
   re-express the sites in it.  The Niggli metric is unique, but the basis is unique only
   up to the lattice's own rotations, so:
3. enumerate the proper rotations R of the lattice (spglib on the bare lattice: its
   holohedry, det R = +1) and every choice of origin on an atom of the rarest species
   (fewest sites, then smallest type key).  For each (R, origin) the sites become
   integers ``(type, round(1440 * x) mod 1440, ...)``, sorted; the lexicographically
   smallest list is the canonical one.  1440 is divisible by 2, 3, 4, 5, 6, 8, 9, 12, 16,
   18 and 32, so special positions (1/2, 1/3, 1/16, ...) lie on grid points, not bin edges.
4. sha256 of the Niggli lengths (0.01 Å), angles (0.01°) and that list: 64 hex characters.

Type key = 1000 * Z + vacancy percentage (0 for a fully occupied site), so partially
occupied sites (accepted only when ``Limits.allow_partial_occupancy``) differ from full ones;
plus 1,000,000 * mass number for an isotope site, so a deuterated crystal never shares the
key of its protiated twin (and its symmetry is that of its isotopes).  Natural sites add 0:
every key of a crystal without isotopes is what it was before isotopes were kept.
Limits, by design: a coordinate or cell parameter that lands within rounding noise of a bin
edge can split true duplicates into two keys (never the reverse beyond the stated
tolerances); mirror images (enantiomorphs) get different keys, because improper rotations
are not used; and the key depends on symprec (a slightly distorted structure idealises to
the higher symmetry at a larger symprec).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import spglib

FINGERPRINT_VERSION = "crystaldb-fp-v1"
GRID = 1440
LENGTH_DECIMALS = 2
ANGLE_DECIMALS = 2

# Last space-group number of each crystal system, in order (International Tables).
_SYSTEM_BOUNDS = (
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (167, "trigonal"),
    (194, "hexagonal"),
    (230, "cubic"),
)


class SymmetryError(ValueError):
    """spglib could not analyse the cell (the message says why)."""


@dataclass(frozen=True, slots=True)
class Symmetry:
    """The space group found by spglib at `symprec` (angstrom)."""

    number: int
    symbol: str
    crystal_system: str
    symprec: float


def crystal_system(number: int) -> str:
    """Crystal system of a space group number (1-230)."""
    for last, name in _SYSTEM_BOUNDS:
        if 1 <= number <= last:
            return name
    raise ValueError(f"space group number {number} is not between 1 and 230")


ISOTOPE_KEY = 1_000_000  # times the mass number; above any 1000 * Z + vacancy percent


def type_keys(
    numbers: np.ndarray,
    occupancies: np.ndarray | None = None,
    mass_numbers: np.ndarray | None = None,
) -> np.ndarray:
    """Integer site types for spglib and the fingerprint: 1000 * Z + vacancy percent + isotope."""
    keys = np.asarray(numbers, dtype=np.int64) * 1000
    if occupancies is not None:
        keys = keys + np.rint((1.0 - np.asarray(occupancies)) * 100).astype(np.int64)
    if mass_numbers is not None:
        keys = keys + ISOTOPE_KEY * np.asarray(mass_numbers, dtype=np.int64)
    return keys


def describe(
    lattice: np.ndarray,
    frac_coords: np.ndarray,
    numbers: np.ndarray,
    *,
    symprec: float,
    angle_tolerance: float = -1.0,
    occupancies: np.ndarray | None = None,
    mass_numbers: np.ndarray | None = None,
) -> tuple[Symmetry, str]:
    """Space group and fingerprint together, from one checked spglib cell (what ingest uses)."""
    cell = _cell(lattice, frac_coords, type_keys(numbers, occupancies, mass_numbers))
    return _space_group(cell, symprec, angle_tolerance), _fingerprint(
        cell, symprec, angle_tolerance
    )


def _space_group(cell: tuple[Any, ...], symprec: float, angle_tolerance: float) -> Symmetry:
    dataset = _call(
        spglib.get_symmetry_dataset, cell, symprec=symprec, angle_tolerance=angle_tolerance
    )
    number = int(dataset.number)
    return Symmetry(number, str(dataset.international), crystal_system(number), symprec)


def _fingerprint(cell: tuple[Any, ...], symprec: float, angle_tolerance: float) -> str:
    prim_lattice, prim_frac, prim_types = _call(
        spglib.standardize_cell,
        cell,
        to_primitive=True,
        no_idealize=False,
        symprec=symprec,
        angle_tolerance=angle_tolerance,
    )
    niggli = _right_handed(np.asarray(_call(spglib.niggli_reduce, prim_lattice), dtype=float))
    frac = np.asarray(prim_frac) @ np.asarray(prim_lattice) @ np.linalg.inv(niggli)
    types = np.asarray(prim_types, dtype=np.int64)
    rotations = _lattice_rotations(niggli, symprec)
    sites = _canonical_sites(frac, types, rotations)
    lengths, angles = _cell_parameters(niggli)
    text = "|".join(
        (
            FINGERPRINT_VERSION,
            ",".join(str(v) for v in lengths),
            ",".join(str(v) for v in angles),
            ",".join(str(v) for v in sites.tolist()),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _cell(
    lattice: np.ndarray, frac_coords: np.ndarray, types: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spglib cell tuple; refuses non-finite input, which crashes spglib 2.8 outright."""
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    frac_coords = np.ascontiguousarray(frac_coords, dtype=np.float64)
    if not (np.isfinite(lattice).all() and np.isfinite(frac_coords).all()):
        raise SymmetryError("non-finite lattice or coordinates (spglib would crash)")
    if len(frac_coords) == 0:
        raise SymmetryError("no sites")
    return lattice, frac_coords, np.ascontiguousarray(types, dtype=np.intc)


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call spglib, turning both its error conventions (None, SpglibError) into SymmetryError."""
    try:
        result = function(*args, **kwargs)
    except spglib.SpglibError as error:
        raise SymmetryError(f"spglib {function.__name__}: {error}") from error
    if result is None:
        raise SymmetryError(f"spglib {function.__name__} found no solution")
    return result


def _right_handed(lattice: np.ndarray) -> np.ndarray:
    """Flip all three vectors of a left-handed basis; the metric and the crystal are unchanged."""
    return -lattice if np.linalg.det(lattice) < 0 else lattice


def _lattice_rotations(lattice: np.ndarray, symprec: float) -> np.ndarray:
    """Proper rotations of the bare lattice (its holohedry) in this basis, as integer matrices."""
    bare = (lattice, np.zeros((1, 3)), np.array([1], dtype=np.intc))
    found = _call(spglib.get_symmetry, bare, symprec=symprec)
    rotations = np.asarray(found["rotations"], dtype=np.int64)
    proper = rotations[np.rint(np.linalg.det(rotations)) == 1]
    return np.unique(proper, axis=0)


def _canonical_sites(frac: np.ndarray, types: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """The lexicographically smallest sorted site-key list over rotations and origins."""
    kinds, counts = np.unique(types, return_counts=True)
    rare = kinds[np.lexsort((kinds, counts))[0]]
    origins = frac[types == rare]
    relative = frac[None, :, :] - origins[:, None, :]  # (origins, sites, 3)
    type_part = types * GRID**3
    candidates = []
    for rotation in rotations:
        grid = np.mod(np.rint((relative @ rotation.T) * GRID).astype(np.int64), GRID)
        keys = type_part + grid[..., 0] * GRID**2 + grid[..., 1] * GRID + grid[..., 2]
        candidates.append(np.sort(keys, axis=1))
    stacked = np.concatenate(candidates)
    return stacked[np.lexsort(stacked.T[::-1])[0]]


def _cell_parameters(lattice: np.ndarray) -> tuple[list[int], list[int]]:
    """Lengths (0.01 Å) and angles (0.01°) as integers, so equal cells print equally."""
    a, b, c = lattice
    lengths = np.linalg.norm(lattice, axis=1)
    cosines = [
        np.dot(b, c) / (lengths[1] * lengths[2]),
        np.dot(a, c) / (lengths[0] * lengths[2]),
        np.dot(a, b) / (lengths[0] * lengths[1]),
    ]
    angles = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
    return (
        [int(v) for v in np.rint(lengths * 10**LENGTH_DECIMALS)],
        [int(v) for v in np.rint(angles * 10**ANGLE_DECIMALS)],
    )
