"""What the benchmark scripts share: a fresh database to measure against."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg

from crystaldb.platform.embedded import embedded_url
from crystaldb.platform.settings import parse_database_url


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
