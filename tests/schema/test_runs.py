"""Run records: every job leaves a row, and a crash leaves a visible failed run."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crystaldb.platform.database import Database
from crystaldb.schema import Run
from crystaldb.schema.runs import track_run


def _run(db: Database, run_id: int) -> Run:
    with db.session() as session:
        run = session.get_one(Run, run_id)
        session.expunge(run)
        return run


def test_successful_job_is_recorded_with_provenance(db: Database) -> None:
    with track_run(db, "test-success", {"files": 3}) as handle:
        during = _run(db, handle.id)  # visible to others while the job runs
        handle.results["stored"] = 2
    assert during.status == "running" and during.finished_at is None
    run = _run(db, handle.id)
    assert run.status == "succeeded"
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert run.parameters == {"files": 3, "stored": 2}
    assert {"python", "crystaldb", "sqlalchemy", "psycopg"} <= set(run.software)
    assert run.host and run.device == "cpu" and run.error is None


def test_failing_job_leaves_a_failed_run_and_the_error_propagates(db: Database) -> None:
    with pytest.raises(ValueError, match="boom"), track_run(db, "test-failure") as handle:
        raise ValueError("boom")
    run = _run(db, handle.id)
    assert run.status == "failed"
    assert run.finished_at is not None
    assert run.error is not None and run.error.startswith("ValueError: boom")
    assert "test_runs.py" in run.error  # the innermost frames, for whoever debugs it


def test_interrupted_job_is_recorded_as_interrupted(db: Database) -> None:
    with pytest.raises(KeyboardInterrupt), track_run(db, "test-interrupt") as handle:
        raise KeyboardInterrupt
    run = _run(db, handle.id)
    assert (run.status, run.error) == ("failed", "interrupted (KeyboardInterrupt)")


def test_a_failed_jobs_own_transaction_does_not_take_the_run_row_with_it(db: Database) -> None:
    with (
        pytest.raises(RuntimeError),
        track_run(db, "test-rollback") as handle,
        db.session() as session,
    ):
        session.add(Run(kind="test-partial-work", host="here"))
        session.flush()
        raise RuntimeError("the job's own unit of work fails")
    with db.session() as session:
        partial = session.scalars(select(Run).where(Run.kind == "test-partial-work")).all()
    assert partial == []
    assert _run(db, handle.id).status == "failed"
