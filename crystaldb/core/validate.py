"""Checking a parsed structure and deriving its `structures` row, or saying why not.

Checks run cheapest and most fundamental first, and everything that could crash spglib
runs before spglib is called:

1. ``no_atoms``: no sites; ``unknown_element``: an atomic number outside 1-118 (an ``X``
   dummy in an XYZ file, for instance).
2. ``degenerate_lattice``: a non-finite lattice, a vector shorter than 1e-3 Å, a volume at
   or below ``Limits.min_volume`` (1e-3 Å^3), or a near-singular cell whose volume is
   below 1e-3 of the product of its vector lengths (vectors nearly coplanar).
3. ``nan_coordinates``: any non-finite fractional coordinate (a CIF ``?`` or ``.``
   coordinate).  spglib 2.8 segfaults on NaN positions: in COD 1001614 gemmi reads two H
   rows with ``.`` coordinates (8 sites after expansion) and spglib crashes on them, while
   it handles the overlapping disordered Rb sites of the same file without trouble.  (The
   CIF marks those H rows as dummies, so ``cif.py`` drops them and the file is refused
   for ``partial_occupancy``; this check is what protects spglib from any other file.)
4. ``too_many_sites``: more than ``Limits.max_sites`` (500, the OMDB-GAP1 COD screening).
5. ``invalid_occupancy`` (outside (0, 1 + tolerance] or not a number) and
   ``partial_occupancy``: the default rule refuses any site with occupancy below
   ``1 - occupancy_tolerance`` (0.99): a disordered model is not one structure and cannot go
   to a DFT code as is.  With ``allow_partial_occupancy=True`` such sites are kept, their
   occupancies stored, and symmetry/fingerprint treat (element, occupancy) as the site type;
   overlapping alternatives are then still refused by the next check.
6. ``sites_too_close``: two sites (or a site and its own periodic image) nearer than
   ``Limits.min_distance`` (0.5 Å; the shortest real bond, H-H in H2, is 0.74 Å).
7. ``symmetry_failed``: spglib found no space group or standard cell at ``symprec``.

``symprec`` defaults to 0.1 Å (the Materials Project's choice for its space groups); the
angle tolerance is spglib's default.

Flags (`structures.flags`, quality notes users filter on; a flagged record is stored; their
names are `crystaldb.schema.structures.FLAGS`, which the filters accept):

- ``organic_without_hydrogen``: C but no H; usually an organic crystal whose H positions
  were not located, but the heuristic also flags carbonates, carbides and the like.
- ``formula_sum_mismatch``: the cell's composition differs from the file's own formula
  sum (CIF ``_chemical_formula_sum``), compared as ratios (so Z never matters) within the
  rounding of non-integer amounts; mostly H atoms the file lists in its formula but not as
  sites, sometimes a formula sum that is simply wrong (composition.formula_sum_differs).
- ``symops_contradict_symbol``: the CIF's symmetry operations are no group, or a group of
  another space-group type than its H-M symbol, Hall symbol or number names; the cell is
  built from the operations (declared.py).
- ``deuterated``: some hydrogen site is deuterium (mass number 2 in `mass_numbers`); the
  formulas read H, the density is the deuterated crystal's (composition.py).
- ``dummy_sites_dropped`` and ``pymatgen_fallback``: set by the CIF reader (cif.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crystaldb.core.composition import composition, density, formula_sum_differs, formulas
from crystaldb.core.isotopes import is_deuterated
from crystaldb.core.neighbours import closest_pair
from crystaldb.core.records import (
    DEUTERATED,
    FORMULA_SUM_MISMATCH,
    ORGANIC_WITHOUT_HYDROGEN,
    IngestError,
    ParsedStructure,
    Reason,
    Rejection,
    StructureRecord,
)
from crystaldb.core.symmetry import SymmetryError, describe

DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024

_LAST_ELEMENT = 118
_MIN_VECTOR = 1e-3  # angstrom
_MIN_NORMALISED_VOLUME = 1e-3  # volume / (|a| |b| |c|); 1 for a cube


@dataclass(frozen=True, slots=True)
class Limits:
    """What the validator accepts; the defaults are the rules stated in the module docstring."""

    max_sites: int = 500
    min_distance: float = 0.5
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    symprec: float = 0.1
    angle_tolerance: float = -1.0
    min_volume: float = 1e-3
    occupancy_tolerance: float = 0.01
    allow_partial_occupancy: bool = False


DEFAULT_LIMITS = Limits()


def validate(
    parsed: ParsedStructure, limits: Limits = DEFAULT_LIMITS
) -> StructureRecord | Rejection:
    """Check one parsed structure and derive its record; bad input gives a Rejection."""
    try:
        occupancies = check(parsed, limits)
        return _record(parsed, occupancies, limits)
    except IngestError as error:
        return Rejection.from_error(error, parsed.path, parsed.entry, parsed.sha256)
    except Exception as error:  # a bug or an input nobody foresaw: record it, never drop it
        return Rejection(
            path=parsed.path,
            entry=parsed.entry,
            reason=str(Reason.INTERNAL_ERROR),
            message=f"{parsed.where}: unexpected {type(error).__name__}: {error}",
            sha256=parsed.sha256,
        )


def check(parsed: ParsedStructure, limits: Limits = DEFAULT_LIMITS) -> np.ndarray | None:
    """Run checks 1-6 in order; return the occupancies to keep or raise IngestError."""
    here = parsed.where
    if parsed.nsites == 0:
        raise IngestError(Reason.NO_ATOMS, f"{here}: structure has no atoms")
    unknown = np.flatnonzero((parsed.numbers < 1) | (parsed.numbers > _LAST_ELEMENT))
    if unknown.size:
        raise IngestError(
            Reason.UNKNOWN_ELEMENT,
            f"{here}: {unknown.size} sites have no chemical element"
            f" (first: site {unknown[0]}, atomic number {parsed.numbers[unknown[0]]})",
        )
    _check_lattice(parsed.lattice, limits, here)
    bad = np.flatnonzero(~np.isfinite(parsed.frac_coords).all(axis=1))
    if bad.size:
        raise IngestError(
            Reason.NAN_COORDINATES,
            f"{here}: {bad.size} of {parsed.nsites} sites have non-finite coordinates"
            f" (first: site {bad[0]}, Z={parsed.numbers[bad[0]]})",
        )
    if parsed.nsites > limits.max_sites:
        raise IngestError(
            Reason.TOO_MANY_SITES,
            f"{here}: {parsed.nsites} sites in the cell, over the limit of {limits.max_sites}",
        )
    occupancies = _check_occupancies(parsed, limits, here)
    pair = closest_pair(parsed.lattice, parsed.frac_coords, limits.min_distance)
    if pair is not None:
        what = "its own periodic image" if pair.i == pair.j else f"site {pair.j}"
        raise IngestError(
            Reason.SITES_TOO_CLOSE,
            f"{here}: site {pair.i} (Z={parsed.numbers[pair.i]}) is {pair.distance:.3f} Å from"
            f" {what} (Z={parsed.numbers[pair.j]}), closer than {limits.min_distance} Å",
        )
    return occupancies


def _check_lattice(lattice: np.ndarray, limits: Limits, here: str) -> None:
    """Refuse cells that are not three independent, finite vectors."""
    if not np.isfinite(lattice).all():
        raise IngestError(Reason.DEGENERATE_LATTICE, f"{here}: lattice has non-finite values")
    lengths = np.linalg.norm(lattice, axis=1)
    volume = abs(float(np.linalg.det(lattice)))
    if lengths.min() < _MIN_VECTOR or volume <= limits.min_volume:
        raise IngestError(
            Reason.DEGENERATE_LATTICE,
            f"{here}: degenerate lattice (vector lengths {np.round(lengths, 4).tolist()} Å,"
            f" volume {volume:.3g} Å^3)",
        )
    if volume / float(np.prod(lengths)) < _MIN_NORMALISED_VOLUME:
        raise IngestError(
            Reason.DEGENERATE_LATTICE,
            f"{here}: near-singular lattice (volume {volume:.3g} Å^3 for vectors of"
            f" {np.round(lengths, 3).tolist()} Å: nearly coplanar)",
        )


def _check_occupancies(parsed: ParsedStructure, limits: Limits, here: str) -> np.ndarray | None:
    """Apply the occupancy rule; return the occupancies to store (None when all full)."""
    occ = parsed.occupancies
    if occ is None:
        return None
    tol = limits.occupancy_tolerance
    invalid = np.flatnonzero(~np.isfinite(occ) | (occ <= 0.0) | (occ > 1.0 + tol))
    if invalid.size:
        raise IngestError(
            Reason.INVALID_OCCUPANCY,
            f"{here}: {invalid.size} sites have occupancy outside (0, 1]"
            f" (first: site {invalid[0]}, occupancy {occ[invalid[0]]})",
        )
    partial = np.flatnonzero(occ < 1.0 - tol)
    if partial.size == 0:
        return None
    if not limits.allow_partial_occupancy:
        raise IngestError(
            Reason.PARTIAL_OCCUPANCY,
            f"{here}: {partial.size} of {parsed.nsites} sites are partially occupied"
            f" (lowest occupancy {occ.min():.3g}); disordered structures are refused",
        )
    return np.where(occ >= 1.0 - tol, 1.0, occ)


def _record(
    parsed: ParsedStructure, occupancies: np.ndarray | None, limits: Limits
) -> StructureRecord:
    """Derive the `structures` columns of a structure that passed every check."""
    try:
        sym, key = describe(
            parsed.lattice,
            parsed.frac_coords,
            parsed.numbers,
            symprec=limits.symprec,
            angle_tolerance=limits.angle_tolerance,
            occupancies=occupancies,
            mass_numbers=parsed.mass_numbers,
        )
    except SymmetryError as error:
        raise IngestError(
            Reason.SYMMETRY_FAILED, f"{parsed.where}: at symprec {limits.symprec} Å: {error}"
        ) from error
    forms = formulas(parsed.numbers, occupancies, parsed.mass_numbers)
    volume = abs(float(np.linalg.det(parsed.lattice)))
    return StructureRecord(
        lattice=parsed.lattice.tolist(),
        frac_coords=parsed.frac_coords.tolist(),
        atomic_numbers=[int(z) for z in parsed.numbers],
        occupancies=None if occupancies is None else occupancies.tolist(),
        reduced_formula=forms.reduced_formula,
        hill_formula=forms.hill_formula,
        anonymous_formula=forms.anonymous_formula,
        elements=forms.elements,
        nelements=len(forms.elements),
        nsites=parsed.nsites,
        spacegroup_number=sym.number,
        spacegroup_symbol=sym.symbol,
        symprec=limits.symprec,
        crystal_system=sym.crystal_system,
        volume=volume,
        density=density(forms.weight, volume),
        fingerprint=key,
        path=parsed.path,
        entry=parsed.entry,
        block_name=parsed.block_name,
        external_ids=dict(parsed.external_ids),
        properties=dict(parsed.properties),
        sha256=parsed.sha256,
        flags=quality_flags(parsed, occupancies, forms.elements),
        mass_numbers=None if parsed.mass_numbers is None else parsed.mass_numbers.tolist(),
    )


def quality_flags(
    parsed: ParsedStructure, occupancies: np.ndarray | None, elements: list[str]
) -> tuple[str, ...]:
    """The reader's flags and the validator's own (see the module docstring)."""
    flags = list(parsed.flags)
    if "C" in elements and "H" not in elements:
        flags.append(ORGANIC_WITHOUT_HYDROGEN)
    if parsed.declared_formula is not None and formula_sum_differs(
        parsed.declared_formula, composition(parsed.numbers, occupancies)
    ):
        flags.append(FORMULA_SUM_MISMATCH)
    if is_deuterated(parsed.numbers, parsed.mass_numbers):
        flags.append(DEUTERATED)
    return tuple(flags)
