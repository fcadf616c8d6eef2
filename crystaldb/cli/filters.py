"""`crystaldb filters`: the filter language's reference, generated from its field table."""

from __future__ import annotations

import typer

from crystaldb.query.fields import describe_fields


def filters() -> None:
    """The fields --where and the API's filters accept: meaning, operators, an example each."""
    typer.echo(describe_fields())
