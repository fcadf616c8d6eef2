"""Migrations: the round trip works and the models and migrations describe the same schema."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from crystaldb.platform.database import Database
from crystaldb.schema import Base, migrate
from crystaldb.schema.migrate import MIGRATIONS


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def test_empty_database_upgrades_downgrades_and_upgrades_again(empty_db: Database) -> None:
    expected = set(Base.metadata.tables)
    assert migrate.status(empty_db).current is None

    state = migrate.upgrade(empty_db)
    assert state.up_to_date and not state.pending
    assert _tables(empty_db) == expected | {"alembic_version"}

    state = migrate.downgrade(empty_db, "base")
    assert state.current is None
    assert state.pending[-1] == state.head
    assert len(state.pending) == len(list(ScriptDirectory(str(MIGRATIONS)).walk_revisions()))
    assert _tables(empty_db) == {"alembic_version"}
    with empty_db.engine.connect() as conn:  # the trigger function went with the tables
        functions = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_proc WHERE proname = 'crystaldb_release_is_frozen'"
        ).scalar_one()
    assert functions == 0

    assert migrate.upgrade(empty_db).up_to_date
    assert _tables(empty_db) == expected | {"alembic_version"}


def test_models_and_migrations_agree(empty_db: Database) -> None:
    migrate.upgrade(empty_db)
    assert migrate.differences(empty_db) == []


def test_differences_are_detected_on_an_unmigrated_database(empty_db: Database) -> None:
    diffs = migrate.differences(empty_db)
    added = {diff[1].name for diff in diffs if diff[0] == "add_table"}
    assert added == set(Base.metadata.tables)


def test_upgrade_is_idempotent(db: Database) -> None:
    before = migrate.status(db)
    assert migrate.upgrade(db) == before
