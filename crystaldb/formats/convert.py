"""Turning ASE Atoms and pymatgen Structures into ParsedStructure, the one internal shape.

Also the contract every text reader keeps (`Parser`, `never_raises`): bad input comes back
as a Rejection naming the file, never as an exception.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from ase import Atoms
from pymatgen.core import Element, Structure

from crystaldb.core.isotopes import (
    mass_number_of_element,
    mass_numbers_from_masses,
    mass_numbers_or_none,
)
from crystaldb.core.records import IngestError, ParsedStructure, Reason, Rejection, where

Parsed = list[ParsedStructure | Rejection]
Parser = Callable[[str, str, str | None, str | None], Parsed]

# Occupancies within this of 1 are "fully occupied" when deciding whether to keep them at all.
_FULL = 1e-6


def wrap_fractional(frac: np.ndarray) -> np.ndarray:
    """Wrap into [0, 1) so that equal sites have equal coordinates; NaN stays NaN."""
    wrapped = np.mod(frac, 1.0)
    # mod can return exactly 1.0 for tiny negative inputs (-1e-17 % 1.0 == 1.0).
    wrapped[wrapped >= 1.0] = 0.0
    return wrapped + 0.0  # turns -0.0 into 0.0


def occupancies_or_none(occupancies: np.ndarray) -> np.ndarray | None:
    """Drop the occupancy array when every site is fully occupied, as the table expects."""
    if np.all(np.abs(occupancies - 1.0) <= _FULL):
        return None
    return occupancies


def numeric_properties(mapping: dict[str, Any]) -> dict[str, float]:
    """Keep the finite scalar numbers of an info dict (band gaps, energies); skip the rest."""
    result: dict[str, float] = {}
    for key, value in mapping.items():
        if isinstance(value, bool | np.bool_):
            continue
        if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value):
            result[str(key)] = float(value)
    return result


def parsed_from_atoms(
    atoms: Atoms,
    path: str,
    entry: int,
    *,
    external_ids: dict[str, str] | None = None,
    properties: dict[str, float] | None = None,
    sha256: str | None = None,
) -> ParsedStructure:
    """Convert one ASE frame; refuse frames without a full 3D periodic cell.

    Explicit masses (an extended XYZ ``masses`` column) at deuterium's or tritium's mass
    make those hydrogen sites that isotope; ASE's default masses are the natural mix.
    """
    if not all(atoms.pbc) or atoms.cell.rank < 3:
        raise IngestError(
            Reason.NOT_PERIODIC,
            f"{where(path, entry)}: not a 3D periodic structure (pbc={atoms.pbc.tolist()},"
            f" cell rank {atoms.cell.rank}); a crystal needs three lattice vectors",
        )
    lattice = np.array(atoms.cell.array, dtype=np.float64)
    cartesian = np.asarray(atoms.positions, dtype=np.float64)
    frac = np.linalg.solve(lattice.T, cartesian.T).T if len(atoms) else np.zeros((0, 3))
    props = numeric_properties(dict(atoms.info))
    if atoms.calc is not None:  # extxyz moves energy, free_energy, ... into a calculator
        props.update(numeric_properties(dict(atoms.calc.results)))
    props.update(properties or {})
    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    masses = atoms.arrays.get("masses")
    return ParsedStructure(
        lattice=lattice,
        frac_coords=wrap_fractional(frac),
        numbers=numbers,
        occupancies=None,
        mass_numbers=None if masses is None else mass_numbers_from_masses(numbers, masses),
        path=path,
        entry=entry,
        external_ids=dict(external_ids or {}),
        properties=props,
        sha256=sha256,
    )


def parsed_from_pymatgen(
    structure: Structure,
    path: str,
    entry: int,
    *,
    block_name: str | None = None,
    external_ids: dict[str, str] | None = None,
    properties: dict[str, float] | None = None,
    sha256: str | None = None,
    flags: tuple[str, ...] = (),
) -> ParsedStructure:
    """Convert a pymatgen Structure, splitting mixed sites into one site per species.

    pymatgen's named isotopes (D, T) are hydrogen with their mass number.
    """
    numbers: list[int] = []
    mass_numbers: list[int] = []
    frac: list[np.ndarray] = []
    occupancies: list[float] = []
    for index, site in enumerate(structure):
        for species, occupancy in site.species.items():
            element = getattr(species, "element", species)
            if not isinstance(element, Element):  # DummySpecies, vacancies
                raise IngestError(
                    Reason.UNKNOWN_ELEMENT,
                    f"{where(path, entry, block_name)}: site {index} ({site.label}) has"
                    f" species {species}, which is not a chemical element",
                )
            numbers.append(element.Z)
            mass_numbers.append(mass_number_of_element(element))
            frac.append(site.frac_coords)
            occupancies.append(float(occupancy))
    frac_array = np.array(frac, dtype=np.float64).reshape(-1, 3)
    props = numeric_properties(dict(structure.properties))
    props.update(properties or {})
    return ParsedStructure(
        lattice=np.array(structure.lattice.matrix, dtype=np.float64),
        frac_coords=wrap_fractional(frac_array),
        numbers=np.array(numbers, dtype=np.int64),
        occupancies=occupancies_or_none(np.array(occupancies, dtype=np.float64)),
        mass_numbers=mass_numbers_or_none(np.array(mass_numbers, dtype=np.int64)),
        path=path,
        entry=entry,
        block_name=block_name,
        external_ids=dict(external_ids or {}),
        properties=props,
        sha256=sha256,
        flags=flags,
    )


def parsed_from_frames(frames: Any, path: str, sha256: str | None, ids: dict[str, str]) -> Parsed:
    """Convert ASE frames one by one, so one bad frame does not sink the others."""
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        return [_rejection(Reason.NO_ATOMS, path, None, sha256, f"{path}: no structures")]
    results: Parsed = []
    for entry, atoms in enumerate(frames):
        try:
            results.append(parsed_from_atoms(atoms, path, entry, external_ids=ids, sha256=sha256))
        except IngestError as error:
            results.append(Rejection.from_error(error, path, entry, sha256))
    return results


def never_raises(parse: Parser) -> Parser:
    """Wrap a text parser so bad input comes back as a Rejection, as parse_cif_text does."""

    @functools.wraps(parse)
    def safe(
        text: str, path: str, sha256: str | None = None, database: str | None = None
    ) -> Parsed:
        try:
            return parse(text, path, sha256, database)
        except IngestError as error:
            return [Rejection.from_error(error, path, None, sha256)]
        except Exception as error:  # ASE and pymatgen raise anything from ValueError to KeyError
            message = f"{path}: {type(error).__name__}: {error}"
            return [_rejection(Reason.PARSE_ERROR, path, None, sha256, message)]

    return safe


def _rejection(
    reason: Reason, path: str, entry: int | None, sha256: str | None, message: str
) -> Rejection:
    """A Rejection whose message already names the file."""
    return Rejection(path=path, entry=entry, reason=str(reason), message=message, sha256=sha256)
