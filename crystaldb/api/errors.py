"""Which errors reach API clients verbatim, and which are masked as internal."""

from __future__ import annotations

from graphql import GraphQLError

from crystaldb.platform.errors import CrystaldbError
from crystaldb.schema.filters import FilterError

MASKED_MESSAGE = "Internal server error; the server log has the details."


class ApiError(CrystaldbError):
    """A request the user can fix: the message says what is wrong and what to do."""


def should_mask(error: GraphQLError) -> bool:
    """Mask everything except GraphQL's own errors and the errors written for API users.

    Other CrystaldbErrors stay masked too: DatabaseUnavailable, say, names the server.
    """
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False  # syntax, validation, depth limit, input coercion
    return not isinstance(original, ApiError | FilterError)
