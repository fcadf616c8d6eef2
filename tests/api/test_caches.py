"""What the server reuses across requests: parsed and validated documents, compiled filters,
and a garbage collector that leaves the startup heap alone; none of it may change answers."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
import strawberry.schema.schema as strawberry_schema

from crystaldb.api import documents
from crystaldb.api.errors import ApiError
from crystaldb.api.filters import ElementsFilter, IntRange, StructureFilter, compile_filter
from crystaldb.api.schema import build_schema
from tests.api.conftest import Api

DEEP = "{ structures { edges { node { labels { calculation { functional } } } } } }"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often documents are parsed (by the cache or by strawberry) and validated."""
    counts = {"parse": 0, "validate": 0}

    def counting(name: str, function: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return function(*args, **kwargs)

        return counted

    monkeypatch.setattr(documents, "parse", counting("parse", documents.parse))
    monkeypatch.setattr(strawberry_schema, "parse", counting("parse", strawberry_schema.parse))
    validate = counting("validate", strawberry_schema.validate_document)
    monkeypatch.setattr(strawberry_schema, "validate_document", validate)
    return counts


def test_a_query_text_is_parsed_and_validated_once(calls: dict[str, int]) -> None:
    """The same text again is served from the cache, with the same answer."""
    schema = build_schema()
    for _ in range(3):
        assert schema.execute_sync("{ __typename }").data == {"__typename": "Query"}
    assert calls == {"parse": 1, "validate": 1}


def test_the_timeout_check_parses_once_too(calls: dict[str, int]) -> None:
    """With a timeout the schema reads the operation type first, from the same cache."""
    schema = build_schema(timeout=5.0)

    async def three() -> list[Any]:
        return [(await schema.execute("{ __typename }")).data for _ in range(3)]

    assert asyncio.run(three()) == [{"__typename": "Query"}] * 3
    assert calls == {"parse": 1, "validate": 1}


def test_an_invalid_query_is_refused_every_time(calls: dict[str, int]) -> None:
    """Too deep, not valid, or not GraphQL: the same error each time, found afresh each time
    (the depth before validation, which it spares)."""
    schema = build_schema(max_depth=4)
    for _ in range(2):
        (error,) = schema.execute_sync(DEEP).errors or []
        assert "exceeds maximum operation depth of 4" in error.message
        (error,) = schema.execute_sync("{ nope }").errors or []
        assert "Cannot query field 'nope'" in error.message
        (error,) = schema.execute_sync("{ structures").errors or []
        assert error.message.startswith("Syntax Error")
    assert calls["validate"] == 2


def test_each_schema_keeps_its_own_documents(api: Api) -> None:
    """A document the served schema passed is still checked by a stricter one."""
    assert "errors" not in api.post(DEEP)
    (error,) = build_schema(max_depth=4).execute_sync(DEEP).errors or []
    assert "exceeds maximum operation depth of 4" in error.message


def test_a_filter_is_compiled_once_and_errors_every_time() -> None:
    """Equal filters share one compiled where-clause; a wrong one is refused each time."""
    first = compile_filter(StructureFilter(elements=ElementsFilter(has_all=["C", "N"])))
    again = compile_filter(StructureFilter(elements=ElementsFilter(has_all=["C", "N"])))
    other = compile_filter(StructureFilter(elements=ElementsFilter(has_all=["C", "O"])))
    assert again is first and other is not first
    for _ in range(2):
        with pytest.raises(ApiError, match="gte \\(9\\) is greater than lte \\(2\\)"):
            compile_filter(StructureFilter(nsites=IntRange(gte=9, lte=2)))


def test_the_startup_heap_is_frozen(api: Api) -> None:
    """The served app moved what was alive at startup out of the collector's scans."""
    assert gc.get_freeze_count() > 0
