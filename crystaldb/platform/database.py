"""The database engine and the single session factory every layer uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection as PgConnection
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crystaldb.core.errors import DatabaseUnavailable
from crystaldb.platform.embedded import embedded_url
from crystaldb.platform.settings import Settings

CONNECT_TIMEOUT_S = 5


@dataclass
class Database:
    """A reachable PostgreSQL database: its URL, engine and session factory."""

    url: URL
    embedded: bool
    engine: Engine = field(repr=False)
    sessions: sessionmaker[Session] = field(repr=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls back if it raises."""
        with self.sessions.begin() as session:
            yield session

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, fit to print or log."""
        return self.url.render_as_string(hide_password=True)

    def server_version(self) -> str:
        """PostgreSQL's own version string, short form."""
        with self.engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())

    def dispose(self) -> None:
        """Close pooled connections (before forking workers, or at the end of a test)."""
        self.engine.dispose()


def connect(settings: Settings, check: bool = True) -> Database:
    """Resolve the configured server (or start the embedded one) and check it answers."""
    if settings.database is None:
        url, embedded = embedded_url(settings.data_dir), True
    else:
        url, embedded = settings.database, False
    engine = create_engine(
        url,
        pool_pre_ping=True,
        # Statement parameters stay out of error messages and logs: they can be a user's
        # thousands of values, or a structure's arrays, and logging them stalled the API.
        hide_parameters=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "crystaldb"},
    )
    db = Database(url=url, embedded=embedded, engine=engine, sessions=sessionmaker(engine))
    if check:
        ping(db)
    return db


def ping(db: Database) -> None:
    """Open one connection, turning driver errors into one line naming the server."""
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, DBAPIError) as exc:
        where = "the embedded PostgreSQL" if db.embedded else "CRYSTALDB_DATABASE_URL"
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {db.safe_url} ({where}): {_reason(exc)}"
        ) from None


def _reason(exc: DBAPIError) -> str:
    """psycopg's message without SQLAlchemy's wrapping, on one line."""
    lines = [ln.strip() for ln in str(exc.orig or exc).strip().splitlines() if ln.strip()]
    text = " ".join(lines).removeprefix("connection failed: ")
    return text or type(exc).__name__


def copy_connection(session: Session) -> PgConnection[Any]:
    """The psycopg connection under a session's transaction: bulk writes use its COPY."""
    driver = session.connection().connection.driver_connection
    if not isinstance(driver, PgConnection):
        raise TypeError("COPY needs the psycopg driver (postgresql+psycopg:// URLs)")
    return driver
