"""`crystaldb status`: the platform's state as a table or as JSON."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from crystaldb.cli.common import console
from crystaldb.cli.common import database as open_database
from crystaldb.platform.settings import load_settings
from crystaldb.workflows.status import collect_status


def render_status(report: dict[str, Any]) -> Table:
    """A two-column table a person reads at a glance."""
    database, cluster, store = report["database"], report["cluster"], report["store"]
    table = Table(title=f"crystaldb {report['version']}", show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    kind = "embedded PostgreSQL" if database["embedded"] else "PostgreSQL"
    table.add_row("database", f"{kind} {database['server_version']}\n{database['url']}")
    if database["up_to_date"]:
        schema = f"{database['schema']} [green](up to date)[/green]"
    else:
        schema = (
            f"{database['schema'] or 'empty'} [yellow](code needs {database['schema_head']}: "
            "run `crystaldb db upgrade`)[/yellow]"
        )
    table.add_row("schema", schema)
    table.add_row("cluster", _cluster_line(cluster))
    for worker in cluster.get("worker_details", []):
        table.add_row(f"  {worker['name']}", _worker_lines(worker))
    table.add_row("store", f"{store['url']} ({store['entries']} entries)")
    if report["counts"] is not None:
        table.add_row("counts", "\n".join(f"{k:<16}{v:>10,}" for k, v in report["counts"].items()))
    return table


def _cluster_line(cluster: dict[str, Any]) -> str:
    """The cluster in one line: its kind, scheduler and workers, or why it is out of reach."""
    if cluster["kind"] == "slurm":
        return (
            f"SLURM via dask-jobqueue: {cluster['jobs']} job(s) x {cluster['cores']} cores,"
            f" {cluster['memory']}, {cluster['walltime']} on partition"
            f" {cluster['queue'] or '(default)'} ({cluster['state']})"
        )
    if "worker_details" not in cluster:
        if cluster["kind"] == "local":
            return (
                f"local: {cluster['workers']} worker processes x "
                f"{cluster['threads_per_worker']} thread ({cluster['state']})"
            )
        return f"{cluster['address']}: {cluster['state']}"
    where = "local cluster" if cluster["kind"] == "local" else "scheduler"
    gpus = f", {cluster['gpu_workers']} with a GPU" if cluster["gpu_workers"] else ""
    return (
        f"{where} {cluster['address']}: {cluster['workers']} workers, {cluster['threads']}"
        f" threads{gpus} ({cluster['state']})"
    )


def _worker_lines(worker: dict[str, Any]) -> str:
    """A worker's size and resources, then whether it reached the store and the database."""
    memory = worker["memory_limit"]
    threads = f"{worker['threads']} thread{'s' if worker['threads'] != 1 else ''}"
    size = f"{threads}, {memory / 2**30:.1f} GiB" if memory else f"{threads}, no memory limit"
    resources = " ".join(f"{k}={v:g}" for k, v in sorted(worker["resources"].items()))
    lines = [f"{worker['address']}: {size}" + (f", resources {resources}" if resources else "")]
    for what in ("store", "database"):
        answer = str(worker.get(what, "not checked"))
        colour = "green" if answer.startswith("ok") else "red"
        lines.append(f"{what}: [{colour}]{escape(answer)}[/{colour}]")
    return "\n".join(lines)


def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    probe: bool = typer.Option(
        False,
        "--probe",
        help="Also start the local cluster (when no scheduler is set) and check its workers;"
        " a scheduler's workers are always checked.",
    ),
) -> None:
    """Show the database, schema, cluster (scheduler, workers, their reach), store, row counts."""
    settings = load_settings()
    report = collect_status(settings, open_database(settings), probe=probe)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(render_status(report))
