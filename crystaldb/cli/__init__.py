"""The `crystaldb` command: thin wrappers that turn settings and arguments into library calls.

Each command group lives in its own module; this one builds the app, configures logging and
turns the library's errors into one line. Registration order is the order `--help` lists.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.logging import RichHandler

from crystaldb.cli import (
    compare,
    db,
    demo,
    deploy,
    filters,
    graphs,
    ingest,
    kernel,
    label,
    networks,
    predict,
    release,
    reproduce,
    runs,
    serve,
    status,
    tokens,
    train,
)
from crystaldb.cli.common import err_console
from crystaldb.core.errors import CrystaldbError
from crystaldb.platform.settings import load_settings

app = typer.Typer(
    help="crystaldb: crystal structures and their electronic properties, in PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."
    ),
) -> None:
    """Configure logging once for every subcommand."""
    level = {0: None, 1: logging.INFO}.get(verbose, logging.DEBUG) or load_settings().log_level
    handler = RichHandler(console=err_console, show_path=False)
    handler.setLevel(level)  # libraries (Dask) set their own logger levels: filter here too
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler])


app.command("ingest")(ingest.ingest)
app.command("predict")(predict.predict_command)
app.command("models")(predict.models_command)
app.command("runs")(runs.runs)
app.command("filters")(filters.filters)
app.command("serve")(serve.serve)
app.command("status")(status.status)
app.command("demo")(demo.demo)
app.command("compare")(compare.compare)
networks.register(train.app)
app.add_typer(db.app, name="db")
app.add_typer(deploy.app, name="deploy")
app.add_typer(release.app, name="release")
app.add_typer(tokens.app, name="token")
app.add_typer(kernel.app, name="kernel")
app.add_typer(train.app, name="train")
app.add_typer(reproduce.app, name="reproduce")
app.add_typer(graphs.app, name="graphs")
app.add_typer(label.app, name="label")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except CrystaldbError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        sys.exit(2)
