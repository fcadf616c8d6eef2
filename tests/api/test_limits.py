"""The query cost limit and the per-request timeout, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from graphql import get_introspection_query, parse

from crystaldb.api.app import create_app
from crystaldb.api.budget import NOMINAL_EDGES
from crystaldb.api.limits import estimate_cost
from crystaldb.api.schema import schema
from tests.api.conftest import Api, serving
from tests.api.test_app import counted

SITES = "{ structures(first: 1000) { edges { node { sites { species fractional cartesian } } } } }"
CIFS = """
query($n: Int!) { a: structures(first: $n) { ...cifs } b: structures(first: $n) { ...cifs } }
fragment cifs on StructureConnection { edges { node { id cif } } }
"""


@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        ("{ structures(first: 100) { edges { node { id labels { value } } } } }", {}, 1302),
        ("{ structures { totalCount pageInfo { hasNextPage } } }", {}, 4),
        ("{ __typename structures(first: 2) { __typename edges { node { id } } } }", {}, 8),
        ("query($n: Int!) { runs(first: $n) { id } }", {"n": 30}, 31),
        ("query($n: Int = 7) { runs(first: $n) { id } }", {}, 8),
        ("{ runs(first: 5000) { id } }", {}, 1001),  # counted at the largest page served
        (SITES, {}, 1 + 1 + 1000 * (1 + 1 + 100 * 3)),
        (CIFS, {"n": 10}, 2 * (1 + 1 + 10 * (1 + 1 + 100))),
        ("{ models { name run { id } release { name } } }", {}, 1 + 100 * 5),
        (
            '{ structure(id: "1") { quotientGraph(recipe: "radius:3.0") { edgeSrc '
            "recipe { name } } predictions { model { metrics } } } }",
            {},
            1 + (1 + NOMINAL_EDGES + 1 + 1) + 1 + 10 * (1 + 1),
        ),
    ],
)
def test_estimated_cost(query: str, variables: dict[str, int], cost: int) -> None:
    """Each field once per object; lists count their first, else a nominal size."""
    assert estimate_cost(schema._schema, parse(query), None, variables) == cost


def test_a_costly_query_is_refused_before_it_runs(api: Api) -> None:
    """Over the limit: one clear error, and not one SQL statement."""
    with counted(api) as statements:
        body = api.post(SITES)
    assert statements == []
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["message"].startswith(
        "query cost 302,002 is over the limit of 100,000 (CRYSTALDB_API_MAX_COST): ask for "
        "fewer structures per page (first)"
    )
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": 302002, "maxCost": 100000}


def test_first_from_variables_and_fragments_count(api: Api) -> None:
    """The same aliased fragment query passes at 3 per page and is refused at 1000."""
    small = api.data(CIFS, n=3)
    assert len(small["a"]["edges"]) == len(small["b"]["edges"]) == 3
    body = api.post(CIFS, n=1000)
    assert body["data"] is None
    assert body["errors"][0]["message"].startswith("query cost 204,004 is over the limit")


def test_introspection_is_not_refused(api: Api) -> None:
    """GraphiQL's schema query is free."""
    data = api.data(get_introspection_query())
    assert data["__schema"]["queryType"]["name"] == "Query"


@pytest.fixture
def limited(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A second server on the same database, its limits set through the environment."""
    monkeypatch.setenv("CRYSTALDB_API_TIMEOUT", "0.2")
    monkeypatch.setenv("CRYSTALDB_API_MAX_COST", "10000")
    with serving(create_app(api.db)) as url:
        yield url


def _post(url: str, query: str) -> tuple[dict[str, Any], float]:
    """The decoded answer and how long it took."""
    start = time.monotonic()
    response = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30)
    return response.json(), time.monotonic() - start


def _waiting(conninfo: str) -> list[str]:
    """Statements of crystaldb's connections still running in PostgreSQL."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'crystaldb' "
            "AND state = 'active' AND datname = current_database()"
        ).fetchall()
    return [row[0] for row in rows]


def test_settings_set_the_limits(api: Api, limited: str) -> None:
    """CRYSTALDB_API_MAX_COST lowers the limit for the served app."""
    query = "{ structures(first: 200) { edges { node { sites { species } } } } }"
    assert "errors" not in api.post(query)
    body, _ = _post(limited, query)
    assert body["errors"][0]["message"].startswith("query cost 20,402 is over the limit of 10,000")


def test_a_slow_request_is_cancelled_with_its_statement(api: Api, limited: str) -> None:
    """A request stuck behind a lock ends at the timeout, and PostgreSQL stops its statement."""
    conninfo = api.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    query = "{ structures(first: 5) { totalCount edges { node { id } } } }"
    with psycopg.connect(conninfo) as locker:
        locker.execute("LOCK TABLE structures IN ACCESS EXCLUSIVE MODE")
        body, elapsed = _post(limited, query)
        assert body["data"] is None
        (error,) = body["errors"]
        assert error["message"] == (
            "the request ran longer than 0.2 s and was cancelled (CRYSTALDB_API_TIMEOUT): ask "
            "for fewer structures per page (first), fewer nested fields or a narrower filter"
        )
        assert error["extensions"] == {"code": "TIMEOUT", "timeoutSeconds": 0.2}
        assert 0.2 <= elapsed < 3
        deadline = time.monotonic() + 5
        while (left := _waiting(conninfo)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == [], "the API's statement still waits for the lock"
        locker.rollback()
    body, _ = _post(limited, query)
    assert "errors" not in body, body  # the pool's connections are fine afterwards


QUICK = 0.1  # seconds: the timeout of the `quick` server


@pytest.fixture
def quick(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A server on the same database that cuts requests after QUICK seconds."""
    monkeypatch.setenv("CRYSTALDB_API_TIMEOUT", str(QUICK))
    with serving(create_app(api.db)) as url:
        yield url


def test_a_long_rendering_is_cut_at_the_timeout(api: Api, quick: str) -> None:
    """Every stored structure's CIF takes several times the limit to write; the answer comes
    at the limit (the writers run in worker threads, so the event loop is free to end the
    request)."""
    query = "{ structures(first: 500) { edges { node { id cif } } } }"
    start = time.monotonic()
    assert len(api.data(query)["structures"]["edges"]) > 100
    full = time.monotonic() - start
    body, elapsed = _post(quick, query)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"
    assert full > 3 * QUICK and elapsed < min(full, 1.5), (full, elapsed)
