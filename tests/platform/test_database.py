"""The database engine: sessions against a real server, and clear errors when it is not there."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from crystaldb.core.errors import DatabaseUnavailable
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import load_settings
from crystaldb.schema import Run


def _free_port() -> int:
    """A local TCP port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connects_and_reports_the_server_version(db: Database) -> None:
    version = db.server_version()
    assert int(version.split(".")[0]) >= 13
    assert not db.embedded or "pgdata" in db.safe_url


def test_session_commits_on_success_and_rolls_back_on_error(db: Database) -> None:
    with db.session() as session:
        session.add(Run(kind="test-commit", host="here"))
    with pytest.raises(RuntimeError), db.session() as session:
        session.add(Run(kind="test-rollback", host="here"))
        session.flush()
        raise RuntimeError("abandon this unit of work")
    with db.session() as session:
        mine = ("test-commit", "test-rollback")  # other tests share this database's runs
        kinds = set(session.scalars(select(Run.kind).where(Run.kind.in_(mine))))
    assert kinds == {"test-commit"}


def test_unreachable_server_is_one_line_naming_host_port_and_variable(tmp_path: Path) -> None:
    port = _free_port()
    settings = load_settings(
        database_url=f"postgresql://postgres:sekret@127.0.0.1:{port}/crystaldb",
        data_dir=tmp_path,
    )
    with pytest.raises(DatabaseUnavailable) as info:
        connect(settings)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "CRYSTALDB_DATABASE_URL" in message
    assert "refused" in message.lower()
    assert "sekret" not in message
    assert "\n" not in message


def test_missing_database_is_named(db: Database, tmp_path: Path) -> None:
    url = db.url.set(database="crystaldb_no_such_database")
    settings = load_settings(
        database_url=url.render_as_string(hide_password=False), data_dir=tmp_path
    )
    with pytest.raises(DatabaseUnavailable, match='database "crystaldb_no_such_database" does not'):
        connect(settings)


def test_statement_parameters_stay_out_of_errors_and_logs(db: Database) -> None:
    """A failing statement's error names the statement, never its parameters: they can be a
    user's 66,000 values, and formatting them into the log stalled the API for a minute."""
    secret = "value-" + "x" * 5000
    with pytest.raises(DBAPIError) as caught, db.engine.connect() as connection:
        connection.execute(text("SELECT 1 / 0 WHERE :value <> ''"), {"value": secret})
    message = str(caught.value)
    assert "division by zero" in message and "SELECT 1 / 0" in message
    assert secret[:20] not in message and "parameters hidden" in message
