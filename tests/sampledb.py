"""Filling a test database with the package's real sample quickly: no Dask, the real writer.

Shared by the filter-language and API tests, which both compare SQL answers with a Python
oracle over the same kind of data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crystaldb.core.records import StructureRecord
from crystaldb.formats.payload import process_file
from crystaldb.platform.database import Database
from crystaldb.schema import Calculation, IngestBatch, Label
from crystaldb.schema.runs import track_run

SEGFAULTS_SPGLIB = "1001614.cif"  # crashes spglib 2.8 when its placeholder rows are read


def open_batch(db: Database, kind: str = "test") -> int:
    """A run and an ingest batch for `write_chunk` to write into."""
    with track_run(db, kind) as run, db.session() as session:
        batch = IngestBatch(run_id=run.id)
        session.add(batch)
        session.flush()
        return batch.id


def valid_records(
    folder: Path, pattern: str = "*.cif", database: str | None = None
) -> list[StructureRecord]:
    """Validated structures of every matching file (refused entries dropped)."""
    records = []
    for path in sorted(folder.glob(pattern)):
        if path.name != SEGFAULTS_SPGLIB:
            outcomes = process_file(path, database=database)
            records += [r for r in outcomes if isinstance(r, StructureRecord)]
    return records


def stand_in_gap(record: StructureRecord) -> float:
    """A deterministic made-up band gap from the structure itself, spread over 0-6 eV."""
    return round((record.density * 1.7 + record.nsites * 0.013) % 6.0, 3)


def add_band_gap(
    session: Any,
    structure_id: int,
    functional: str,
    value: float,
    parameters: dict[str, Any] | None = None,
) -> None:
    """One more calculation on a structure, with its band gap label."""
    calculation = Calculation(
        structure_id=structure_id, functional=functional, code="VASP", parameters=parameters or {}
    )
    session.add(calculation)
    session.flush()
    session.add(
        Label(
            calculation_id=calculation.id,
            structure_id=structure_id,
            property="band_gap",
            value=value,
            unit="eV",
        )
    )
