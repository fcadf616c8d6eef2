"""Non-CIF formats (extended XYZ, POSCAR, pymatgen/ASE JSON) and the choice of parser by name."""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import ase.io
from pymatgen.core import Structure

from crystaldb.core.records import IngestError, ParsedStructure, Reason, Rejection
from crystaldb.formats.cif import parse_cif_text
from crystaldb.formats.convert import parsed_from_atoms, parsed_from_pymatgen
from crystaldb.formats.identifiers import ids_from_path

Parsed = list[ParsedStructure | Rejection]
Parser = Callable[[str, str, str | None, str | None], Parsed]


def _never_raises(parse: Parser) -> Parser:
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


@_never_raises
def parse_extxyz_text(
    text: str, path: str, sha256: str | None = None, database: str | None = None
) -> Parsed:
    """Every frame of an (extended) XYZ file, with numeric info/calculator values as properties."""
    frames = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    return _from_frames(frames, path, sha256, ids_from_path(path, database))


@_never_raises
def parse_poscar_text(
    text: str, path: str, sha256: str | None = None, database: str | None = None
) -> Parsed:
    """A VASP POSCAR/CONTCAR (one structure)."""
    atoms = ase.io.read(io.StringIO(text), format="vasp")
    return _from_frames([atoms], path, sha256, ids_from_path(path, database))


@_never_raises
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
        return _from_frames(frames, path, sha256, ids)
    raise IngestError(
        Reason.PARSE_ERROR,
        f"{path}: JSON is neither a pymatgen Structure (dict with 'lattice' and 'sites')"
        " nor an ASE database file (dict with 'ids')",
    )


def _is_pymatgen_structure(item: Any) -> bool:
    """A pymatgen Structure.as_dict() output, recognised by its keys."""
    return isinstance(item, dict) and "lattice" in item and "sites" in item


def _from_frames(frames: Any, path: str, sha256: str | None, ids: dict[str, str]) -> Parsed:
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


def _cif(text: str, path: str, sha256: str | None, database: str | None) -> Parsed:
    """CIF through cif.parse_cif_text, in the common parser signature."""
    return parse_cif_text(text, path, sha256=sha256, database=database)


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


def _rejection(
    reason: Reason, path: str, entry: int | None, sha256: str | None, message: str
) -> Rejection:
    """A Rejection whose message already names the file."""
    return Rejection(path=path, entry=entry, reason=str(reason), message=message, sha256=sha256)
