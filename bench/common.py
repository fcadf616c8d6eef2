"""What the benchmark scripts share: a fresh database to measure against."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import cycle
from pathlib import Path

import psycopg

from crystaldb.core.records import StructureRecord
from crystaldb.platform.embedded import embedded_url
from crystaldb.platform.settings import parse_database_url

TARGET_MEAN_SITES = 82  # OMDB-GAP1: 12,500 structures, 82 atoms per cell on average


def fresh_database(server: str | None, data_dir: Path) -> str:
    """A new empty database on the given server (default: the embedded one); its URL."""
    base = parse_database_url(server) if server else embedded_url(data_dir, "postgres")
    name = f"crystaldb_bench_{uuid.uuid4().hex[:8]}"
    admin = base.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Remove a database made by fresh_database."""
    parsed = parse_database_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


def cycled(records: list[StructureRecord], n: int) -> Iterator[StructureRecord]:
    """n records, cycling small and large cells so the running mean stays at 82 atoms."""
    small = cycle([r for r in records if r.nsites < TARGET_MEAN_SITES])
    large = cycle([r for r in records if r.nsites >= TARGET_MEAN_SITES])
    total = 0
    for i in range(n):
        record = next(large if total < TARGET_MEAN_SITES * i else small)
        total += record.nsites
        yield record
