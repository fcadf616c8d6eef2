"""A database of real labelled structures for the compute tests: the JARVIS-DFT sample.

The 50 labelled POSCARs of the package's sample (crystaldb/data/sample/jarvis: the same files
as ../shared/data/jarvis-sample) carry real OptB88vdW band gaps; they are loaded once per
session with the real writer and frozen as release `jarvis` (first 40 train, last 10 test, in
id_prop.csv order), with an artifact store of their own.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from crystaldb.compute.cells import Cell
from crystaldb.ingest.load import LabelSpec, write_chunk
from crystaldb.ingest.process import process_file
from crystaldb.ingest.records import StructureRecord
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.release.create import create_release
from tests.conftest import DatabaseFactory
from tests.realdata import SAMPLE
from tests.sampledb import open_batch

JARVIS = SAMPLE / "jarvis"
OPTB88 = LabelSpec("optb88vdw_gap", "band_gap", "eV", "OptB88vdW", "VASP")


def jarvis_records() -> list[StructureRecord]:
    """The labelled JARVIS structures, in id_prop.csv order, with their gaps as a property."""
    with (JARVIS / "id_prop.csv").open() as handle:
        gaps = [(name, float(gap)) for name, gap in csv.reader(handle)]
    records = []
    for name, gap in gaps:
        for record in process_file(JARVIS / name):
            if isinstance(record, StructureRecord):
                records.append(replace(record, properties={"optb88vdw_gap": gap}))
    return records


def jarvis_cells() -> tuple[list[Cell], np.ndarray]:
    """The same structures as plain cells with their gaps, for the pure functions."""
    records = jarvis_records()
    cells = [
        Cell(i, np.asarray(r.lattice), np.asarray(r.frac_coords), np.asarray(r.atomic_numbers))
        for i, r in enumerate(records)
    ]
    return cells, np.array([r.properties["optb88vdw_gap"] for r in records])


@dataclass(frozen=True)
class LabelledDatabase:
    """A migrated database holding the JARVIS sample and release `jarvis`."""

    settings: Settings
    db: Database
    release: str
    n_train: int
    n_test: int


@pytest.fixture(scope="session")
def jarvis(databases: DatabaseFactory) -> Iterator[LabelledDatabase]:
    """Loaded once per session; tests add descriptors, kernels and models, never structures."""
    data_dir = Path(tempfile.mkdtemp(prefix="crystaldb-test-compute-"))
    settings, db = databases.migrated("crystaldb_compute", data_dir)
    records = jarvis_records()
    write_chunk(db, open_batch(db), records, labels=OPTB88)
    n_test = 10
    n_train = len(records) - n_test
    create_release(
        db, "jarvis", "1.0", label="band_gap:OptB88vdW", split=f"ordered:{n_train},{n_test}"
    )
    yield LabelledDatabase(settings, db, "jarvis", n_train, n_test)
    db.dispose()
    shutil.rmtree(data_dir, ignore_errors=True)
