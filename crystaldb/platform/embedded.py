"""The embedded PostgreSQL server: a private server under the data directory, no setup needed."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL, make_url

from crystaldb.core.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

DATABASE_NAME = "crystaldb"

# Servers started by this process, kept referenced so they stay up until it exits.
_servers: dict[Path, Any] = {}


def embedded_url(data_dir: Path, database: str = DATABASE_NAME) -> URL:
    """Start (or join) the embedded server under data_dir and return a URL to `database`."""
    pgdata = (data_dir / "pgdata").resolve()
    server = _servers.get(pgdata) or _start(pgdata)
    raw = make_url(server.get_uri())  # trust auth: pgserver's URI has an empty password
    url = URL.create(
        "postgresql+psycopg", username=raw.username, host=raw.host, port=raw.port, query=raw.query
    )
    _ensure_database(url, database)
    return url.set(database=database)


def stop_embedded(data_dir: Path) -> None:
    """Let go of this process's handle; the server stops when no process holds one."""
    server = _servers.pop((data_dir / "pgdata").resolve(), None)
    if server is not None:
        server.cleanup()


def _start(pgdata: Path) -> Any:
    """pgserver ships the binaries in its wheel; 'stop' shuts the server when its users exit."""
    with warnings.catch_warnings():  # platformdirs warns about an unset XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        import pgserver

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded PostgreSQL in %s", pgdata)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises plain exceptions with the server log inside
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {_first_line(exc)}"
        ) from exc
    _servers[pgdata] = server
    return server


def _ensure_database(server_url: URL, database: str) -> None:
    """Create the application database on first use (CREATE DATABASE cannot run in a txn)."""
    conninfo = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')


def _first_line(exc: BaseException) -> str:
    """Server errors run to many lines; the first says what went wrong."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def running_embedded_url(data_dir: Path, database: str = DATABASE_NAME) -> URL | None:
    """The URL of the embedded server if some process runs it now; None, starting nothing.

    The server runs only while a crystaldb command (or `crystaldb serve`) holds it, so a URL
    printed for later use is good only as long as that command runs.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import PostmasterInfo

    pgdata = (data_dir / "pgdata").resolve()
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):  # a half-written postmaster.pid
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    raw = make_url(info.get_uri())
    return URL.create(
        "postgresql+psycopg",
        username=raw.username,
        host=raw.host,
        port=raw.port,
        database=database,
        query=raw.query,
    )
