"""The boundary dataclasses: immutability, shapes, the `structures` columns, pickling."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from crystaldb.core.records import (
    CRYSTAL_SYSTEMS,
    STRUCTURES_COLUMNS,
    ParsedStructure,
    Rejection,
    StructureRecord,
)
from crystaldb.formats.payload import parse_file, process_file
from crystaldb.schema.structures import Structure


@pytest.fixture(scope="module")
def parsed(sample: Path) -> ParsedStructure:
    (entry,) = parse_file(sample / "cod" / "2000642.cif")
    assert isinstance(entry, ParsedStructure)
    return entry


@pytest.fixture(scope="module")
def record(sample: Path) -> StructureRecord:
    (entry,) = process_file(sample / "cod" / "2000642.cif")
    assert isinstance(entry, StructureRecord)
    return entry


def test_parsed_arrays_are_read_only(parsed: ParsedStructure) -> None:
    with pytest.raises(ValueError, match="read-only"):
        parsed.frac_coords[0, 0] = 0.5
    with pytest.raises(AttributeError):
        parsed.path = "elsewhere"  # type: ignore[misc]
    assert parsed.lattice.dtype == np.float64 and parsed.lattice.shape == (3, 3)
    assert parsed.numbers.dtype == np.int64
    assert ((parsed.frac_coords >= 0) & (parsed.frac_coords < 1)).all()


def test_parsed_refuses_inconsistent_lengths(parsed: ParsedStructure) -> None:
    with pytest.raises(ValueError, match="numbers"):
        ParsedStructure(parsed.lattice, parsed.frac_coords, parsed.numbers[:-1], None, "x.cif")
    with pytest.raises(ValueError, match="occupancies"):
        ParsedStructure(parsed.lattice, parsed.frac_coords, parsed.numbers, np.ones(2), "x.cif")


def test_columns_match_the_structures_table() -> None:
    """STRUCTURES_COLUMNS is exactly the table's columns less the database's own."""
    columns = {c.name for c in Structure.__table__.columns}
    assert set(STRUCTURES_COLUMNS) == columns - {"id", "created_at"}


def test_structures_row(record: StructureRecord) -> None:
    row = record.structures_row()
    assert tuple(row) == STRUCTURES_COLUMNS
    assert all(isinstance(v, float) for r in row["lattice"] for v in r)
    assert all(isinstance(z, int) for z in row["atomic_numbers"])
    assert row["nsites"] == len(row["atomic_numbers"]) == len(row["frac_coords"])
    assert row["nelements"] == len(row["elements"])
    # A SHA-256 hex digest: exactly the 64 lowercase hex digits the String(64) column holds.
    assert re.fullmatch(r"[0-9a-f]{64}", row["fingerprint"])
    assert Structure.__table__.columns["fingerprint"].type.length == 64
    assert row["crystal_system"] in CRYSTAL_SYSTEMS


def test_everything_pickles_for_dask(
    parsed: ParsedStructure, record: StructureRecord, sample: Path
) -> None:
    (rejection,) = parse_file(sample / "malformed" / "null-symbol.cif")
    assert isinstance(rejection, Rejection)
    for value in (parsed, record, rejection):
        clone = pickle.loads(pickle.dumps(value))
        assert type(clone) is type(value)
    assert np.array_equal(pickle.loads(pickle.dumps(parsed)).frac_coords, parsed.frac_coords)
    assert pickle.loads(pickle.dumps(record)) == record
