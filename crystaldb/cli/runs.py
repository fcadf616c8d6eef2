"""`crystaldb runs`: the recent jobs and how they ended."""

from __future__ import annotations

import typer
from rich.table import Table

from crystaldb.cli.common import console, current_database, default_of
from crystaldb.schema.runs import recent_runs


def runs(
    kind: str | None = typer.Option(None, "--kind", help="Only this kind (ingest, ...)."),
    status_filter: str | None = typer.Option(
        None, "--status", help="Only runs with this status: running, succeeded, failed."
    ),
    limit: int = typer.Option(
        default_of(recent_runs, "limit"), "--limit", min=1, help="How many, newest first."
    ),
) -> None:
    """Recent jobs: what ran, where, for how long, and how it ended."""
    table = Table("id", "kind", "status", "host", "started", "seconds", "error")
    for run in recent_runs(current_database(), kind=kind, status=status_filter, limit=limit):
        seconds = (
            f"{(run.finished_at - run.started_at).total_seconds():.1f}" if run.finished_at else "-"
        )
        colour = {"succeeded": "green", "failed": "red"}.get(run.status, "yellow")
        table.add_row(
            str(run.id),
            run.kind,
            f"[{colour}]{run.status}[/{colour}]",
            f"{run.host}:{run.pid}" if run.pid else run.host,
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            seconds,
            (run.error or "").splitlines()[0][:80] if run.error else "",
        )
    console.print(table)
