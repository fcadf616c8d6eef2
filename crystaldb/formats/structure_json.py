"""Structures as JSON: pymatgen Structure dicts (one or a list) and ASE database JSON files.

Named structure_json rather than json so that ``from crystaldb.formats import ...`` never
hides the standard library's json module.
"""

from __future__ import annotations

import io
import json
from typing import Any

import ase.io
from pymatgen.core import Structure

from crystaldb.core.records import IngestError, Reason, Rejection
from crystaldb.formats.convert import (
    Parsed,
    never_raises,
    parsed_from_frames,
    parsed_from_pymatgen,
)
from crystaldb.formats.identifiers import ids_from_path


@never_raises
def parse_json_text(
    text: str, path: str, sha256: str | None = None, database: str | None = None
) -> Parsed:
    """A pymatgen Structure dict (or a list of them), or an ASE database JSON file."""
    data = json.loads(text)
    ids = ids_from_path(path, database)
    items = data if isinstance(data, list) else [data]
    if items and all(_is_pymatgen_structure(item) for item in items):
        results: Parsed = []
        for entry, item in enumerate(items):
            try:
                structure = Structure.from_dict(item)
                results.append(
                    parsed_from_pymatgen(structure, path, entry, external_ids=ids, sha256=sha256)
                )
            except IngestError as error:
                results.append(Rejection.from_error(error, path, entry, sha256))
        return results
    if isinstance(data, dict) and "ids" in data:  # what ase.io.write(..., format="json") writes
        frames = ase.io.read(io.StringIO(text), index=":", format="json")
        return parsed_from_frames(frames, path, sha256, ids)
    raise IngestError(
        Reason.PARSE_ERROR,
        f"{path}: JSON is neither a pymatgen Structure (dict with 'lattice' and 'sites')"
        " nor an ASE database file (dict with 'ids')",
    )


def _is_pymatgen_structure(item: Any) -> bool:
    """A pymatgen Structure.as_dict() output, recognised by its keys, before trying ASE's."""
    return isinstance(item, dict) and "lattice" in item and "sites" in item
