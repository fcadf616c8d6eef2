"""File in, records out: the reader and the validator composed, for one file or one release."""

from __future__ import annotations

import os

from crystaldb.ingest.formats import read_file
from crystaldb.ingest.omdb import read_omdb_gap1
from crystaldb.ingest.records import ParsedStructure, Rejection, StructureRecord
from crystaldb.ingest.validate import DEFAULT_LIMITS, Limits, validate

Outcome = StructureRecord | Rejection


def validate_all(
    items: list[ParsedStructure | Rejection], limits: Limits = DEFAULT_LIMITS
) -> list[Outcome]:
    """Validate the parsed entries, passing reader rejections through unchanged."""
    return [item if isinstance(item, Rejection) else validate(item, limits) for item in items]


def process_file(
    path: str | os.PathLike[str],
    limits: Limits = DEFAULT_LIMITS,
    *,
    database: str | None = None,
) -> list[Outcome]:
    """Read and validate every entry of one file; never raises for bad input."""
    parsed = read_file(path, max_file_bytes=limits.max_file_bytes, database=database)
    return validate_all(parsed, limits)


def process_omdb_gap1(
    directory: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS
) -> list[Outcome]:
    """Read and validate an OMDB-GAP1 folder; raises IngestError if the layout is broken."""
    return validate_all(read_omdb_gap1(directory), limits)
