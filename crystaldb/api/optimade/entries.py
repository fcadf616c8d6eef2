"""Stored structures as OPTIMADE structure resources, built field by field from only the
columns the requested fields need: the standard properties, crystaldb's own under the
`_crystaldb_` prefix, and their descriptions for `info/structures`.

The attributes are plain JSON-ready dicts, not `optimade` pydantic models: validating each
entry cost about 30 ms a page of 100 (issue 14's benchmark). The shapes are still the
spec's: the tests validate every response they receive with `StructureResponseMany/One`
and check that the model's dump of an entry equals the entry served.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from ase.data import chemical_symbols
from optimade.models.utils import anonymize_formula, reduce_formula
from pydantic import TypeAdapter
from pymatgen.core import Composition

PROVIDER = "crystaldb"
PREFIX = f"_{PROVIDER}_"
_INTEGRAL = re.compile(r"([A-Z][a-z]?\d*)+")  # a formula with whole-number counts
_TIME = TypeAdapter(datetime)  # timestamps spelt as the optimade models dump them
Row = dict[str, Any]  # the columns a page selected (see queries.COLUMNS), by name
# the site counts, selected only where a stored formula is fractional (it has a ".")
FALLBACK = "fallback_numbers"


@lru_cache(maxsize=200_000)
def _flat(stored: str) -> str | None:
    """A pymatgen formula ("H5(C5N)2") without parentheses ("C10H5N2"); None if fractional."""
    if _INTEGRAL.fullmatch(stored):
        return stored
    amounts = Composition(stored).get_el_amt_dict()
    if not all(float(n).is_integer() for n in amounts.values()):
        return None
    return "".join(f"{el}{int(n)}" for el, n in sorted(amounts.items()))


@lru_cache(maxsize=200_000)  # a page of 100 spent 3 ms in reduce_formula otherwise
def optimade_reduced(stored_reduced: str) -> str | None:
    """OPTIMADE's chemical_formula_reduced (alphabetical, gcd 1) from pymatgen's reduced formula."""
    flat = _flat(stored_reduced)
    return None if flat is None else reduce_formula(flat)


@lru_cache(maxsize=200_000)
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


def _symbols(numbers: Iterable[int]) -> list[str]:
    """Element symbols of atomic numbers."""
    return [chemical_symbols[z] for z in numbers]


def _fallback_counts(row: Row) -> Counter[str]:
    """Site counts for a fractional stored formula (the column is selected only then)."""
    return Counter(_symbols(row[FALLBACK] or ()))


def _reduced(row: Row) -> str:
    reduced = optimade_reduced(row["reduced_formula"])
    return reduced or reduce_formula(_count_formula(_fallback_counts(row)))


def _anonymous(row: Row) -> str:
    anonymous = optimade_anonymous(row["reduced_formula"])
    return anonymous or anonymize_formula(_count_formula(_fallback_counts(row)))


def _hill_of(row: Row) -> str:
    hill: str = row["hill_formula"]
    return hill if _INTEGRAL.fullmatch(hill) else _hill(_fallback_counts(row))


def _ratios(row: Row) -> list[float]:
    counts = Counter(_symbols(row["atomic_numbers"]))
    return [counts[el] / row["nsites"] for el in sorted(counts)]


def _cartesian(row: Row) -> list[list[float]]:
    frac = np.asarray(row["frac_coords"], dtype=float).reshape(-1, 3)
    positions: list[list[float]] = (frac @ np.asarray(row["lattice"], dtype=float)).tolist()
    return positions


def _sites(row: Row) -> tuple[list[dict[str, Any]], list[str]]:
    """species and species_at_sites, built once per row."""
    if "_sites" not in row:
        row["_sites"] = _species(_symbols(row["atomic_numbers"]), row["occupancies"])
    sites: tuple[list[dict[str, Any]], list[str]] = row["_sites"]
    return sites


def _features(row: Row) -> list[str]:
    disorder = any(len(s["chemical_symbols"]) > 1 for s in _sites(row)[0])
    return ["disorder"] if disorder else []


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those are unknown."""
    return value if value is not None and math.isfinite(value) else None


def _column(name: str) -> Callable[[Row], Any]:
    return lambda row: row[name]


def _constant(value: Any) -> Callable[[Row], Any]:
    return lambda row: list(value) if isinstance(value, list) else value


_SITES = ("atomic_numbers", "occupancies")
Builder = tuple[tuple[str, ...], Callable[[Row], Any]]  # the columns it is built from, how
RELEASES = f"{PREFIX}releases"
# served attribute -> its builder (provider.Catalogue adds the data-driven ones)
BUILDERS: dict[str, Builder] = {
    "last_modified": (("created_at",), lambda r: _TIME.dump_python(r["created_at"], mode="json")),
    "elements": (("elements",), lambda r: sorted(r["elements"])),
    "nelements": (("elements",), lambda r: len(r["elements"])),
    "elements_ratios": (("atomic_numbers", "nsites"), _ratios),
    "chemical_formula_descriptive": (("hill_formula", FALLBACK), _hill_of),
    "chemical_formula_reduced": (("reduced_formula", FALLBACK), _reduced),
    "chemical_formula_hill": (("hill_formula", FALLBACK), _hill_of),
    "chemical_formula_anonymous": (("reduced_formula", FALLBACK), _anonymous),
    "dimension_types": ((), _constant([1, 1, 1])),
    "nperiodic_dimensions": ((), _constant(3)),
    "lattice_vectors": (("lattice",), lambda r: [[float(x) for x in v] for v in r["lattice"]]),
    "cartesian_site_positions": (("lattice", "frac_coords"), _cartesian),
    "nsites": (("nsites",), _column("nsites")),
    "species": (_SITES, lambda r: _sites(r)[0]),
    "species_at_sites": (_SITES, lambda r: _sites(r)[1]),
    "structure_features": (_SITES, _features),
    f"{PREFIX}space_group_number": (("spacegroup_number",), _column("spacegroup_number")),
    f"{PREFIX}space_group_symbol": (("spacegroup_symbol",), _column("spacegroup_symbol")),
    f"{PREFIX}crystal_system": (("crystal_system",), _column("crystal_system")),
    f"{PREFIX}band_gap_pbe": (("band_gap_pbe",), lambda r: _finite(r["band_gap_pbe"])),
    f"{PREFIX}cod_id": (("cod_id",), _column("cod_id")),
    RELEASES: (("releases",), lambda r: list(r["releases"])),
}


def served(fields: Collection[str] | None, builders: dict[str, Builder] = BUILDERS) -> list[str]:
    """The attributes to build: those asked for that crystaldb serves (all when None)."""
    return list(builders) if fields is None else [f for f in builders if f in fields]


def needed(names: Iterable[str], builders: dict[str, Builder] = BUILDERS) -> set[str]:
    """The columns the attributes `names` are built from (the id always)."""
    return {"id"}.union(*(builders[name][0] for name in names))


def resource(
    row: Row, names: Iterable[str], builders: dict[str, Builder] = BUILDERS
) -> dict[str, Any]:
    """One structures resource with the attributes `names`, as the spec's JSON."""
    attributes = {name: builders[name][1](row) for name in names}
    return {"id": str(row["id"]), "type": "structures", "attributes": attributes}


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
    RELEASES: ('the releases holding the structure, as "NAME:VERSION"', "list", None),
}
