"""Wrong input is a GraphQL error a user can act on, never a stack trace."""

from __future__ import annotations

from typing import Any

import pytest

from crystaldb.api import render
from crystaldb.api.errors import MASKED_MESSAGE
from crystaldb.api.schema import MAX_DEPTH, build_schema
from tests.api.conftest import Api
from tests.api.test_structures import IDS


def _message(api: Api, query: str, **variables: Any) -> str:
    """The single error message of a failing request, checked free of internals."""
    body = api.post(query, **variables)
    assert body.get("data") in (None, {}) or body["data"].get("structures") is None
    (error,) = body["errors"]
    text = str(body)
    for internal in ("Traceback", 'File "', "sqlalchemy", "psycopg"):
        assert internal not in text
    return str(error["message"])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"bandGap": {"gte": 3, "lte": 1}}, "filter.bandGap: gte (3.0) is greater than lte (1.0)"),
        ({"nsites": {"gte": 9, "lte": 2}}, "filter.nsites: gte (9) is greater than lte (2)"),
        ({"nsites": {}}, "filter.nsites: give gte, lte or both"),
        ({"elements": {"hasAll": ["Xx"]}}, "filter.elements.hasAll: unknown element symbol 'Xx'"),
        ({"elements": {"hasAny": ["cl"]}}, "did you mean 'Cl'?"),
        (
            {"spaceGroup": {"number": 231}},
            "filter.spaceGroup.number: space group 231 is outside 1..230",
        ),
        ({"spaceGroup": {"in": [1, 0]}}, "space group 0 is outside 1..230"),
        ({"crystalSystem": "cubical"}, 'unknown crystal system "cubical"'),
        ({"release": "nocolon"}, 'filter.release: release "nocolon"'),
        ({"and": []}, "filter.and: give at least one filter"),
        ({"or": [{}]}, "filter.or[0]: the filter is empty"),
        ({"not": {"and": [{"nsites": {"lte": 1, "gte": 2}}]}}, "filter.not.and[0].nsites: gte (2)"),
    ],
)
def test_invalid_filters(api: Api, spec: dict[str, Any], expected: str) -> None:
    """The message names the input path and says what is wrong."""
    assert expected in _message(api, IDS, f=spec)


def test_page_size_is_capped(api: Api) -> None:
    """first above 1000 (or below 1) is refused, saying the range."""
    query = "{ structures(first: 5000) { totalCount } }"
    assert "first must be between 1 and 1000, got 5000" in _message(api, query)
    assert "got 0" in _message(api, "{ structures(first: 0) { totalCount } }")


def test_bad_cursor(api: Api) -> None:
    """A cursor not from this API, or from another sort, is refused plainly."""
    assert "not a cursor from this API" in _message(
        api, '{ structures(after: "!!nope") { totalCount } }'
    )
    page = api.data("{ structures(first: 1) { pageInfo { endCursor } } }")
    cursor = page["structures"]["pageInfo"]["endCursor"]
    query = "query($c: String) { structures(sort: NSITES_ASC, after: $c) { totalCount } }"
    assert "use the same sort, ID_ASC" in _message(api, query, c=cursor)


def test_unknown_field(api: Api) -> None:
    """GraphQL's own validation errors pass through unmasked."""
    assert "Cannot query field 'nope' on type 'Query'" in _message(api, "{ nope }")


def test_depth_limit() -> None:
    """Queries deeper than the limit are refused before they run (the served limit is 10)."""
    deep = "{ structures { edges { node { labels { calculation { functional } } } } } }"
    assert build_schema(max_depth=MAX_DEPTH).execute_sync("{ __typename }").errors is None
    (error,) = build_schema(max_depth=4).execute_sync(deep).errors or []
    assert "exceeds maximum operation depth of 4" in error.message


def test_bad_id(api: Api) -> None:
    """An id that cannot be a structure's is refused, not passed to PostgreSQL."""
    query = '{ structure(id: "99999999999999999999") { id } }'
    assert "is not a structure id" in _message(api, query)


def test_internal_errors_are_masked(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception reaches the client as a generic message; the log keeps it."""

    def broken(row: Any) -> str:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(render, "to_cif", broken)
    body = api.post("{ structures(first: 2) { edges { node { id cif } } } }")
    assert body["errors"][0]["message"] == MASKED_MESSAGE
    assert "secret" not in str(body)
    assert "secret internal detail" in caplog.text
