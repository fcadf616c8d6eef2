"""No small request may freeze or exhaust the server, and no user input makes a 500 or a masked
internal error: each attack of issue 12, sent over real HTTP to a real server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from graphql import parse

from crystaldb.api.app import create_app
from crystaldb.api.documents import AST_BYTES_PER_CHARACTER, DocumentCache
from crystaldb.api.errors import MASKED_MESSAGE
from crystaldb.api.inputs import MAX_INPUT_DEPTH, MAX_LIST_ITEMS
from crystaldb.api.limits import (
    MAX_ALIASES,
    MAX_NESTING,
    MAX_SELECTIONS,
    MAX_TOKENS,
    estimate_cost,
)
from crystaldb.api.pagination import encode_cursor
from crystaldb.api.schema import StructureSort, schema
from tests.api.conftest import Api, serving
from tests.api.test_app import counted

INTERNALS = ("Traceback", 'File "', "sqlalchemy", "psycopg", MASKED_MESSAGE)


def _errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors of an answer, checked free of internals."""
    text = json.dumps(body)
    for internal in INTERNALS:
        assert internal not in text, text[:2000]
    assert body.get("errors"), body
    return list(body["errors"])


def _within(seconds: float, work: Callable[[], Any]) -> Any:
    """work's result, failing the test if it has not finished after `seconds` (a bound that
    catches work exponential in the input, not a timing goal)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"still running after {seconds} s"
    return result[0]


def _fan_out(levels: int) -> str:
    """Fragments each spreading the next twice: 2**levels spreads in under a kilobyte."""
    parts = ["query { structures(first: 1) { ...F0 } }"]
    for i in range(levels):
        parts.append(f"fragment F{i} on StructureConnection {{ ...F{i + 1} ...F{i + 1} }}")
    parts.append(f"fragment F{levels} on StructureConnection {{ totalCount }}")
    return "\n".join(parts)


def test_the_estimate_is_linear_in_the_document() -> None:
    """60 levels of fragments spreading fragments: the old walker expanded 2**60 spreads;
    this one measures each fragment once and still gives the exact figure."""
    levels = 60

    def multiplying() -> str:
        parts = ["query { ...Q0 }"]
        for i in range(levels):
            parts.append(
                f"fragment Q{i} on Query {{ a{i}: structures(first: 2) {{ edges {{ node "
                f"{{ id }} }} }} ...Q{i + 1} }}"
            )
        parts.append(f"fragment Q{levels} on Query {{ __typename }}")
        return "\n".join(parts)

    deep = "query { structures(first: 2) { ...S0 } }\n" + "\n".join(
        f"fragment S{i} on StructureConnection {{ ...S{i + 1} ...S{i + 1} totalCount }}"
        for i in range(levels)
    )
    deep += f"\nfragment S{levels} on StructureConnection {{ totalCount }}"
    document = parse(deep)
    # each spread of the same fragment in one selection set counts once, as graphql-core
    # merges them: totalCount once per level, structures 1
    assert _within(10, lambda: estimate_cost(schema._schema, document)) == 1 + levels + 1
    chained = parse(multiplying())
    per_level = 1 + 1 + 2 * (1 + 1)
    assert _within(10, lambda: estimate_cost(schema._schema, chained)) == levels * per_level + 1


def test_a_fragment_fan_out_is_answered_at_once_and_health_stays_up(api: Api) -> None:
    """22 levels of doubling spreads (845 bytes in the issue) blocked /health for minutes;
    now the answer comes at once, and it is the data (graphql-core merges the spreads)."""
    query = _fan_out(22)
    assert len(query) < 2000
    body = _within(20, lambda: api.post(query))
    assert body["data"]["structures"]["totalCount"] == len(api.rows)
    health = httpx.get(f"{api.url}/health", timeout=5)
    assert health.json() == {"status": "ok", "database": "ok"}


def test_aliases_of_a_costly_field_are_refused_before_any_sql(api: Api) -> None:
    """20,000 aliases of `structures(first: 1) { totalCount }` cost 40,000 (under the limit)
    and ran 40,000 statements; beyond MAX_ALIASES they are refused before one runs."""
    query = "{ " + " ".join(f"a{i}: structures(first: 1) {{ totalCount }}" for i in range(150))
    query += " }"
    with counted(api) as statements:
        (error,) = _errors(api.post(query))
    assert statements == []
    assert error["extensions"]["code"] == "TOO_MANY_ALIASES"
    assert (
        f"150 aliased fields (fragments expanded), over the limit of {MAX_ALIASES}"
        in (error["message"])
    )


def test_aliases_hidden_in_a_fragment_fan_out_count_expanded(api: Api) -> None:
    """Two aliases in a fragment spread on 64 aliased paths are 128 aliases."""
    levels = 6
    parts = ["query { ...F0 }"]
    for i in range(levels):
        parts.append(
            f"fragment F{i} on Query {{ x{i}: structures(first: 1) {{ ...G{i} }} ...F{i + 1} }}"
        )
        parts.append(
            f"fragment G{i} on StructureConnection {{ "
            + " ".join(f"c{j}: totalCount" for j in range(30))
            + " }"
        )
    parts.append(f"fragment F{levels} on Query {{ __typename }}")
    with counted(api) as statements:
        (error,) = _errors(api.post("\n".join(parts)))
    assert statements == []
    assert error["extensions"]["code"] == "TOO_MANY_ALIASES"


def test_wide_selection_sets_and_long_texts_are_refused(api: Api) -> None:
    """100,000 `__typename` stalled the server; the text limit, the token limit and the
    width limit each refuse such documents before validation."""
    huge = "{ " + "__typename " * 100_000 + "}"
    (error,) = _errors(api.post(huge))
    assert error["extensions"]["code"] == "QUERY_TOO_LONG"
    many = "{ " + "__typename " * (MAX_TOKENS + 10) + "}"
    (error,) = _errors(api.post(many))
    assert f"Document contains more than {MAX_TOKENS} tokens" in error["message"]
    wide = "{ " + "__typename " * (MAX_SELECTIONS + 1) + "}"
    (error,) = _errors(api.post(wide))
    assert error["extensions"]["code"] == "QUERY_TOO_WIDE"
    assert api.data("{ " + "__typename " * MAX_SELECTIONS + "}") == {"__typename": "Query"}


@pytest.mark.parametrize("levels", [MAX_INPUT_DEPTH + 1, 70, 3000])
def test_deeply_nested_input_is_refused_plainly(api: Api, levels: int) -> None:
    """not: {not: ...} as deep as the text allows: never a RecursionError or masked error.

    Up to MAX_NESTING open brackets the document parses and the input's depth is refused;
    beyond, the text is refused before graphql-core's recursive parser sees it."""
    literal = "{not: " * levels + '{reducedFormula: "C"}' + "}" * levels
    body = api.post(f"{{ structures(filter: {literal}) {{ totalCount }} }}")
    (error,) = _errors(body)
    brackets = 1 + 1 + levels + 1  # the document's {, structures(, the nots, reducedFormula's
    if brackets > MAX_NESTING:
        assert error["extensions"] == {"code": "QUERY_TOO_DEEP", "maxNesting": MAX_NESTING}
        assert f"nests brackets more than {MAX_NESTING} deep" in error["message"]
    else:
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert f"nested deeper than {MAX_INPUT_DEPTH} levels" in error["message"]
    variable: Any = {"reducedFormula": "C"}
    for _ in range(min(levels, 400)):
        variable = {"not": variable}
    query = "query($f: StructureFilter) { structures(filter: $f) { totalCount } }"
    (error,) = _errors(api.post(query, f=variable))
    assert f"nested deeper than {MAX_INPUT_DEPTH} levels" in error["message"]
    assert error["message"].startswith("variable $f.not.not.not")


def test_a_body_nested_100000_deep_is_a_400(api: Api) -> None:
    """json.loads gives up with RecursionError; that is the client's doing, said plainly."""
    body = '{"query": "{ __typename }", "variables": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = httpx.post(
        f"{api.url}/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "nests JSON too deeply" in response.text


@pytest.mark.parametrize(
    ("query", "variables", "where"),
    [
        (
            "query($f: StructureFilter) { structures(filter: $f) { totalCount } }",
            {"f": {"reducedFormula": "C\x00H"}},
            "variable $f.reducedFormula: contains a NUL character (U+0000) at position 1",
        ),
        (
            "query($f: StructureFilter) { structures(filter: $f) { totalCount } }",
            {"f": {"spaceGroup": {"symbol": "P\ud8001"}}},
            "variable $f.spaceGroup.symbol: contains a lone surrogate (U+D800) at position 1",
        ),
        (
            '{ structureByExternalId(database: "cod\\u0000", id: "1") { id } }',
            {},
            "structureByExternalId(database): contains a NUL character",
        ),
        (
            "query($c: String) { structures(after: $c) { totalCount } }",
            {"c": "abc\udfff"},
            "variable $c: contains a lone surrogate (U+DFFF) at position 3",
        ),
        (
            'query($r: String!) { structure(id: "1") { quotientGraph(recipe: $r) { numEdges } } }',
            {"r": "radius\x00"},
            "variable $r: contains a NUL character",
        ),
        (
            '{ models(name: "x\\u0000") { name } runs(kind: "y") { id } }',
            {},
            "models(name): contains a NUL character",
        ),
    ],
)
def test_unstorable_text_is_an_error_naming_the_argument(
    api: Api, query: str, variables: dict[str, Any], where: str
) -> None:
    """A NUL or a lone surrogate anywhere in the input reached psycopg (an internal error)."""
    with counted(api) as statements:
        (error,) = _errors(api.post(query, **variables))
    assert where in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert statements == []


def test_long_lists_are_refused_naming_the_argument(api: Api) -> None:
    """spaceGroup.in with 66,000 values passed psycopg's 65,535 parameters (and logged 15 MB)."""
    query = "query($f: StructureFilter) { structures(filter: $f) { totalCount } }"
    with counted(api) as statements:
        (error,) = _errors(api.post(query, f={"spaceGroup": {"in": [14] * 66_000}}))
    assert statements == []
    assert error["message"] == (
        f"variable $f.spaceGroup.in: a list of 66,000 values, over the limit of "
        f"{MAX_LIST_ITEMS:,}: split the request, or use a range where the field has one"
    )
    literal = "[" + ", ".join(["14"] * (MAX_LIST_ITEMS + 1)) + "]"
    (error,) = _errors(
        api.post(f"{{ structures(filter: {{spaceGroup: {{in: {literal}}}}}) {{ totalCount }} }}")
    )
    assert error["message"].startswith("structures(filter).spaceGroup.in: a list of 1,001 values")
    at_limit = api.data(query, f={"spaceGroup": {"in": [14] * MAX_LIST_ITEMS}})
    fourteen = sum(r.columns["spacegroup_number"] == 14 for r in api.rows.values())
    assert at_limit["structures"]["totalCount"] == fourteen


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        (StructureSort.ID_ASC, True),
        (StructureSort.ID_ASC, 5),
        (StructureSort.NSITES_ASC, 1e30),
        (StructureSort.NSITES_ASC, True),
        (StructureSort.NSITES_DESC, None),
        (StructureSort.NSITES_DESC, 2.5),
        (StructureSort.BAND_GAP_ASC, float("nan")),
        (StructureSort.BAND_GAP_ASC, float("inf")),
        (StructureSort.BAND_GAP_DESC, None),
        (StructureSort.BAND_GAP_DESC, "1.0"),
        (StructureSort.BAND_GAP_DESC, 1e308),
    ],
)
def test_forged_cursor_keys_are_refused(api: Api, sort: StructureSort, key: Any) -> None:
    """Keys of the wrong type or range reached PostgreSQL (out of range, NaN, NULL)."""
    cursor = encode_cursor(sort, key, 1)
    query = f"query($c: String) {{ structures(sort: {sort.value}, after: $c) {{ totalCount }} }}"
    (error,) = _errors(api.post(query, c=cursor))
    assert "is not a cursor from this API; use an endCursor" in error["message"]


@pytest.mark.parametrize("structure_id", [True, 0, -1, 2**63, 1.5, None])
def test_forged_cursor_ids_are_refused(api: Api, structure_id: Any) -> None:
    """The id in a cursor is a whole number of structures.id's range."""
    cursor = encode_cursor(StructureSort.NSITES_ASC, 10, structure_id)
    query = "query($c: String) { structures(sort: NSITES_ASC, after: $c) { totalCount } }"
    (error,) = _errors(api.post(query, c=cursor))
    assert "is not a cursor from this API" in error["message"]


def test_a_huge_argument_is_echoed_truncated(api: Api) -> None:
    """A 1 MB cursor came back whole in the error message."""
    cursor = "A" * 1_000_000
    query = "query($c: String) { structures(after: $c) { totalCount } }"
    (error,) = _errors(api.post(query, c=cursor))
    assert len(error["message"]) < 300
    assert "... (1,000,000 characters)" in error["message"]


def test_sites_are_priced_by_the_stored_nsites(api: Api, limited: str) -> None:
    """The largest cells at 100 sites each pass the estimate; their real site counts do not,
    and the request is refused before the sites are built (one error, not one per cell)."""
    largest = sorted((r.columns["nsites"] for r in api.rows.values()), reverse=True)
    first = 20
    nodes = "edges { node { sites { species } } }"
    query = f"{{ structures(sort: NSITES_DESC, first: {first}) {{ {nodes} }} }}"
    estimate = estimate_cost(schema._schema, parse(query))
    assert estimate <= 10_000 < estimate + sum(max(0, n - 100) for n in largest[:first]) * 2
    response = httpx.post(f"{limited}/graphql", json={"query": query}, timeout=30)
    (error,) = _errors(response.json())
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert "once the sizes of the data are known" in error["message"]
    small = "{ structures(sort: NSITES_ASC, first: 20) { edges { node { nsites sites { species } } } } }"  # noqa: E501
    page = httpx.post(f"{limited}/graphql", json={"query": small}, timeout=30).json()
    nodes = [e["node"] for e in page["data"]["structures"]["edges"]]
    assert [len(n["sites"]) for n in nodes] == [n["nsites"] for n in nodes]


@pytest.fixture
def limited(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A server on the same database with a 10,000 cost limit and small bodies."""
    monkeypatch.setenv("CRYSTALDB_API_MAX_COST", "10000")
    monkeypatch.setenv("CRYSTALDB_API_MAX_BODY", "65536")
    monkeypatch.setenv("CRYSTALDB_API_MAX_UPLOAD", "200000")
    with serving(create_app(api.db)) as url:
        yield url


def test_bodies_over_the_limit_get_413(limited: str) -> None:
    """A JSON body over CRYSTALDB_API_MAX_BODY, declared or streamed, is refused."""
    padding = "x" * 70_000
    response = httpx.post(
        f"{limited}/graphql", json={"query": "{ __typename }", "variables": {"p": padding}}
    )
    assert response.status_code == 413
    (error,) = response.json()["errors"]
    assert "over the limit of 65,536 bytes (CRYSTALDB_API_MAX_BODY)" in error["message"]

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "{ __typename }", "variables": {"p": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}}'

    streamed = httpx.post(
        f"{limited}/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    fine = httpx.post(f"{limited}/graphql", json={"query": "{ __typename }"})
    assert fine.json() == {"data": {"__typename": "Query"}}


def _raw_headers(url: str, headers: str) -> str:
    """Send only a request's headers (no body) and read what the server answers."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as connection:
        connection.sendall(headers.encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode()


def test_an_upload_without_a_token_is_refused_before_its_body(limited: str) -> None:
    """Multipart bodies were spooled to /tmp before the token was checked; now a request that
    declares 50 MB and sends none of it is answered 401 at once."""
    answer = _raw_headers(
        limited,
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Content-Length: 52428800\r\n\r\n",
    )
    assert answer.startswith("HTTP/1.1 401")
    assert "uploads are for mutations: this mutation needs an API token" in answer
    declared = _raw_headers(
        limited,
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 52428800\r\n\r\n",
    )
    assert declared.startswith("HTTP/1.1 413")


def test_an_upload_with_a_token_is_bounded_by_its_own_limit(api: Api, limited: str) -> None:
    """With a live token the upload is read, up to CRYSTALDB_API_MAX_UPLOAD."""
    token = api.token
    operations = json.dumps(
        {
            "query": "mutation($f: Upload!) { predictBandGap(file: $f) { mean } }",
            "variables": {"f": None},
        }
    )
    files = {"0": ("big.cif", b"#" * 300_000, "chemical/x-cif")}
    response = httpx.post(
        f"{limited}/graphql",
        data={"operations": operations, "map": json.dumps({"0": ["variables.f"]})},
        files=files,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 413
    assert "CRYSTALDB_API_MAX_UPLOAD" in response.text


def test_cors_is_off_by_default_and_follows_the_setting(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No allowed origin unless configured; then exactly those."""
    preflight = {
        "Origin": "https://explorer.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    plain = httpx.options(f"{api.url}/graphql", headers=preflight)
    assert "access-control-allow-origin" not in plain.headers
    monkeypatch.setenv("CRYSTALDB_API_CORS_ORIGINS", "https://explorer.example.org")
    with serving(create_app(api.db)) as url:
        allowed = httpx.options(f"{url}/graphql", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://explorer.example.org"
        other = httpx.options(
            f"{url}/graphql", headers={**preflight, "Origin": "https://elsewhere.example.com"}
        )
        assert other.status_code == 400
        answer = httpx.post(
            f"{url}/graphql",
            json={"query": "{ __typename }"},
            headers={"Origin": "https://explorer.example.org"},
        )
        assert answer.headers["access-control-allow-origin"] == "https://explorer.example.org"


def test_a_band_gap_filter_on_a_functional_without_labels_says_so(api: Api) -> None:
    """An empty answer explains itself in extensions.warnings, naming what is stored."""
    query = """query($f: StructureFilter) {
      structures(filter: $f) { totalCount edges { node { id } } } }"""
    body = api.post(query, f={"bandGap": {"gte": 0, "functional": "SCAN"}})
    assert body["data"]["structures"] == {"totalCount": 0, "edges": []}
    (warning,) = body["extensions"]["warnings"]
    assert warning == (
        "filter.bandGap: no band gap label of functional 'SCAN' is stored, so this condition "
        "matches no structure; functionals with band gaps here: 'HSE06', 'PBE'"
    )
    answered = api.post(query, f={"bandGap": {"gte": 0}})
    assert answered["data"]["structures"]["totalCount"] > 0
    assert "extensions" not in answered or not answered["extensions"].get("warnings")


def test_caches_are_bounded_in_bytes() -> None:
    """40 distinct 1.1 MB queries took the server from 1.1 to 4.0 GB: entries are weighed."""
    cache = DocumentCache(max_bytes=8 << 20)
    texts = ["{ " + f"a{i:04d}: __typename " * 400 + "}" for i in range(200)]
    for text in texts:
        cache.parse(text)
    assert cache._entries.bytes <= 8 << 20
    assert len(cache._entries) == (8 << 20) // (AST_BYTES_PER_CHARACTER * len(texts[0]))


@pytest.mark.slow
def test_health_answers_while_one_request_works(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that resolves a million values runs for seconds; /health answers within a
    fraction of it all along (the work runs off the server's event loop)."""
    monkeypatch.setenv("CRYSTALDB_API_MAX_COST", "100000000")
    monkeypatch.setenv("CRYSTALDB_API_TIMEOUT", "60")
    page = (
        "structures(first: 1000) { edges { node { id sites { species fractional cartesian } } } }"
    )
    query = "{ " + " ".join(f"a{i}: {page}" for i in range(8)) + " }"
    with serving(create_app(api.db)) as url:
        heavy: list[float] = []

        def work() -> None:
            start = time.monotonic()
            response = httpx.post(f"{url}/graphql", json={"query": query}, timeout=120)
            assert response.status_code == 200
            heavy.append(time.monotonic() - start)

        worker = threading.Thread(target=work)
        worker.start()
        time.sleep(0.2)
        waits = []
        while worker.is_alive():
            start = time.monotonic()
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
            waits.append(time.monotonic() - start)
            time.sleep(0.05)
        worker.join()
    assert heavy[0] > 1.0 and len(waits) >= 5, (heavy, waits)
    assert max(waits) < heavy[0] / 4, (heavy, sorted(waits)[-5:])
