"""`crystaldb runs [ID]`: the recent jobs and how they ended, or one job in full."""

from __future__ import annotations

import json

import typer
from rich.json import JSON
from rich.table import Table

from crystaldb.cli.common import console, current_database, default_of
from crystaldb.core.errors import CrystaldbError
from crystaldb.schema.runs import Run, find_run, recent_runs

COLOURS = {"succeeded": "green", "failed": "red"}  # running: yellow


def runs(
    run_id: int | None = typer.Argument(
        None, metavar="[ID]", help="Show this run in full: parameters, results, software."
    ),
    kind: str | None = typer.Option(None, "--kind", help="Only this kind (ingest, ...)."),
    status_filter: str | None = typer.Option(
        None, "--status", help="Only runs with this status: running, succeeded, failed."
    ),
    limit: int = typer.Option(
        default_of(recent_runs, "limit"), "--limit", min=1, help="How many, newest first."
    ),
) -> None:
    """Recent jobs: what ran, where, for how long, and how it ended; with ID, all of one."""
    db = current_database()
    if run_id is not None:
        found = find_run(db, run_id)
        if found is None:
            raise CrystaldbError(f"run {run_id}: no such run; `crystaldb runs` lists them")
        _show(found)
        return
    table = Table("id", "kind", "status", "host", "started", "seconds", "error")
    for run in recent_runs(db, kind=kind, status=status_filter, limit=limit):
        table.add_row(
            str(run.id),
            run.kind,
            _status(run),
            f"{run.host}:{run.pid}" if run.pid else run.host,
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            _seconds(run),
            (run.error or "").splitlines()[0][:80] if run.error else "",
        )
    console.print(table)


def _status(run: Run) -> str:
    """The status in its colour."""
    colour = COLOURS.get(run.status, "yellow")
    return f"[{colour}]{run.status}[/{colour}]"


def _seconds(run: Run) -> str:
    """Wall time of a finished run; '-' while it runs."""
    if run.finished_at is None:
        return "-"
    return f"{(run.finished_at - run.started_at).total_seconds():.1f}"


def _show(run: Run) -> None:
    """One run as an operator reads it: the summary, then what it was given and what it made."""
    summary = Table.grid(padding=(0, 2))
    rows = {
        "run": f"{run.id} ({run.kind})",
        "status": _status(run),
        "host": f"{run.host}:{run.pid}" if run.pid else run.host,
        "device": run.device,
        "started": f"{run.started_at:%Y-%m-%d %H:%M:%S %Z}",
        "seconds": _seconds(run),
    }
    for key, value in rows.items():
        summary.add_row(f"[bold]{key}[/bold]", value)
    console.print(summary)
    for title, record in (
        ("parameters", run.parameters),
        ("results", run.results),
        ("software", run.software),
    ):
        console.print(f"[bold]{title}[/bold]")
        console.print(JSON(json.dumps(record, default=str)))
    if run.error:
        console.print("[bold]error[/bold]")
        console.print(run.error, markup=False, highlight=False)
