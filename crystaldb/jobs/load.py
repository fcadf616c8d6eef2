"""Writing a chunk of ingested entries to PostgreSQL: one transaction, bulk rows through COPY.

A chunk either lands whole or not at all, so a crash loses at most the chunk in flight, and
re-running the same command skips what is already stored (sources and rejects are keyed by
the file's sha256 and the entry index): nothing lost, nothing doubled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Connection as PgConnection
from psycopg.types.json import Jsonb
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from crystaldb.core.records import STRUCTURES_COLUMNS, LabelSpec, Rejection, StructureRecord
from crystaldb.platform.database import Database, copy_connection
from crystaldb.schema import IngestBatch, IngestReject, Source, Structure

# Serialises concurrent writers so fingerprint deduplication never races.
INGEST_LOCK = 0x696E6765

Entry = StructureRecord | Rejection


@dataclass
class ChunkCounts:
    """What became of the entries of one chunk."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    already_ingested: int = 0
    labels: int = 0

    def add(self, other: ChunkCounts) -> None:
        """Accumulate another chunk's counts."""
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def entry_key(item: Entry) -> tuple[str, int]:
    """Identity of an input entry across runs: content hash (else path) and entry index."""
    return (item.sha256 or f"path:{item.path}", item.entry if item.entry is not None else -1)


def write_chunk(
    db: Database,
    batch_id: int,
    items: Sequence[Entry],
    labels: LabelSpec | None = None,
    files: int = 0,
) -> ChunkCounts:
    """Store a chunk's structures, duplicate links, labels and rejects in one transaction."""
    counts = ChunkCounts()
    with db.session() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK})
        known = _known_keys(session, items)
        fresh: list[Entry] = []
        for item in items:  # identical bytes are one input, however many copies are offered
            key = entry_key(item)
            if key not in known:
                known.add(key)
                fresh.append(item)
        counts.already_ingested = len(items) - len(fresh)
        records = [item for item in fresh if isinstance(item, StructureRecord)]
        rejects = [item for item in fresh if isinstance(item, Rejection)]
        pg = copy_connection(session)
        structure_ids, new = _store_structures(session, pg, records)
        _copy_sources(pg, batch_id, records, structure_ids, new)
        _insert_external_ids(session, records, structure_ids)
        if labels is not None:
            counts.labels = _store_labels(session, pg, records, structure_ids, labels)
        _copy_rejects(pg, batch_id, rejects)
        counts.stored = len(new)
        counts.duplicates = len(records) - len(new)
        counts.rejected = len(rejects)
        session.execute(
            update(IngestBatch)
            .where(IngestBatch.id == batch_id)
            .values(
                n_files=IngestBatch.n_files + files,
                n_stored=IngestBatch.n_stored + counts.stored,
                n_duplicates=IngestBatch.n_duplicates + counts.duplicates,
                n_rejected=IngestBatch.n_rejected + counts.rejected,
            )
        )
    return counts


def _known_keys(session: Session, items: Sequence[Entry]) -> set[tuple[str, int]]:
    """Entries an earlier run already stored or refused."""
    hashes = sorted({item.sha256 for item in items if item.sha256})
    paths = sorted({item.path for item in items if not item.sha256})
    known: set[tuple[str, int]] = set()
    if hashes:
        stored = session.execute(
            select(Source.sha256, Source.entry).where(Source.sha256.in_(hashes))
        )
        known.update((sha, entry) for sha, entry in stored)
        refused = session.execute(
            select(IngestReject.sha256, IngestReject.entry).where(IngestReject.sha256.in_(hashes))
        )
        known.update((str(sha), -1 if entry is None else entry) for sha, entry in refused)
    if paths:
        refused = session.execute(
            select(IngestReject.path, IngestReject.entry).where(
                IngestReject.sha256.is_(None), IngestReject.path.in_(paths)
            )
        )
        known.update((f"path:{p}", -1 if entry is None else entry) for p, entry in refused)
    return known


def _store_structures(
    session: Session, pg: PgConnection[Any], records: Sequence[StructureRecord]
) -> tuple[list[int], set[int]]:
    """Id of each record's structure, inserting the ones not yet stored (first copy wins)."""
    fingerprints = sorted({record.fingerprint for record in records})
    rows = session.execute(
        select(Structure.fingerprint, Structure.id).where(Structure.fingerprint.in_(fingerprints))
    )
    existing = {fingerprint: structure_id for fingerprint, structure_id in rows}
    first_of: dict[str, StructureRecord] = {}
    for record in records:
        if record.fingerprint not in existing:
            first_of.setdefault(record.fingerprint, record)
    new_ids = _allocate_ids(session, "structures", len(first_of))
    by_fingerprint = dict(existing)
    by_fingerprint.update(zip(first_of, new_ids, strict=True))
    columns = ", ".join(("id", *STRUCTURES_COLUMNS))
    with pg.cursor().copy(f"COPY structures ({columns}) FROM STDIN") as copy:
        for structure_id, record in zip(new_ids, first_of.values(), strict=True):
            copy.write_row((structure_id, *record.structures_row().values()))
    new_records = {id(record) for record in first_of.values()}
    ids = [by_fingerprint[record.fingerprint] for record in records]
    new = {index for index, record in enumerate(records) if id(record) in new_records}
    return ids, new


def _allocate_ids(session: Session, table: str, n: int) -> list[int]:
    """Draw ids from the table's identity sequence, so COPY can write them explicitly."""
    if n == 0:
        return []
    rows = session.execute(
        text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
        {"table": table, "n": n},
    )
    return [int(value) for value in rows.scalars()]


def _copy_sources(
    pg: PgConnection[Any],
    batch_id: int,
    records: Sequence[StructureRecord],
    structure_ids: Sequence[int],
    new: set[int],
) -> None:
    """One `sources` row per entry: the first copy of a structure, or a duplicate link."""
    with pg.cursor().copy(
        "COPY sources (batch_id, structure_id, path, sha256, entry, duplicate) FROM STDIN"
    ) as copy:
        for index, (record, structure_id) in enumerate(zip(records, structure_ids, strict=True)):
            copy.write_row(
                (batch_id, structure_id, record.path, record.sha256, record.entry, index not in new)
            )


def _insert_external_ids(
    session: Session, records: Sequence[StructureRecord], structure_ids: Sequence[int]
) -> None:
    """Link COD (and other) ids; an id already claimed keeps its first structure."""
    rows = [
        {"database": database, "external_id": value, "structure_id": structure_id}
        for record, structure_id in zip(records, structure_ids, strict=True)
        for database, value in record.external_ids.items()
    ]
    if rows:
        session.execute(
            text(
                "INSERT INTO external_ids (database, external_id, structure_id) "
                "VALUES (:database, :external_id, :structure_id) ON CONFLICT DO NOTHING"
            ),
            rows,
        )


def _store_labels(
    session: Session,
    pg: PgConnection[Any],
    records: Sequence[StructureRecord],
    structure_ids: Sequence[int],
    spec: LabelSpec,
) -> int:
    """One calculation and its label per entry carrying the property (duplicates included)."""
    labelled = [
        (record.properties[spec.source_property], structure_id)
        for record, structure_id in zip(records, structure_ids, strict=True)
        if spec.source_property in record.properties
    ]
    calc_ids = _allocate_ids(session, "calculations", len(labelled))
    with pg.cursor().copy(
        "COPY calculations (id, structure_id, functional, code, code_version, parameters,"
        " magnetic_moment, reference) FROM STDIN"
    ) as copy:
        for calc_id, (_, structure_id) in zip(calc_ids, labelled, strict=True):
            copy.write_row(
                (
                    calc_id,
                    structure_id,
                    spec.functional,
                    spec.code,
                    spec.code_version,
                    Jsonb(spec.parameters),
                    spec.magnetic_moment,
                    spec.reference,
                )
            )
    with pg.cursor().copy(
        "COPY labels (calculation_id, structure_id, property, value, unit) FROM STDIN"
    ) as copy:
        for calc_id, (value, structure_id) in zip(calc_ids, labelled, strict=True):
            copy.write_row((calc_id, structure_id, spec.property, value, spec.unit))
    return len(labelled)


def _copy_rejects(pg: PgConnection[Any], batch_id: int, rejects: Iterable[Rejection]) -> None:
    """Every refused entry, with its reason and the parser's own words."""
    with pg.cursor().copy(
        "COPY ingest_rejects (batch_id, path, sha256, entry, reason, message) FROM STDIN"
    ) as copy:
        for reject in rejects:
            copy.write_row(
                (batch_id, reject.path, reject.sha256, reject.entry, reject.reason, reject.message)
            )
