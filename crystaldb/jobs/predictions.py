"""Writing predictions: one COPY per batch, every row stamped with its model and run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crystaldb.platform.database import Database, copy_connection


def write_predictions(
    db: Database,
    model_id: int,
    run_id: int,
    structure_ids: Sequence[int],
    values: np.ndarray,
    uncertainties: np.ndarray | None = None,
    property: str = "band_gap",
) -> int:
    """Store one batch in one transaction (all or nothing); returns the rows written."""
    if len(structure_ids) != len(values):
        raise ValueError(f"{len(structure_ids)} structures but {len(values)} predictions")
    spread = [None] * len(values) if uncertainties is None else uncertainties.tolist()
    with (
        db.session() as session,
        copy_connection(session)
        .cursor()
        .copy(
            "COPY predictions (structure_id, model_id, run_id, property, value, uncertainty)"
            " FROM STDIN"
        ) as copy,
    ):
        for sid, value, sigma in zip(structure_ids, values.tolist(), spread, strict=True):
            copy.write_row((sid, model_id, run_id, property, value, sigma))
    return len(values)
