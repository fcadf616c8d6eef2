"""Runs: one row per compute or ingest job, so provenance and failures are always visible."""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.core.provenance import host_name, software_versions
from crystaldb.platform.database import Database
from crystaldb.schema.base import Base, created_at_column

RUN_STATUSES = ("running", "succeeded", "failed")


class Run(Base):
    """A job: what ran, with which parameters and software, where, when, and how it ended."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="running")
    parameters: Mapped[dict[str, Any]] = mapped_column(server_default="{}")  # inputs, as given
    results: Mapped[dict[str, Any]] = mapped_column(server_default="{}")  # outputs, at the end
    software: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    host: Mapped[str] = mapped_column(Text)
    # The process that ran it, so a job killed outright (SIGKILL) can be told from one running.
    pid: Mapped[int | None] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(Text, server_default="cpu")
    started_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in RUN_STATUSES) + ")", name="status"
        ),
        CheckConstraint(
            "(status = 'running') = (finished_at IS NULL)", name="finished_when_not_running"
        ),
        Index("ix_runs_kind_started_at", "kind", "started_at"),
    )


@dataclass
class RunHandle:
    """What a job sees of its own run: the id to stamp on its outputs, and room for results."""

    id: int
    results: dict[str, Any] = field(default_factory=dict)


_CURRENT: ContextVar[RunHandle | None] = ContextVar("crystaldb_current_run", default=None)


def current_run() -> RunHandle | None:
    """The run the calling code works inside (the innermost `track_run`), or None."""
    return _CURRENT.get()


@contextmanager
def track_run(
    db: Database, kind: str, parameters: dict[str, Any] | None = None, device: str = "cpu"
) -> Iterator[RunHandle]:
    """Open a `runs` row before the work and close it after, so a crash is a visible failure.

    The row is committed in its own transaction before the job starts, so it survives
    whatever the job's own transactions do; what the job puts in `results` is stored in the
    row's own `results` column, its inputs (`parameters`) left as they were given.
    """
    reap_vanished_runs(db)
    with db.session() as session:
        run = Run(
            kind=kind,
            parameters=parameters or {},
            software=software_versions(),
            host=host_name(),
            pid=os.getpid(),
            device=device,
        )
        session.add(run)
        session.flush()
        handle = RunHandle(id=run.id)
    token = _CURRENT.set(handle)  # so the runner can note a worker that died on the job
    try:
        yield handle
    except BaseException as exc:  # Ctrl-C and killed jobs must be recorded too
        _finish(db, handle, "failed", _error_text(exc))
        raise
    finally:
        with suppress(ValueError):  # closed from another context (a collected generator)
            _CURRENT.reset(token)
    _finish(db, handle, "succeeded", None)


def _finish(db: Database, handle: RunHandle, status: str, error: str | None) -> None:
    """Stamp the end of a run, with the results the job recorded (kept apart from its inputs)."""
    with db.session() as session:
        finished_at = session.scalar(select(func.now()))
        run = session.get_one(Run, handle.id)
        run.status, run.error, run.finished_at = status, error, finished_at
        run.results = dict(handle.results)


def reap_vanished_runs(db: Database) -> list[int]:
    """Mark failed the runs of this host whose process is gone (killed before it could say so)."""
    with db.session() as session:
        running = session.execute(
            select(Run.id, Run.pid).where(
                Run.status == "running", Run.host == host_name(), Run.pid.is_not(None)
            )
        ).all()
        vanished = [run_id for run_id, pid in running if pid is not None and not _alive(pid)]
        if vanished:
            session.execute(
                update(Run)
                .where(Run.id.in_(vanished), Run.status == "running")
                .values(
                    status="failed",
                    finished_at=func.now(),
                    error="process vanished: killed before it could record its end (found by a "
                    "later job on the same host)",
                )
            )
    return vanished


def _alive(pid: int) -> bool:
    """Whether a process of that id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _error_text(exc: BaseException) -> str:
    """The exception line first (what users read), then the innermost frames (what we debug)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    frames = traceback.format_exception(exc)
    return f"{type(exc).__name__}: {exc}\n" + "".join(frames[-6:])


def recent_runs(
    db: Database, kind: str | None = None, status: str | None = None, limit: int = 20
) -> list[Run]:
    """The newest runs first, optionally of one kind or status."""
    query = select(Run).order_by(Run.id.desc()).limit(limit)
    if kind:
        query = query.where(Run.kind == kind)
    if status:
        query = query.where(Run.status == status)
    with db.session() as session:
        found = list(session.scalars(query))
        session.expunge_all()
    return found


def find_run(db: Database, run_id: int) -> Run | None:
    """One run with everything it recorded, detached from its session."""
    with db.session() as session:
        found = session.get(Run, run_id)
        session.expunge_all()
    return found
