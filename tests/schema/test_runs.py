"""Run records: every job leaves a row, and a crash leaves a visible failed run."""

from __future__ import annotations

import os

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
    assert run.parameters == {"files": 3}  # the inputs, exactly as given
    assert run.results == {"stored": 2}  # the outputs, apart
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


def test_runs_of_vanished_processes_are_marked_failed(db: Database) -> None:
    import subprocess
    import sys

    from crystaldb.core.provenance import host_name
    from crystaldb.schema.runs import reap_vanished_runs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a real process id that no longer exists
    with db.session() as session:
        dead = Run(kind="test-killed", host=host_name(), pid=gone.pid)
        alive = Run(kind="test-alive", host=host_name(), pid=os.getpid())
        elsewhere = Run(kind="test-elsewhere", host="another-host", pid=gone.pid)
        session.add_all([dead, alive, elsewhere])
        session.flush()
        ids = (dead.id, alive.id, elsewhere.id)
    assert ids[0] in reap_vanished_runs(db)
    dead_run, alive_run, remote_run = (_run(db, i) for i in ids)
    assert dead_run.status == "failed" and dead_run.finished_at is not None
    assert dead_run.error is not None and dead_run.error.startswith("process vanished")
    assert (alive_run.status, remote_run.status) == ("running", "running")
    with db.session() as session:  # close them so later tests start clean
        for run_id in ids[1:]:
            run = session.get_one(Run, run_id)
            run.status, run.finished_at = "failed", run.started_at


def test_a_run_records_its_process(db: Database) -> None:
    with track_run(db, "test-pid") as handle:
        pass
    assert _run(db, handle.id).pid == os.getpid()
