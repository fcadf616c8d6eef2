"""OPTIMADE filter queries against the same questions in GraphQL and the raw SQL they issue.

    python bench/optimade_api.py [--structures 50000] [--repeat 30] [--server URL]

The database is bench/api.py's (its `load`: --structures copies of the real COD and COF
structures, one PBE gap and one COD id each, then ANALYZE), served by the same app in a
uvicorn thread. Each question is asked over HTTP (httpx) --repeat times after 3 untimed, the
ways taken in turn so that the shared machine's load falls on all alike: as an OPTIMADE GET
(page_limit 100; with response_fields=chemical_formula_reduced, the fields the GraphQL query
selects, once as served and once with the server's kept counts forgotten first, so that page 1
counts its matches; and with whole entries), as the GraphQL query (first 100,
`id reducedFormula`), and as the SQL a cold OPTIMADE request issued (captured once with a
`before_cursor_execute` listener, re-executed with psycopg, fetchall included). The deep
page is page 50 of the window, reached by following links.next (OPTIMADE) and endCursor
(GraphQL). Goal: OPTIMADE median <= 1.5 x GraphQL's; the deep page as fast as the first.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from api import (  # bench/api.py
    DEEP_PAGE,
    PAGE,
    WINDOW,
    Server,
    deep_query,
    load,
    p99,
    post,
    real_records,
)
from common import drop_database, fresh_database  # bench/common.py
from sqlalchemy import event
from sqlalchemy.engine import make_url

from crystaldb.api.optimade import queries
from crystaldb.core.lru import Lru
from crystaldb.platform.database import Database, connect
from crystaldb.platform.embedded import stop_embedded
from crystaldb.platform.settings import load_settings
from crystaldb.schema import migrate

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
OPTIMADE_WINDOW = (
    "_crystaldb_band_gap_pbe >= 1 AND _crystaldb_band_gap_pbe <= 3 AND "
    'elements HAS ALL "C","H" AND _crystaldb_space_group_number = 14'
)
CHN = 'elements HAS ALL "C","H","N"'
# name -> (OPTIMADE filter, GraphQL query)
QUESTIONS = {
    "window (gap+elements+sg), page 1": (
        OPTIMADE_WINDOW,
        f"{{ structures(filter: {WINDOW}, first: 100) {{ {PAGE} }} }}",
    ),
    "elements only (C,H,N), page 1": (
        CHN,
        f'{{ structures(filter: {{elements: {{hasAll: ["C", "H", "N"]}}}}, first: 100) '
        f"{{ {PAGE} }} }}",
    ),
}
FORMULA = "chemical_formula_reduced"


def get(client: httpx.Client, url: str) -> dict[str, Any]:
    """An OPTIMADE response that must succeed."""
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url[:80]}...: {response.text[:300]}")
    return response.json()


def optimade_url(base: str, text: str, fields: str | None) -> str:
    """The first page of a filter, 100 entries."""
    params: dict[str, Any] = {"filter": text, "page_limit": 100}
    if fields:
        params["response_fields"] = fields
    return str(httpx.URL(f"{base}/optimade/v1/structures", params=params))


def deep_url(client: httpx.Client, first: str) -> tuple[str, int]:
    """The URL of page DEEP_PAGE (or the last), following links.next from `first`."""
    url, page = first, 1
    while page < DEEP_PAGE:
        following = get(client, url)["links"].get("next")
        if not following:
            break
        url, page = following, page + 1
    return url, page


def captured(db: Database, run: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The statements (and parameters) one request sends to PostgreSQL."""
    seen: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.strip().upper() != "SELECT 1":
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    return seen


Row = tuple[str, int, dict[str, list[float]]]
KINDS = ("slim", "cold", "whole", "graphql", "raw")


def interleaved(
    runs: dict[str, Callable[[], Any]], repeat: int, warmup: int = 3
) -> dict[str, list[float]]:
    """Milliseconds of each run, taken in turn (slim, cold, whole, GraphQL, raw, slim, ...)
    so that the shared machine's load falls on all of them alike; after a few untimed."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def cold(run: Callable[[], Any]) -> Callable[[], Any]:
    """The run with the kept counts forgotten first: the first page counts its matches, as
    for a filter nobody asked since the database last changed."""

    def forgetting() -> Any:
        queries.COUNTS = Lru(512)
        return run()

    return forgetting


def measure(db: Database, raw: psycopg.Connection, base: str, repeat: int) -> list[Row]:
    """Each question as OPTIMADE (formula only with the count kept and without, whole
    entries), GraphQL and raw SQL, in turn."""
    graphql = f"{base}/graphql"
    rows: list[Row] = []
    with httpx.Client(timeout=60) as client:
        cases: dict[str, tuple[str, str, str]] = {}
        for name, (text, query) in QUESTIONS.items():
            cases[name] = (optimade_url(base, text, FORMULA), optimade_url(base, text, None), query)
        slim, whole, _ = cases["window (gap+elements+sg), page 1"]
        deep_slim, page = deep_url(client, slim)
        deep_whole, _ = deep_url(client, whole)
        deep_graphql, graphql_page = deep_query(client, graphql)
        assert page == graphql_page, (page, graphql_page)
        cases[f"window, page {page}"] = (deep_slim, deep_whole, deep_graphql)
        cases["floor: one structure by id"] = (
            f"{base}/optimade/v1/structures/1?response_fields={FORMULA}",
            f"{base}/optimade/v1/structures/1",
            '{ structure(id: "1") { id reducedFormula } }',
        )
        for name, (slim, whole, query) in cases.items():
            statements = captured(db, cold(lambda u=slim: get(client, u)))

            def run_raw(statements: list[tuple[str, Any]] = statements) -> None:
                for statement, params in statements:
                    raw.execute(statement, params).fetchall()

            runs: dict[str, Callable[[], Any]] = {
                "slim": lambda u=slim: get(client, u),
                "cold": cold(lambda u=slim: get(client, u)),
                "whole": lambda u=whole: get(client, u),
                "graphql": lambda q=query: post(client, graphql, q),
                "raw": run_raw,
            }
            rows.append((name, len(statements), interleaved(runs, repeat)))
    return rows


def report(rows: list[Row]) -> None:
    """Medians (p99 for OPTIMADE) and the ratios to GraphQL's median."""
    print(
        f"\n{'question':<34}{'stmts':>6}{'OPT med':>9}{'OPT p99':>9}{'cold med':>9}"
        f"{'whole med':>10}{'GQL med':>9}{'raw med':>9}{'OPT/GQL':>9}{'cold/GQL':>9}"
        f"{'whole/GQL':>10}"
    )
    for name, n, times in rows:
        med = {kind: statistics.median(times[kind]) for kind in KINDS}
        gql = med["graphql"]
        print(
            f"{name:<34}{n:>6}{med['slim']:9.1f}{p99(times['slim']):9.1f}{med['cold']:9.1f}"
            f"{med['whole']:10.1f}{gql:9.1f}{med['raw']:9.1f}{med['slim'] / gql:9.2f}"
            f"{med['cold'] / gql:9.2f}{med['whole'] / gql:10.2f}"
        )
    print(
        "(milliseconds; OPT: response_fields=chemical_formula_reduced, as GraphQL selects "
        "id reducedFormula; cold: the same with the kept counts forgotten before each request; "
        "whole: every attribute; raw: the SQL of a cold request; goal OPT/GQL <= 1.5, "
        "deep page = page 1)"
    )


def main() -> None:
    """Fill, serve, time, drop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=50_000, help="rows to load")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per query")
    parser.add_argument(
        "--server", default=DEFAULT_SERVER, help='PostgreSQL server URL ("": an embedded one)'
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"{os.cpu_count()} CPUs  Python {platform.python_version()}  httpx {httpx.__version__}"
        f"  psycopg {psycopg.__version__}"
    )
    records = real_records()
    scratch = Path(tempfile.mkdtemp(prefix="crystaldb-bench-optimade-"))
    url = fresh_database(args.server, scratch / "data")
    db = connect(load_settings(database_url=url, data_dir=scratch / "data"))
    try:
        migrate.upgrade(db)
        seconds = load(db, records, args.structures)
        print(f"loaded {args.structures:,} structures in {seconds:.1f} s; {db.server_version()}")
        raw_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with Server(db) as graphql, psycopg.connect(raw_url, autocommit=True) as raw:
            rows = measure(db, raw, graphql.removesuffix("/graphql"), args.repeat)
    finally:
        db.dispose()
        drop_database(url)
        if not args.server:  # the embedded server of this run: stopped, its files removed
            stop_embedded(scratch / "data")
        shutil.rmtree(scratch, ignore_errors=True)
    report(rows)


if __name__ == "__main__":
    main()
