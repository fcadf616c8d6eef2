"""File in, records out: the one path from an input's bytes to validated records or refusals.

`crystaldb ingest` reads each input (`files.read_input`, or an archive member) on the client
and hands its bytes to `process_payload` on a worker; the API's uploads call
`process_payload` on the bytes they received; `parse_file` and `process_file` compose the
same two steps for one plain file, so tests and benchmarks see what ingestion sees.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from crystaldb.core.records import IngestError, ParsedStructure, Reason, Rejection, StructureRecord
from crystaldb.core.validate import DEFAULT_LIMITS, DEFAULT_MAX_FILE_BYTES, Limits, validate
from crystaldb.formats.convert import Parsed
from crystaldb.formats.files import Payload, check_text, read_input, sha256_bytes
from crystaldb.formats.omdb_gap1 import read_omdb_gap1
from crystaldb.formats.readers import SUPPORTED, parser_for

Outcome = StructureRecord | Rejection


def parse_payload(item: Payload, database: str | None = None) -> Parsed:
    """One input's bytes to parsed entries or rejections; never raises for bad input."""
    sha = sha256_bytes(item.data)
    parser = parser_for(item.name)
    if parser is None:
        message = f"{item.name}: not a structure file crystaldb reads ({SUPPORTED})"
        return [Rejection(item.name, None, str(Reason.UNSUPPORTED_FORMAT), message, sha)]
    try:
        text = check_text(item.data, item.name)
        if not text.strip():
            raise IngestError(Reason.NO_ATOMS, f"{item.name}: file is empty")
        return parser(text, item.name, sha, database)
    except IngestError as error:
        return [Rejection.from_error(error, item.name, None, sha)]
    except Exception as error:  # the format libraries raise anything from ValueError to KeyError
        message = f"{item.name}: {type(error).__name__}: {error}"
        return [Rejection(item.name, None, str(Reason.PARSE_ERROR), message, sha)]


def validate_all(
    items: Sequence[ParsedStructure | Rejection], limits: Limits = DEFAULT_LIMITS
) -> list[Outcome]:
    """Validate the parsed entries, passing reader rejections through unchanged."""
    return [item if isinstance(item, Rejection) else validate(item, limits) for item in items]


def process_payload(
    item: Payload, limits: Limits = DEFAULT_LIMITS, database: str | None = None
) -> list[Outcome]:
    """One input's bytes to records or rejections, as ingestion and the API's uploads need."""
    return validate_all(parse_payload(item, database), limits)


def parse_file(
    path: str | os.PathLike[str],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    database: str | None = None,
) -> Parsed:
    """One plain file read and parsed exactly as ingestion does, before validation."""
    item = read_input(Path(path), max_file_bytes)
    return [item] if isinstance(item, Rejection) else parse_payload(item, database)


def process_file(
    path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS, *, database: str | None = None
) -> list[Outcome]:
    """One plain file read, parsed and validated exactly as ingestion does."""
    item = read_input(Path(path), limits.max_file_bytes)
    return [item] if isinstance(item, Rejection) else process_payload(item, limits, database)


def process_omdb_gap1(
    directory: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS
) -> list[Outcome]:
    """Read and validate an OMDB-GAP1 folder; raises IngestError if the layout is broken."""
    return validate_all(read_omdb_gap1(directory), limits)
