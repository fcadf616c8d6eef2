"""Shared fixtures: a real PostgreSQL database per test session, created and dropped here.

The server is the embedded one (pgserver) unless CRYSTALDB_TEST_DATABASE_URL names another;
tests marked `embedded` always use the embedded server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from crystaldb.jobs.load import write_chunk
from crystaldb.platform.database import Database, connect
from crystaldb.platform.embedded import embedded_url, stop_embedded
from crystaldb.platform.settings import Settings, load_settings, parse_database_url
from crystaldb.release.create import create_release
from crystaldb.schema import migrate
from tests.jarvis import OPTB88, LabelledDatabase, jarvis_records
from tests.realdata import SAMPLE, SHARED_DATA, SHARED_MISSING
from tests.sampledb import open_batch

TEST_SERVER_ENV = "CRYSTALDB_TEST_DATABASE_URL"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `shared` read ../shared/data: without it they skip, saying why."""
    if item.get_closest_marker("shared") is not None and not SHARED_DATA.is_dir():
        pytest.skip(SHARED_MISSING)


def _conninfo(url: URL) -> str:
    """psycopg wants the plain postgresql:// form."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def embedded_data_dir() -> Iterator[Path]:
    """One embedded server for the whole session, in a throwaway data directory.

    Not under pytest's tmp_path: pytest deletes all but its three newest temporary folders,
    which would pull the data directory from under a live server when test runs overlap.
    """
    path = Path(tempfile.mkdtemp(prefix="crystaldb-test-embedded-"))
    yield path
    stop_embedded(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(embedded_data_dir: Path) -> URL:
    """An administrative URL (database 'postgres') on the server the suite runs against."""
    named = os.environ.get(TEST_SERVER_ENV)
    if named:
        return parse_database_url(named).set(database="postgres")
    return embedded_url(embedded_data_dir, database="postgres")


class DatabaseFactory:
    """Creates uniquely named databases on the test server and drops them afterwards."""

    def __init__(self, server: URL) -> None:
        self.server = server
        self.created: list[str] = []

    def create(self, prefix: str = "crystaldb_test") -> URL:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_conninfo(self.server), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.server.set(database=name)

    def migrated(self, prefix: str, data_dir: Path) -> tuple[Settings, Database]:
        """A new database migrated to head, with settings pointing at it and at data_dir."""
        url = self.create(prefix)
        settings = load_settings(
            database_url=url.render_as_string(hide_password=False), data_dir=data_dir
        )
        db = connect(settings)
        migrate.upgrade(db)
        return settings, db

    def drop_all(self) -> None:
        with psycopg.connect(_conninfo(self.server), autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="session")
def databases(server_url: URL) -> Iterator[DatabaseFactory]:
    """Every database a test session creates is dropped when it ends."""
    factory = DatabaseFactory(server_url)
    yield factory
    factory.drop_all()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer's CRYSTALDB_* variables or config file leak into a test."""
    for name in list(os.environ):
        if name.startswith("CRYSTALDB_") and name != TEST_SERVER_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture(scope="session")
def migrated_url(databases: DatabaseFactory) -> URL:
    """A database migrated to head, shared by the tests that only read or add rows."""
    url = databases.create()
    db = connect(load_settings(database_url=_render(url)))
    migrate.upgrade(db)
    db.dispose()
    return url


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture
def settings(migrated_url: URL, tmp_path: Path) -> Settings:
    """Settings pointing at the migrated test database, with a private data directory."""
    return load_settings(database_url=_render(migrated_url), data_dir=tmp_path / "data")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The migrated test database."""
    database = connect(settings)
    yield database
    database.dispose()


@pytest.fixture
def empty_db(databases: DatabaseFactory, tmp_path: Path) -> Iterator[Database]:
    """A brand-new database with no tables, for migration tests."""
    url = databases.create("crystaldb_empty")
    database = connect(load_settings(database_url=_render(url), data_dir=tmp_path / "data"))
    yield database
    database.dispose()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `crystaldb` entry point in a child process, as a user would."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CRYSTALDB_")}
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "crystaldb", *args],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=300,
        check=False,
    )


# --- real inputs: the packaged sample, and the shared corpus for `shared` tests ---


@pytest.fixture(scope="session")
def sample() -> Path:
    """The sample shipped inside the package."""
    return SAMPLE


@pytest.fixture(scope="session")
def cod(sample: Path) -> Path:
    """The sample's COD CIFs, named by COD id (215 of the shared corpus's 229)."""
    return sample / "cod"


@pytest.fixture
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The shared real-data folder (../shared/data), for tests marked `shared` only."""
    if request.node.get_closest_marker("shared") is None:
        pytest.fail(f"{request.node.nodeid} reads {SHARED_DATA}: mark it @pytest.mark.shared")
    return SHARED_DATA


@pytest.fixture
def shared_cod(shared_data: Path) -> Path:
    """All 229 COD CIFs of the shared corpus, named by COD id."""
    return shared_data / "cod"


# --- the JARVIS sample loaded as release `jarvis` (tests/jarvis.py) ---


@pytest.fixture(scope="session")
def jarvis(databases: DatabaseFactory) -> Iterator[LabelledDatabase]:
    """Loaded once per session; tests add descriptors, kernels and models, never structures."""
    data_dir = Path(tempfile.mkdtemp(prefix="crystaldb-test-compute-"))
    labelled = load_jarvis(databases, "crystaldb_compute", data_dir)
    yield labelled
    labelled.db.dispose()
    shutil.rmtree(data_dir, ignore_errors=True)


def load_jarvis(databases: DatabaseFactory, prefix: str, data_dir: Path) -> LabelledDatabase:
    """A new database holding the 50 JARVIS crystals and their release (first 40 train)."""
    settings, db = databases.migrated(prefix, data_dir)
    records = jarvis_records()
    write_chunk(db, open_batch(db), records, labels=OPTB88)
    n_test = 10
    n_train = len(records) - n_test
    create_release(
        db, "jarvis", "1.0", label="band_gap:OptB88vdW", split=f"ordered:{n_train},{n_test}"
    )
    return LabelledDatabase(settings, db, "jarvis", n_train, n_test)
