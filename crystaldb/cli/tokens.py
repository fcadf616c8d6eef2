"""`crystaldb token`: the API tokens that mutations need."""

from __future__ import annotations

import typer
from rich.table import Table

from crystaldb.cli.common import console, current_database, err_console
from crystaldb.schema.tokens import create_token, list_tokens, revoke_token

app = typer.Typer(
    help="API tokens for mutations (queries need none): create, list, revoke.",
    no_args_is_help=True,
)


@app.command("create")
def token_create(
    name: str = typer.Argument(..., help="A name for people and logs, e.g. alice-laptop."),
) -> None:
    """Create an API token and print it, this once: the database keeps only its sha256."""
    token = create_token(current_database(), name)
    print(token)  # alone on stdout, so TOKEN=$(crystaldb token create NAME) works
    err_console.print(
        f"token {name} created: it is shown only now, so keep it; send it as the header "
        f"`Authorization: Bearer <token>`; `crystaldb token revoke {name}` ends it",
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
def token_list() -> None:
    """Every token: name, created, last used, and whether it was revoked (never the token)."""
    table = Table("name", "created", "last used", "status")
    for token in list_tokens(current_database()):
        table.add_row(
            token.name,
            f"{token.created_at:%Y-%m-%d %H:%M:%S}",
            f"{token.last_used_at:%Y-%m-%d %H:%M:%S}" if token.last_used_at else "never",
            f"[red]revoked {token.revoked_at:%Y-%m-%d %H:%M:%S}[/red]"
            if token.revoked_at
            else "[green]live[/green]",
        )
    console.print(table)


@app.command("revoke")
def token_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: requests sending it are refused from now on."""
    token, newly = revoke_token(current_database(), name)
    assert token.revoked_at is not None
    when = f"{token.revoked_at:%Y-%m-%d %H:%M:%S}"
    console.print(f"token {name} {'revoked at' if newly else 'was already revoked at'} {when}")
