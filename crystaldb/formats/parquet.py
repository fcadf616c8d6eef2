"""Parquet: ``members.parquet``, one row per member, for dataframe tools (pandas, polars, duckdb).

Lattice is row-major (9 values), frac_coords flat (3n), atomic numbers as int16; a missing
label or COD id is null. Natural elements only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crystaldb.core.release_data import ReleaseData
from crystaldb.formats.members import cod_id_of, frac_of, label_of, lattice_of, numbers_of

PARQUET = "members.parquet"
PARQUET_SCHEMA = pa.schema(
    [
        ("position", pa.int32()),
        ("structure_id", pa.int64()),
        ("split", pa.string()),
        ("reduced_formula", pa.string()),
        ("elements", pa.list_(pa.string())),
        ("spacegroup_number", pa.int16()),
        ("label", pa.float64()),
        ("cod_id", pa.string()),
        ("lattice", pa.list_(pa.float64())),
        ("frac_coords", pa.list_(pa.float64())),
        ("atomic_numbers", pa.list_(pa.int16())),
    ]
)


def write_parquet(data: ReleaseData, folder: Path) -> None:
    """members.parquet: one row per member; lattice row-major (9), frac_coords flat (3n)."""
    members = data.members
    columns = {
        "position": [int(m.position) for m in members],
        "structure_id": [int(m.structure_id) for m in members],
        "split": [m.split for m in members],
        "reduced_formula": [m.reduced_formula for m in members],
        "elements": [list(m.elements) for m in members],
        "spacegroup_number": [m.spacegroup_number for m in members],
        "label": [label_of(data, m, "parquet", required=False) for m in members],
        "cod_id": [cod_id_of(m) for m in members],
        "lattice": _flat_lists([lattice_of(m) for m in members], pa.float64()),
        "frac_coords": _flat_lists([frac_of(m) for m in members], pa.float64()),
        "atomic_numbers": _flat_lists([numbers_of(m) for m in members], pa.int16()),
    }
    metadata = {"crystaldb.release": f"{data.name} {data.version}"}
    table = pa.table(columns, schema=PARQUET_SCHEMA.with_metadata(metadata))
    pq.write_table(table, folder / PARQUET, compression="zstd")


def _flat_lists(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    """A list column from numpy arrays without a Python loop over their values."""
    lengths = np.array([a.size for a in arrays], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))
