"""NumPy array loading agrees with psycopg's own decoding, value for value."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import column, select, table, text
from sqlalchemy.orm import Session

from crystaldb.platform.arrays import numpy_rows
from crystaldb.platform.database import Database

VALUES = {
    "lattice": "ARRAY[[5.5, 0, 0], [0.25, 6.0, 0], [-1.5e-9, 0.1, 7.25]]::float8[]",
    "numbers": "ARRAY[6, 1, 8, 118]::int2[]",
    "ids": "ARRAY[9007199254740993]::int8[]",
    "lengths": "ARRAY[1.5, 2.25]::float4[]",
    "edges": "ARRAY[0, 1, -3]::int4[]",
    "empty": "'{}'::float8[]",
}


def _temp_table(session: Session) -> None:
    session.execute(
        text(
            "CREATE TEMP TABLE arrays_t (lattice float8[], numbers int2[], ids int8[],"
            " lengths float4[], edges int4[], empty float8[]) ON COMMIT DROP"
        )
    )
    session.execute(text(f"INSERT INTO arrays_t VALUES ({', '.join(VALUES.values())})"))


def test_numpy_rows_match_psycopg_lists(db: Database) -> None:
    t = table("arrays_t", *(column(name) for name in VALUES))
    with db.session() as session:
        _temp_table(session)
        expected = session.execute(select(t)).one()
        (row,) = numpy_rows(session, select(t))
    for name, want, got in zip(VALUES, expected, row, strict=True):
        assert isinstance(got, np.ndarray), name
        np.testing.assert_array_equal(got, np.asarray(want, dtype=got.dtype), err_msg=name)
    assert row[0].shape == (3, 3) and row[0].dtype == np.float64
    assert row[1].dtype == np.int16 and row[2][0] == 9007199254740993
    assert row[5].size == 0


def test_an_array_with_null_is_refused(db: Database) -> None:
    with db.session() as session, pytest.raises(ValueError, match="NULL elements"):
        numpy_rows(session, select(text("ARRAY[1.0, NULL]::float8[]")))
