"""Row counts of the main tables: what `crystaldb status` reports."""

from __future__ import annotations

from sqlalchemy import func, select

from crystaldb.platform.database import Database
from crystaldb.schema import (
    Calculation,
    IngestReject,
    Label,
    Model,
    Prediction,
    QuotientGraph,
    Release,
    Run,
    Structure,
)

COUNTED = {
    "structures": Structure,
    "calculations": Calculation,
    "labels": Label,
    "quotient_graphs": QuotientGraph,
    "models": Model,
    "predictions": Prediction,
    "releases": Release,
    "runs": Run,
    "ingest_rejects": IngestReject,
}


def count_rows(db: Database) -> dict[str, int]:
    """Exact counts in one round trip (one scalar subquery per table)."""
    columns = [
        select(func.count()).select_from(model).scalar_subquery().label(name)
        for name, model in COUNTED.items()
    ]
    with db.engine.connect() as conn:
        row = conn.execute(select(*columns)).one()
    return dict(row._mapping)
