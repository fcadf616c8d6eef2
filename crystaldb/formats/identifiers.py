"""Identifiers of a structure in other databases, read from file names and CIF tags."""

from __future__ import annotations

import re
from pathlib import PurePath

# COD ids are seven digits starting 1-9 (1000000-9999999); files are named <id>.cif.
COD_ID = re.compile(r"[1-9]\d{6}")
# JARVIS-DFT ids as in its POSCAR exports: POSCAR-JVASP-1002.vasp or JVASP-1002.vasp.
_JARVIS_ID = re.compile(r"(?:POSCAR-)?(JVASP-\d+)")


def ids_from_path(path: str, database: str | None = None) -> dict[str, str]:
    """Known ids in a file name; with `database` given, the file stem is that database's id.

    Only unambiguous patterns are recognised: ``1000001.cif`` is COD 1000001 and
    ``POSCAR-JVASP-10.vasp`` is JARVIS JVASP-10.  Anything else needs `database`
    (e.g. ``database="curated-cofs"`` for ``05000N2.cif``).
    """
    name = PurePath(path).name
    stem = name.split(".", 1)[0]
    if database:
        return {database: stem}
    if COD_ID.fullmatch(stem) and name.lower().endswith(".cif"):
        return {"cod": stem}
    jarvis = _JARVIS_ID.fullmatch(stem)
    if jarvis:
        return {"jarvis": jarvis.group(1)}
    return {}


def cod_id_from_tag(value: str | None) -> str | None:
    """The COD id from a `_cod_database_code` value, which the COD writes in every file."""
    if value is None:
        return None
    value = value.strip().strip("'\"")
    return value if COD_ID.fullmatch(value) else None
