"""Which errors reach API clients verbatim, and which are masked as internal; how a user's
value is echoed in an error (truncated: a 10 MB argument must not come back whole)."""

from __future__ import annotations

from typing import Any, ClassVar

from graphql import GraphQLError

from crystaldb.core.errors import CrystaldbError
from crystaldb.query.ast import FilterError

MASKED_MESSAGE = "Internal server error; the server log has the details."
ECHO_CHARACTERS = 60  # of a user's value quoted back in an error message


class ApiError(CrystaldbError):
    """A request the user can fix: the message says what is wrong and what to do."""


class CostError(ApiError):
    """The request asks for more work than the cost limit allows."""

    extensions: ClassVar[dict[str, Any]] = {"code": "QUERY_TOO_COSTLY"}


def shorten(value: object, limit: int = ECHO_CHARACTERS) -> str:
    """A value as quoted in an error: its repr, cut to `limit` characters with its length."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    cut = text[:limit]
    return f"{cut!r}... ({len(text):,} characters)" if isinstance(value, str) else f"{cut}..."


def should_mask(error: GraphQLError) -> bool:
    """Mask everything except GraphQL's own errors and the errors written for API users.

    Other CrystaldbErrors stay masked too: DatabaseUnavailable, say, names the server.
    """
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False  # syntax, validation, depth limit, input coercion
    return not isinstance(original, ApiError | FilterError)
