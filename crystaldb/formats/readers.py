"""Which reader reads an input, chosen by its file name (each format's reader is in its module)."""

from __future__ import annotations

import os
from pathlib import PurePath

from crystaldb.formats.cif import parse_cif_text
from crystaldb.formats.convert import Parsed, Parser
from crystaldb.formats.extxyz import parse_extxyz_text
from crystaldb.formats.poscar import parse_poscar_text
from crystaldb.formats.structure_json import parse_json_text

SUPPORTED = ".cif, .xyz, .extxyz, .vasp, POSCAR, CONTCAR, .json"


def parser_for(path: str | os.PathLike[str]) -> Parser | None:
    """Choose a parser from the file name: .cif, .xyz/.extxyz, .vasp/POSCAR/CONTCAR, .json."""
    name = PurePath(path).name.lower()
    suffix = PurePath(name).suffix
    if suffix == ".cif":
        return _cif
    if suffix in (".xyz", ".extxyz"):
        return parse_extxyz_text
    if suffix == ".vasp" or name.startswith(("poscar", "contcar")):
        return parse_poscar_text
    if suffix == ".json":
        return parse_json_text
    return None


def _cif(text: str, path: str, sha256: str | None, database: str | None) -> Parsed:
    """CIF through cif.parse_cif_text, in the common parser signature."""
    return parse_cif_text(text, path, sha256=sha256, database=database)
