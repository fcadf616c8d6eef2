"""VASP POSCAR/CONTCAR: one structure per file, read through ASE; names carry JARVIS ids."""

from __future__ import annotations

import io

import ase.io

from crystaldb.formats.convert import Parsed, never_raises, parsed_from_frames
from crystaldb.formats.identifiers import ids_from_path


@never_raises
def parse_poscar_text(
    text: str, path: str, sha256: str | None = None, database: str | None = None
) -> Parsed:
    """A VASP POSCAR/CONTCAR (one structure), its id taken from names like POSCAR-JVASP-10."""
    atoms = ase.io.read(io.StringIO(text), format="vasp")
    return parsed_from_frames([atoms], path, sha256, ids_from_path(path, database))
