"""`crystaldb db`: migrate, inspect, locate, open, back up and restore the database."""

from __future__ import annotations

import subprocess
from contextlib import nullcontext
from pathlib import Path

import typer

from crystaldb.cli.common import (
    console,
    current_database,
    database,
    default_of,
    err_console,
    stage_progress,
)
from crystaldb.platform.embedded import running_embedded_url, stop_embedded
from crystaldb.platform.pgtools import find_program, libpq_args, libpq_url, server_major
from crystaldb.platform.settings import load_settings
from crystaldb.schema import migrate
from crystaldb.workflows import backup

app = typer.Typer(
    help="The database: migrate, inspect, locate, open in psql, dump and restore.",
    no_args_is_help=True,
)


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
    libpq: bool = typer.Option(
        False, "--libpq", help="The form psql, pg_dump and libpq take (postgresql://...)."
    ),
    show_password: bool = typer.Option(False, "--show-password", help="Print it unmasked."),
) -> None:
    """Print the database URL in use (SQLAlchemy's form unless --libpq).

    The embedded server runs only while a crystaldb command uses it: its URL is printed
    when one runs it now (`crystaldb serve`, say), else this says so and exits with 1.
    """
    settings = load_settings()
    url = settings.database
    if url is None:
        url = running_embedded_url(settings.data_dir)
        if url is None:
            err_console.print(
                f"the embedded PostgreSQL under {settings.data_dir / 'pgdata'} is not running:"
                " it runs only while a crystaldb command uses it. `crystaldb db psql` opens psql"
                " on it; or keep `crystaldb serve` running and ask again.",
                soft_wrap=True,
                highlight=False,
            )
            raise typer.Exit(1)
    shown = (
        libpq_url(url, show_password)
        if libpq
        else url.render_as_string(hide_password=not show_password)
    )
    print(shown)


def db_psql(ctx: typer.Context) -> None:
    """Open psql on the database in use (the embedded one is started for the session).

    Arguments after the command go to psql: `crystaldb db psql -c 'SELECT count(*) FROM
    structures'`. With the embedded server, it stops when psql exits (unless another
    crystaldb command still uses it).
    """
    settings = load_settings()
    db = database(settings)
    try:
        program = find_program("psql", server_major(db), settings.pg_bindir, exact=False)
        conninfo, env = libpq_args(db.url)
        db.dispose()
        code = subprocess.call([str(program.path), conninfo, *ctx.args], env=env)
    finally:
        if db.embedded:
            stop_embedded(settings.data_dir)
    raise typer.Exit(code)


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
app.command("psql", context_settings=_PASS_THROUGH)(db_psql)
app.command("shell", context_settings=_PASS_THROUGH, help="The same as `crystaldb db psql`.")(
    db_psql
)


@app.command("dump")
def db_dump(
    file: Path = typer.Argument(..., help="The dump file to write (a tar archive)."),
    with_store: bool = typer.Option(
        False, "--with-store", help="Also put every file of the artifact store in it."
    ),
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
) -> None:
    """Back up the database (pg_dump, custom format) with the artifact store's manifest."""
    if file.exists() and not force:
        raise typer.BadParameter(f"{file} exists (--force replaces it)", param_hint="FILE")
    if not file.parent.is_dir():
        raise typer.BadParameter(f"{file.parent} is not a folder", param_hint="FILE")
    settings = load_settings()
    db = database(settings)
    with stage_progress() if with_store else nullcontext(None) as progress:
        summary = backup.dump(db, settings, file, with_store=with_store, on_progress=progress)
    console.print(
        f"dumped {db.safe_url} (schema {summary.schema or 'empty'}) to {summary.path}"
        f" ({summary.bytes / 2**20:.1f} MiB) with {summary.pg_dump}",
        soft_wrap=True,
    )
    stored = f"{summary.store_files} store files included" if with_store else "store not included"
    console.print(f"manifest: {summary.artifacts} artifacts; {stored}")
    _warn_missing(summary.missing, "missing from the store when dumped")


@app.command("restore")
def db_restore(
    file: Path = typer.Argument(..., help="A file written by `crystaldb db dump`."),
) -> None:
    """Restore a dump into the database in use, which must be new and empty.

    Store files in the dump go into the configured store (CRYSTALDB_STORE_URL), and the
    rows are pointed at them when the store is not where it was when dumped.
    """
    manifest = backup.read_manifest(file)  # a missing or damaged file is named first
    settings = load_settings()
    db = database(settings)
    backup.check_empty(db)
    with stage_progress() if manifest["store"]["files"] else nullcontext(None) as progress:
        summary = backup.restore(db, settings, file, on_progress=progress)
    console.print(f"restored {file} into {db.safe_url} with {summary.pg_restore}", soft_wrap=True)
    if summary.store_files:
        moved = (
            f"; {summary.rewritten} artifact URIs moved from {summary.store_from}"
            if summary.rewritten
            else ""
        )
        console.print(
            f"store: {summary.store_files - len(summary.skipped)} files put in"
            f" {summary.store_to}, {len(summary.skipped)} already there{moved}",
            soft_wrap=True,
        )
    console.print(
        f"manifest: {summary.artifacts} artifacts, {summary.artifacts - len(summary.missing)}"
        " reachable"
    )
    _warn_missing(summary.missing, "not reachable")
    if summary.schema != summary.schema_head:
        console.print(
            f"[yellow]schema {summary.schema}, the code needs {summary.schema_head}: run"
            " `crystaldb db upgrade`[/yellow]"
        )


def _warn_missing(uris: list[str], what: str) -> None:
    """Name the first few artifacts that are not where their rows say."""
    if uris:
        shown = ", ".join(uris[:3]) + (", ..." if len(uris) > 3 else "")
        console.print(f"[yellow]{len(uris)} artifacts {what}: {shown}[/yellow]", soft_wrap=True)


@app.command("revision")
def db_revision(
    message: str = typer.Option(..., "-m", "--message", help="What the migration does."),
) -> None:
    """For developers: write a new migration from the difference between models and database."""
    db = current_database()
    path = migrate.new_revision(db, message)
    console.print(f"wrote {path}: review it, give it a working downgrade, and test the round trip")
