"""The embedded default: a private PostgreSQL under the data directory, nothing to set up."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from crystaldb.platform.database import connect
from crystaldb.platform.embedded import DATABASE_NAME, embedded_url
from crystaldb.platform.settings import load_settings

pytestmark = pytest.mark.embedded


def test_embedded_server_starts_under_the_data_dir_and_is_reused(embedded_data_dir: Path) -> None:
    first = embedded_url(embedded_data_dir)
    again = embedded_url(embedded_data_dir)
    assert first == again
    assert first.database == DATABASE_NAME
    assert (embedded_data_dir / "pgdata" / "PG_VERSION").is_file()


def test_settings_without_a_url_connect_to_the_embedded_server(embedded_data_dir: Path) -> None:
    db = connect(load_settings(data_dir=embedded_data_dir))
    try:
        assert db.embedded
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar_one() == DATABASE_NAME
        assert db.server_version().startswith("16")
    finally:
        db.dispose()
