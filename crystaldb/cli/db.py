"""`crystaldb db`: migrate, inspect and locate the database schema."""

from __future__ import annotations

import typer

from crystaldb.cli.common import console, current_database, database, default_of
from crystaldb.platform.settings import load_settings
from crystaldb.schema import migrate

app = typer.Typer(help="The database schema: migrate, inspect, locate.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument(
        default_of(migrate.upgrade, "revision"), help="Target revision (default: the newest)."
    ),
) -> None:
    """Apply schema migrations (safe to run again: it does nothing when up to date)."""
    db = database(load_settings())
    before = migrate.status(db)
    after = migrate.upgrade(db, revision)
    if before.current == after.current:
        console.print(f"schema already at {after.current} on {db.safe_url}")
    else:
        console.print(
            f"schema upgraded {before.current or 'empty'} -> {after.current} on {db.safe_url}"
        )


@app.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="Target revision; 'base' removes every table."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before dropping data."),
) -> None:
    """Undo schema migrations down to REVISION (drops the data of the tables it removes)."""
    db = database(load_settings())
    if not yes:
        typer.confirm(f"Downgrade {db.safe_url} to {revision}? Data may be lost", abort=True)
    state = migrate.downgrade(db, revision)
    console.print(f"schema now at {state.current or 'base (empty)'} on {db.safe_url}")


@app.command("status")
def db_status(
    check: bool = typer.Option(False, "--check", help="Exit with status 1 if migrations wait."),
) -> None:
    """Show the schema revision of the database against the code's newest."""
    db = database(load_settings())
    state = migrate.status(db)
    console.print(f"database  {db.safe_url}", soft_wrap=True)
    console.print(f"current   {state.current or 'empty (no migrations applied)'}")
    console.print(f"head      {state.head}")
    if state.up_to_date:
        console.print("[green]up to date[/green]")
    else:
        console.print(f"[yellow]pending   {', '.join(state.pending)}[/yellow]")
        console.print("run `crystaldb db upgrade` to apply them")
        if check:
            raise typer.Exit(1)


@app.command("url")
def db_url(
    show_password: bool = typer.Option(False, "--show-password", help="Print it unmasked."),
) -> None:
    """Print the database URL in use (starting the embedded server if that is the default)."""
    db = database(load_settings())
    console.print(db.url.render_as_string(hide_password=not show_password), soft_wrap=True)


@app.command("revision")
def db_revision(
    message: str = typer.Option(..., "-m", "--message", help="What the migration does."),
) -> None:
    """For developers: write a new migration from the difference between models and database."""
    db = current_database()
    path = migrate.new_revision(db, message)
    console.print(f"wrote {path}: review it, give it a working downgrade, and test the round trip")
