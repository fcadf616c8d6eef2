"""Stored structures as OPTIMADE structure resources: the standard properties derived from the
columns, crystaldb's own under the `_crystaldb_` prefix, and their descriptions for
`info/structures`."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from ase.data import chemical_symbols
from optimade.models.utils import anonymize_formula, reduce_formula
from pymatgen.core import Composition

PROVIDER = "crystaldb"
PREFIX = f"_{PROVIDER}_"
_INTEGRAL = re.compile(r"([A-Z][a-z]?\d*)+")  # a formula with whole-number counts


@dataclass(frozen=True, slots=True)
class StoredStructure:
    """What one response entry needs from the database."""

    id: int
    lattice: list[list[float]]
    frac_coords: list[list[float]]
    atomic_numbers: list[int]
    occupancies: list[float] | None
    reduced_formula: str
    hill_formula: str
    elements: list[str]
    nsites: int
    spacegroup_number: int | None
    spacegroup_symbol: str | None
    crystal_system: str | None
    created_at: datetime
    band_gap_pbe: float | None = None
    cod_id: str | None = None


@lru_cache(maxsize=200_000)
def _flat(stored: str) -> str | None:
    """A pymatgen formula ("H5(C5N)2") without parentheses ("C10H5N2"); None if fractional."""
    if _INTEGRAL.fullmatch(stored):
        return stored
    amounts = Composition(stored).get_el_amt_dict()
    if not all(float(n).is_integer() for n in amounts.values()):
        return None
    return "".join(f"{el}{int(n)}" for el, n in sorted(amounts.items()))


def optimade_reduced(stored_reduced: str) -> str | None:
    """OPTIMADE's chemical_formula_reduced (alphabetical, gcd 1) from pymatgen's reduced formula."""
    flat = _flat(stored_reduced)
    return None if flat is None else reduce_formula(flat)


def optimade_anonymous(stored_reduced: str) -> str | None:
    """OPTIMADE's chemical_formula_anonymous (A, B, ... by descending count)."""
    flat = _flat(stored_reduced)
    return None if flat is None else anonymize_formula(flat)


def _count_formula(counts: Counter[str]) -> str:
    """A formula from site counts, alphabetical (the fallback for fractional compositions)."""
    return "".join(f"{el}{n if n != 1 else ''}" for el, n in sorted(counts.items()))


def _hill(counts: Counter[str]) -> str:
    """Hill order: C, H, then alphabetical; alphabetical without C."""
    order = sorted(counts, key=lambda el: {"C": "0", "H": "1"}.get(el, el) if "C" in counts else el)
    return "".join(f"{el}{counts[el] if counts[el] != 1 else ''}" for el in order)


def _species(
    symbols: list[str], occupancies: list[float] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """One species per element (per element and occupancy where sites are partly empty)."""
    names: list[str] = []
    species: dict[str, dict[str, Any]] = {}
    for index, symbol in enumerate(symbols):
        occ = 1.0 if occupancies is None else float(occupancies[index])
        if occ >= 1.0:
            name, spec = symbol, {"chemical_symbols": [symbol], "concentration": [1.0]}
        else:
            name = f"{symbol}_{occ:g}"
            spec = {"chemical_symbols": [symbol, "vacancy"], "concentration": [occ, 1.0 - occ]}
        species.setdefault(name, {"name": name, **spec})
        names.append(name)
    return list(species.values()), names


def attributes(row: StoredStructure) -> dict[str, Any]:
    """Every attribute crystaldb serves for one structure."""
    symbols = [chemical_symbols[z] for z in row.atomic_numbers]
    counts = Counter(symbols)
    elements = sorted(counts)
    fallback = _count_formula(counts)
    reduced = optimade_reduced(row.reduced_formula) or reduce_formula(fallback)
    anonymous = optimade_anonymous(row.reduced_formula) or anonymize_formula(fallback)
    hill = row.hill_formula if _INTEGRAL.fullmatch(row.hill_formula) else _hill(counts)
    lattice = np.asarray(row.lattice, dtype=float)
    cartesian = np.asarray(row.frac_coords, dtype=float).reshape(-1, 3) @ lattice
    species, at_sites = _species(symbols, row.occupancies)
    disorder = any(len(s["chemical_symbols"]) > 1 for s in species)
    ratios = [counts[el] / row.nsites for el in elements]
    return {
        "last_modified": row.created_at,
        "elements": elements,
        "nelements": len(elements),
        "elements_ratios": ratios,
        "chemical_formula_descriptive": hill,
        "chemical_formula_reduced": reduced,
        "chemical_formula_hill": hill,
        "chemical_formula_anonymous": anonymous,
        "dimension_types": [1, 1, 1],
        "nperiodic_dimensions": 3,
        "lattice_vectors": lattice.tolist(),
        "cartesian_site_positions": cartesian.tolist(),
        "nsites": row.nsites,
        "species": species,
        "species_at_sites": at_sites,
        "structure_features": ["disorder"] if disorder else [],
        f"{PREFIX}space_group_number": row.spacegroup_number,
        f"{PREFIX}space_group_symbol": row.spacegroup_symbol,
        f"{PREFIX}crystal_system": row.crystal_system,
        f"{PREFIX}band_gap_pbe": _finite(row.band_gap_pbe),
        f"{PREFIX}cod_id": row.cod_id,
    }


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those are unknown."""
    return value if value is not None and math.isfinite(value) else None


# provider fields: (description, OPTIMADE type, unit)
PROVIDER_FIELDS: dict[str, tuple[str, str, str | None]] = {
    f"{PREFIX}space_group_number": ("space group number 1-230 (spglib)", "integer", None),
    f"{PREFIX}space_group_symbol": ("space group symbol as spglib spells it", "string", None),
    f"{PREFIX}crystal_system": ("crystal system (spglib)", "string", None),
    f"{PREFIX}band_gap_pbe": (
        "DFT band gap with the PBE functional (the smallest stored; a filter matches any)",
        "float",
        "eV",
    ),
    f"{PREFIX}cod_id": ("id in the Crystallography Open Database", "string", None),
}
