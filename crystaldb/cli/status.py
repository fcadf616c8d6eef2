"""`crystaldb status`: the platform's state as a table or as JSON."""

from __future__ import annotations

import json
from typing import Any

import typer
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
    if cluster["kind"] == "local":
        table.add_row(
            "cluster",
            f"local: {cluster['workers']} worker processes x {cluster['threads_per_worker']} "
            f"thread ({cluster['state']})",
        )
    else:
        detail = f"{cluster.get('workers', '?')} workers" if "workers" in cluster else ""
        table.add_row("cluster", f"{cluster['address']}: {cluster['state']} {detail}".strip())
    table.add_row("store", f"{store['url']} ({store['entries']} entries)")
    if report["counts"] is not None:
        table.add_row("counts", "\n".join(f"{k:<16}{v:>10,}" for k, v in report["counts"].items()))
    return table


def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the database, schema, cluster, artifact store and row counts."""
    settings = load_settings()
    report = collect_status(settings, open_database(settings))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(render_status(report))
