"""OPTIMADE JSON Lines: the ``x-optimade`` header, the structures info line, one resource a line.

Each structure is an OPTIMADE ``structures`` resource with the release's facts (label, split,
structure id, position, COD id, space-group symbol) as ``_crystaldb_`` provider fields, which
the info line defines. Natural elements only: no OPTIMADE field states an isotope.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ase.data import chemical_symbols

from crystaldb.core.release_data import Member, ReleaseData
from crystaldb.formats.members import (
    cartesian,
    cod_id_of,
    label_of,
    lattice_of,
    numbers_of,
    text_file,
)

OPTIMADE_JSONL = "optimade.jsonl"
OPTIMADE_API_VERSION = "1.2.0"
PROVIDER = "_crystaldb_"


def write_optimade_jsonl(data: ReleaseData, folder: Path) -> None:
    """The x-optimade header line, the structures info line, then one structure per line."""
    with text_file(folder / OPTIMADE_JSONL) as handle:
        handle.write(_json_line({"x-optimade": {"meta": {"api_version": OPTIMADE_API_VERSION}}}))
        handle.write(_json_line(_info(data)))
        handle.writelines(_json_line(optimade_resource(data, m)) for m in data.members)


def _json_line(document: Any) -> str:
    """Compact, key-sorted, strict JSON on one line, so a line is one document."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"


def _label_field(data: ReleaseData) -> str:
    """Provider field of the label: _crystaldb_band_gap."""
    return PROVIDER + re.sub(r"\W", "_", data.label_property or "label")


def _info(data: ReleaseData) -> dict[str, Any]:
    """The info/structures entry: definitions of the provider-specific fields."""
    properties: dict[str, dict[str, Any]] = {
        _label_field(data): {
            "description": f"{data.label_property} of release {data.name} {data.version}"
            f" ({json.dumps(data.label_method, sort_keys=True)})",
            "unit": data.label_unit,
            "type": "float",
        },
        PROVIDER + "split": {"description": "split of the release", "type": "string"},
        PROVIDER + "structure_id": {"description": "crystaldb structure id", "type": "integer"},
        PROVIDER + "position": {"description": "position in the release", "type": "integer"},
        PROVIDER + "cod_id": {"description": "Crystallography Open Database id", "type": "string"},
        PROVIDER + "spacegroup_symbol": {"description": "space group (spglib)", "type": "string"},
    }
    return {
        "type": "info",
        "id": "structures",
        "description": f"structures of release {data.name} {data.version}",
        "formats": ["json"],
        "properties": properties,
        "output_fields_by_format": {"json": sorted(properties)},
    }


def optimade_formula(symbols: list[str]) -> str:
    """chemical_formula_reduced: elements alphabetical, counts divided by their gcd, 1 omitted."""
    counts: dict[str, int] = {}
    for symbol in symbols:
        counts[symbol] = counts.get(symbol, 0) + 1
    divisor = math.gcd(*counts.values()) if counts else 1
    return "".join(
        f"{s}{counts[s] // divisor if counts[s] // divisor > 1 else ''}" for s in sorted(counts)
    )


def optimade_resource(data: ReleaseData, member: Member) -> dict[str, Any]:
    """One OPTIMADE structures resource with the release's facts as _crystaldb_ fields."""
    symbols = [chemical_symbols[z] for z in numbers_of(member)]
    elements = sorted(set(symbols))
    attributes: dict[str, Any] = {
        "lattice_vectors": lattice_of(member).tolist(),
        "cartesian_site_positions": cartesian(member).tolist(),
        "species_at_sites": symbols,
        "species": [{"name": s, "chemical_symbols": [s], "concentration": [1.0]} for s in elements],
        "elements": elements,
        "nelements": len(elements),
        "elements_ratios": [symbols.count(s) / len(symbols) for s in elements],
        "nsites": len(symbols),
        "chemical_formula_reduced": optimade_formula(symbols),
        "dimension_types": [1, 1, 1],
        "nperiodic_dimensions": 3,
        "structure_features": [],
        "last_modified": None,  # required by the v1.2 models; a release records no such time
        "space_group_it_number": member.spacegroup_number,
        _label_field(data): label_of(data, member, "optimade-jsonl", required=False),
        PROVIDER + "split": member.split,
        PROVIDER + "structure_id": int(member.structure_id),
        PROVIDER + "position": int(member.position),
        PROVIDER + "cod_id": cod_id_of(member),
        PROVIDER + "spacegroup_symbol": member.spacegroup_symbol,
    }
    return {"id": str(member.structure_id), "type": "structures", "attributes": attributes}
