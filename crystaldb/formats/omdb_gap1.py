"""The OMDB-GAP1 release layout: structures.xyz, bandgaps.csv and CODids.csv, in the same order.

The three files describe one list: frame i of ``structures.xyz`` (extended XYZ), line i of
``bandgaps.csv`` (PBE band gap in eV, no header, written as ``%.18e``) and line i of
``CODids.csv`` (the COD id, no header).  A label that cannot be read, or files that do not
have the same number of entries, make the whole release untrustworthy, so those raise
IngestError (reasons ``missing_file``, ``bad_label``, ``layout_mismatch``) naming the file
and line; a single frame that is not a usable crystal is a per-entry Rejection as usual.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import ase.io

from crystaldb.core.records import IngestError, ParsedStructure, Reason, Rejection
from crystaldb.formats.convert import parsed_from_atoms
from crystaldb.formats.identifiers import cod_id_from_tag

STRUCTURES = "structures.xyz"
BANDGAPS = "bandgaps.csv"
COD_IDS = "CODids.csv"
BAND_GAP = "band_gap"  # property key; PBE band gap in eV

T = TypeVar("T")


def read_omdb_gap1(directory: str | os.PathLike[str]) -> list[ParsedStructure | Rejection]:
    """Read an OMDB-GAP1 folder into one entry per frame, with its COD id and band gap."""
    root = Path(directory)
    for name in (STRUCTURES, BANDGAPS, COD_IDS):
        if not (root / name).is_file():
            raise IngestError(Reason.MISSING_FILE, f"{root / name}: missing from the OMDB layout")
    gaps = read_column(root / BANDGAPS, _band_gap, "a band gap in eV (a number >= 0)")
    cod_ids = read_column(root / COD_IDS, _cod_id, "a COD id (seven digits)")
    structures = root / STRUCTURES
    try:
        frames = ase.io.read(structures, index=":", format="extxyz")
    except Exception as error:
        message = f"{structures}: not readable as extended XYZ: {type(error).__name__}: {error}"
        raise IngestError(Reason.PARSE_ERROR, message) from error
    if not len(frames) == len(gaps) == len(cod_ids):
        raise IngestError(
            Reason.LAYOUT_MISMATCH,
            f"{root}: {STRUCTURES} has {len(frames)} frames, {BANDGAPS} {len(gaps)} lines"
            f" and {COD_IDS} {len(cod_ids)} lines; they must match line for line",
        )
    with structures.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    results: list[ParsedStructure | Rejection] = []
    for entry, (atoms, gap, cod) in enumerate(zip(frames, gaps, cod_ids, strict=True)):
        try:
            parsed = parsed_from_atoms(
                atoms,
                str(structures),
                entry,
                external_ids={"cod": cod},
                properties={BAND_GAP: gap},
                sha256=sha256,
            )
            results.append(parsed)
        except IngestError as error:
            results.append(Rejection.from_error(error, str(structures), entry, sha256))
    return results


def read_column(path: Path, convert: Callable[[str], T], expected: str) -> list[T]:
    """One value per line, no header; trailing blank lines allowed, anything else is an error."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    values: list[T] = []
    for number, line in enumerate(lines, start=1):
        try:
            values.append(convert(line.strip()))
        except ValueError as error:
            raise IngestError(
                Reason.BAD_LABEL, f"{path}:{number}: expected {expected}, got {line!r}"
            ) from error
    return values


def _band_gap(text: str) -> float:
    """A finite, non-negative band gap."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _cod_id(text: str) -> str:
    """A COD id as the string stored in external_ids."""
    cod = cod_id_from_tag(text)
    if cod is None:
        raise ValueError(text)
    return cod
