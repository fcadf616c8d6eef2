"""`crystaldb serve`: the GraphQL API over HTTP."""

from __future__ import annotations

import typer

from crystaldb.api.server import describe, usable_cores
from crystaldb.api.server import serve as run_server
from crystaldb.cli.common import console, current_database, default_of


def serve(
    host: str = typer.Option(
        default_of(run_server, "host"), "--host", help="Interface to listen on."
    ),
    port: int = typer.Option(
        default_of(run_server, "port"), "--port", min=1, max=65535, help="TCP port."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Worker processes on the port, each with its own connection pool "
        "(default: one per core this process may use; 1: serve in this process).",
    ),
) -> None:
    """Serve the GraphQL API (GraphiQL in the browser at /graphql, health at /health)."""
    count = workers or usable_cores()
    db = current_database()
    console.print(
        f"GraphQL API on http://{host}:{port}/graphql, {describe(count)} (Ctrl-C stops it)"
    )
    run_server(db, host=host, port=port, workers=count)
