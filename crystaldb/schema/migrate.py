"""Schema migrations through Alembic's API, on crystaldb's own engine (no alembic.ini needed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from crystaldb.core.errors import SchemaOutOfDate
from crystaldb.platform.database import Database
from crystaldb.schema.base import Base

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands against the migrations shipped with this code."""

    current: str | None
    head: str
    pending: list[str]

    @property
    def up_to_date(self) -> bool:
        """True when no migration is waiting."""
        return self.current == self.head


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@contextmanager
def _bound(db: Database) -> Iterator[Config]:
    """An Alembic config bound to one transaction on the database."""
    config = _config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        yield config


def upgrade(db: Database, revision: str = "head") -> SchemaStatus:
    """Apply migrations up to `revision` (all of them by default)."""
    with _bound(db) as config:
        command.upgrade(config, revision)
    return status(db)


def downgrade(db: Database, revision: str) -> SchemaStatus:
    """Undo migrations down to `revision` ('base' removes every table)."""
    with _bound(db) as config:
        command.downgrade(config, revision)
    return status(db)


def status(db: Database) -> SchemaStatus:
    """The current revision, the head, and what lies between."""
    script = ScriptDirectory.from_config(_config())
    head = script.get_current_head()
    assert head is not None, "no migrations shipped"
    with db.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    pending = [rev.revision for rev in script.iterate_revisions(head, current or "base")]
    return SchemaStatus(current=current, head=head, pending=list(reversed(pending)))


def require_current(db: Database) -> None:
    """Refuse to work on a database whose schema is behind the code."""
    state = status(db)
    if not state.up_to_date:
        raise SchemaOutOfDate(
            f"the database at {db.safe_url} is at schema {state.current or 'empty'}, "
            f"the code needs {state.head}: run `crystaldb db upgrade`"
        )


def differences(db: Database) -> list[Any]:
    """What autogenerate would change: empty when models and migrations agree."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def new_revision(db: Database, message: str, autogenerate: bool = True) -> str:
    """Write a new migration file from the difference between models and database."""
    head = status(db).head
    rev_id = f"{int(head) + 1:04d}" if head.isdigit() else None  # 0001, 0002, ...
    with _bound(db) as config:
        script = command.revision(config, message=message, autogenerate=autogenerate, rev_id=rev_id)
    if isinstance(script, list):
        script = script[0]
    assert script is not None
    return str(script.path)
