"""A database of real labelled structures for the science and job tests: the JARVIS-DFT sample.

The 50 labelled POSCARs of the package's sample (crystaldb/data/sample/jarvis: the same files
as ../shared/data/jarvis-sample) carry real OptB88vdW band gaps; they are loaded once per
session with the real writer and frozen as release `jarvis` (first 40 train, last 10 test, in
id_prop.csv order), with an artifact store of their own.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace

import numpy as np

from crystaldb.core.cell import Cell
from crystaldb.core.records import LabelSpec, StructureRecord
from crystaldb.formats.payload import process_file
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from tests.realdata import SAMPLE

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
