"""The platform's state as plain data: database, schema, cluster, artifact store, row counts."""

from __future__ import annotations

from typing import Any

import crystaldb
from crystaldb.platform.cluster import describe_cluster
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore
from crystaldb.schema import migrate
from crystaldb.schema.inventory import count_rows


def collect_status(settings: Settings, db: Database) -> dict[str, Any]:
    """Everything `crystaldb status` shows, as plain data (also its --json output)."""
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
        "cluster": describe_cluster(settings),
        "store": ArtifactStore(settings.store_location).describe(),
    }
    report["counts"] = count_rows(db) if state.up_to_date else None
    return report
