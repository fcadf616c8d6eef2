"""Ingestion science: a structure file in, validated records or reasoned rejections out.

Pure functions (no database, no Dask): ``read_file`` parses CIF (gemmi, with a pymatgen
fallback), extended XYZ, POSCAR and JSON into ParsedStructure entries; ``validate`` checks
one entry and derives its `structures` row (formulas, space group, fingerprint) as a
StructureRecord, or returns a Rejection with a stable reason code; ``process_file`` does
both for one file, and ``read_omdb_gap1`` reads the OMDB-GAP1 release layout.
"""

from crystaldb.ingest.cif import parse_cif_text
from crystaldb.ingest.formats import read_file
from crystaldb.ingest.omdb import read_omdb_gap1
from crystaldb.ingest.process import process_file, process_omdb_gap1, validate_all
from crystaldb.ingest.records import (
    STRUCTURES_COLUMNS,
    IngestError,
    ParsedStructure,
    Reason,
    Rejection,
    StructureRecord,
)
from crystaldb.ingest.symmetry import Symmetry, crystal_system, describe
from crystaldb.ingest.validate import DEFAULT_LIMITS, Limits, validate

__all__ = [
    "DEFAULT_LIMITS",
    "STRUCTURES_COLUMNS",
    "IngestError",
    "Limits",
    "ParsedStructure",
    "Reason",
    "Rejection",
    "StructureRecord",
    "Symmetry",
    "crystal_system",
    "describe",
    "parse_cif_text",
    "process_file",
    "process_omdb_gap1",
    "read_file",
    "read_omdb_gap1",
    "validate",
    "validate_all",
]
