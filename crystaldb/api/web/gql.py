"""One GraphQL operation run in-process for a page: the pages reuse the API's filters,
paging, limits and error messages instead of a second query path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry import Schema

from crystaldb.api.loaders import Context
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings


@dataclass(frozen=True)
class Answer:
    """The data of an operation, or the messages of its errors (shown on the page)."""

    data: dict[str, Any] | None
    errors: list[str]


async def execute(
    schema: Schema,
    db: Database,
    settings: Settings | None,
    query: str,
    variables: dict[str, Any],
    bearer: str | None = None,
) -> Answer:
    """Run an operation as a client would (`bearer`: a form's token): same guards and masking."""
    context = Context(db, bearer=bearer or None, settings=settings)
    result = await schema.execute(query, variable_values=variables, context_value=context)
    errors = [error.message for error in result.errors or []]
    return Answer(result.data, errors)
