"""The ASGI app around the schema: /health, GraphiQL, batching of nested lists, the SDL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from strawberry.dataloader import DataLoader

from crystaldb.api import loaders
from crystaldb.api.app import create_app
from crystaldb.api.schema import build_schema
from crystaldb.api.sdl import REGENERATE, SDL_PATH, sdl
from crystaldb.platform.database import connect
from crystaldb.platform.settings import load_settings
from tests.api.conftest import Api
from tests.api.derived import MODELS

NESTED = """
query($first: Int!) {
  structures(first: $first) {
    totalCount
    edges { node { id labels { value calculation { functional } } externalIds { database id }
                   releases { name } predictions { value model { name } run { kind } }
                   quotientGraph(recipe: "radius:3.0") { numEdges } } }
  }
}
"""


def test_health(api: Api) -> None:
    """GET /health answers after a SELECT 1."""
    response = api.client.get(f"{api.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_is_503_without_details_when_the_database_is_down(tmp_path: Path) -> None:
    """A server that cannot reach PostgreSQL says so, naming neither host nor error."""
    settings = load_settings(
        database_url="postgresql://postgres@127.0.0.1:1/crystaldb", data_dir=tmp_path
    )
    transport = httpx.ASGITransport(create_app(connect(settings, check=False), settings))

    async def health() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/health")

    response = asyncio.run(health())
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unavailable"}


def test_graphiql_is_served(api: Api) -> None:
    """A browser asking /graphql for HTML gets GraphiQL."""
    response = api.client.get(f"{api.url}/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


@contextmanager
def counted(api: Api) -> Iterator[list[str]]:
    """Every SQL statement the server's engine runs inside the block."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(api.db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(api.db.engine, "before_cursor_execute", record)


def test_nested_lists_cost_one_statement_each_per_page(api: Api) -> None:
    """50 structures with labels, ids, releases, predictions (with their model and run) and
    quotient graphs: page + count + one per nested list or object loaded."""
    with counted(api) as small:
        api.data(NESTED, first=5)
    with counted(api) as large:
        page = api.data(NESTED, first=50)
    nodes = [edge["node"] for edge in page["structures"]["edges"]]
    assert len(nodes) == 50
    for node in nodes:  # every nested list is the stored one
        row = api.rows[int(node["id"])]
        labels = sorted((x["calculation"]["functional"], x["value"]) for x in node["labels"])
        assert labels == sorted((f, v) for f, values in row.gaps.items() for v in values)
        assert {(x["database"], x["id"]) for x in node["externalIds"]} == row.ids
        assert {x["name"] for x in node["releases"]} == {r.split(":")[0] for r in row.releases}
        predicted = sorted((p["model"]["name"], p["value"]) for p in node["predictions"])
        assert predicted == sorted((m, v) for m, values in row.predictions.items() for v in values)
        assert (node["quotientGraph"] is not None) == (int(node["id"]) in api.graph_ids)
    # the page exercises every loader: labels, predictions of both models, graphs
    assert sum(bool(node["labels"]) for node in nodes) > 20
    assert {p["model"]["name"] for node in nodes for p in node["predictions"]} == set(MODELS)
    assert any(node["quotientGraph"] is not None for node in nodes)
    # page, count, labels, external ids, releases, predictions, models, runs, graphs
    assert len(large) == len(small) == 9, large


LISTS = """
fragment lists on Structure {
  id
  labels { property value unit calculation { functional code codeVersion parameters reference } }
  externalIds { database id }
  releases { name version split }
  predictions { property value uncertainty }
}
"""
PAGE_LISTS = (
    "query($first: Int!) { structures(first: $first) { ... on StructureConnection { edges {"
    " node { ...lists } } } } }" + LISTS
)
ONE_LISTS = "query($id: ID!) { structure(id: $id) { ...lists } }" + LISTS


def test_a_page_brings_its_nodes_lists_along(api: Api) -> None:
    """Lists selected on a page's nodes (through fragments too) come with the page, one
    statement each, and are what the per-structure loaders give."""
    with counted(api) as statements:
        edges = api.data(PAGE_LISTS, first=40)["structures"]["edges"]
    assert len(statements) == 1 + 4, statements
    nodes = [edge["node"] for edge in edges]
    for name in ("labels", "externalIds", "releases", "predictions"):
        assert any(node[name] for node in nodes), name
    for node in nodes[::5]:
        assert api.data(ONE_LISTS, id=node["id"])["structure"] == node


def test_page_lists_do_not_wait_for_the_loaders(api: Api) -> None:
    """The page's nodes resolve their lists from what came with the page, not per node."""
    context = loaders.Context(api.db)

    async def refuse(keys: Sequence[int]) -> list[Any]:
        raise AssertionError(f"loaded per node: {list(keys)[:3]}")

    for name in loaders.NESTED:
        setattr(context, name, DataLoader(load_fn=refuse))
    run = build_schema().execute(PAGE_LISTS, {"first": 40}, context_value=context)
    result = asyncio.run(run)
    assert result.errors is None, result.errors
    assert result.data is not None and len(result.data["structures"]["edges"]) == 40


def test_committed_sdl_matches_the_code() -> None:
    """Clients and reviewers read schema.graphql; it must be what the code serves."""
    committed = SDL_PATH.read_text(encoding="utf-8") if SDL_PATH.exists() else ""
    assert committed == sdl(), f"{SDL_PATH.name} is out of date: run `{REGENERATE}`"
