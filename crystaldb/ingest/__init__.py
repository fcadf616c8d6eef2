"""Ingestion science: a structure file in, validated records or reasoned rejections out.

Pure functions (no database, no Dask): ``parse_payload`` parses an input's bytes (CIF
through gemmi with a pymatgen fallback, extended XYZ, POSCAR, JSON) into ParsedStructure
entries; ``validate`` checks one entry and derives its `structures` row (formulas, space
group, fingerprint) as a StructureRecord, or returns a Rejection with a stable reason code;
``process_payload`` does both, as ingestion and the API's uploads do, and ``parse_file`` /
``process_file`` do the same for one file on disk; ``read_omdb_gap1`` reads the OMDB-GAP1
release layout.
"""

from crystaldb.ingest.cif import parse_cif_text
from crystaldb.ingest.files import Payload
from crystaldb.ingest.omdb import read_omdb_gap1
from crystaldb.ingest.process import (
    parse_file,
    parse_payload,
    process_file,
    process_omdb_gap1,
    process_payload,
    validate_all,
)
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
    "Payload",
    "Reason",
    "Rejection",
    "StructureRecord",
    "Symmetry",
    "crystal_system",
    "describe",
    "parse_cif_text",
    "parse_file",
    "parse_payload",
    "process_file",
    "process_omdb_gap1",
    "process_payload",
    "read_omdb_gap1",
    "validate",
    "validate_all",
]
