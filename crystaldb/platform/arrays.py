"""PostgreSQL arrays straight into NumPy: bulk reads of structures without Python floats.

psycopg turns a `float8[]` into nested Python lists of Python floats, about 1 s per million
atoms' coordinates; NumPy can read the binary wire format of an array without a null as
fixed-size (length, value) records instead. psycopg has no NumPy array loader, so this module
registers one, for one cursor at a time (`numpy_rows`): nothing else sees NumPy arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from psycopg import Connection
from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy import Executable
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

_HEADER = struct.Struct(">iiI")  # ndim, has-null flag, element type oid
_DIMENSION = struct.Struct(">ii")  # size, lower bound


class _NumpyArrayLoader(Loader):
    """Binary array -> ndarray of the array's shape (one-dimensional or rectangular)."""

    format = Format.BINARY
    element: ClassVar[np.dtype[Any]]

    def load(self, data: Any) -> np.ndarray:
        buffer = memoryview(data)
        ndim, has_null, _ = _HEADER.unpack_from(buffer, 0)
        if ndim == 0:
            return np.empty(0, dtype=self.element.newbyteorder("="))
        if has_null:
            raise ValueError("array with NULL elements cannot be read into NumPy")
        shape = [_DIMENSION.unpack_from(buffer, _HEADER.size + 8 * i)[0] for i in range(ndim)]
        records = np.frombuffer(
            buffer,
            dtype=np.dtype([("length", ">i4"), ("value", self.element)]),
            offset=_HEADER.size + 8 * ndim,
            count=int(np.prod(shape)),
        )
        return records["value"].astype(self.element.newbyteorder("=")).reshape(shape)


class _Float8Arrays(_NumpyArrayLoader):
    element = np.dtype(">f8")


class _Float4Arrays(_NumpyArrayLoader):
    element = np.dtype(">f4")


class _Int2Arrays(_NumpyArrayLoader):
    element = np.dtype(">i2")


class _Int4Arrays(_NumpyArrayLoader):
    element = np.dtype(">i4")


class _Int8Arrays(_NumpyArrayLoader):
    element = np.dtype(">i8")


# By the array types' fixed OIDs (pg_type): float8[], float4[], int2[], int4[], int8[].
LOADERS: dict[int, type[_NumpyArrayLoader]] = {
    1022: _Float8Arrays,
    1021: _Float4Arrays,
    1005: _Int2Arrays,
    1007: _Int4Arrays,
    1016: _Int8Arrays,
}


def numpy_rows(session: Session, statement: Executable) -> Sequence[tuple[Any, ...]]:
    """Run a Core statement in the session's transaction; numeric arrays come back as ndarrays."""
    compiled = statement.compile(dialect=postgresql.psycopg.dialect())  # type: ignore[attr-defined]
    pg = session.connection().connection.driver_connection
    assert isinstance(pg, Connection)
    cursor = pg.cursor(binary=True)
    for oid, loader in LOADERS.items():
        cursor.adapters.register_loader(oid, loader)
    return cursor.execute(str(compiled), compiled.params).fetchall()
