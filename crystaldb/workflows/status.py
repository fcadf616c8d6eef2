"""The platform's state as plain data: database, schema, cluster, artifact store, row counts."""

from __future__ import annotations

from typing import Any

import crystaldb
from crystaldb.platform.cluster import describe_cluster
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import describe_store
from crystaldb.schema import migrate
from crystaldb.schema.inventory import count_rows


def collect_status(settings: Settings, db: Database, probe: bool = False) -> dict[str, Any]:
    """Everything `crystaldb status` shows, as plain data (also its --json output).

    A running scheduler's workers are always listed and checked (each runs one small task
    that reaches the store and the database); a local cluster only with `probe`.
    """
    state = migrate.status(db)
    report: dict[str, Any] = {
        "version": crystaldb.__version__,
        "database": {
            "url": db.safe_url,
            "embedded": db.embedded,
            "server_version": db.server_version(),
            "schema": state.current,
            "schema_head": state.head,
            "up_to_date": state.up_to_date,
        },
        "cluster": describe_cluster(settings, probe=probe, database=db.url),
        "store": describe_store(settings.store_location),
    }
    report["counts"] = count_rows(db) if state.up_to_date else None
    return report
