"""GraphQL API latency at COD screening scale, against the raw SQL its resolvers issue.

    python bench/api.py [--structures 300000] [--repeat 50] [--server URL]

Fills a fresh database (migrated with ``crystaldb.schema.migrate.upgrade``) with
--structures rows made by cycling the real structures of ../shared/data/cod and the
package's sample COFs (validated by ``process_file``), each copy with its own fingerprint,
COD id, slightly perturbed volume and density, and a PBE band gap drawn from a gamma
distribution (mean about 3 eV), written through the ingest writer (COPY) in chunks, then
ANALYZE. Then serves ``create_app(db)`` with uvicorn in a thread and, in this process, times
typical queries over real HTTP (httpx): median and p99 of --repeat requests each. Beside
each, the SQL the request issued (captured once with a ``before_cursor_execute`` listener on
the app's engine) is re-executed with psycopg on one connection and timed the same way.
Goal: API median <= 2 x (raw SQL median + 5 ms), the API/(raw+5) column, and a deep page
as fast as the first.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import math
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import uvicorn
from common import cycled, drop_database, fresh_database  # bench/common.py
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from crystaldb.api.app import create_app
from crystaldb.core.records import LabelSpec, StructureRecord
from crystaldb.formats.payload import process_file
from crystaldb.jobs.load import write_chunk
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import load_settings
from crystaldb.schema import IngestBatch, migrate
from crystaldb.schema.runs import track_run

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
COFS = REPO / "crystaldb" / "data" / "sample" / "cofs"
SKIP = {"1001614.cif"}  # crashes spglib 2.8 (see tests/sampledb.py)
CHUNK = 5000
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SPEC = LabelSpec("pbe_gap", "band_gap", "eV", "PBE", "VASP", parameters={"encut": 520})

PAGE = "edges { node { id reducedFormula } } pageInfo { endCursor hasNextPage }"
WINDOW = (
    '{and: [{bandGap: {gte: 1, lte: 3}}, {elements: {hasAll: ["C", "H"]}}, '
    "{spaceGroup: {number: 14}}]}"
)
LABELS = (
    "edges { node { id reducedFormula labels { property value unit "
    "calculation { functional code } } } } pageInfo { endCursor hasNextPage }"
)
QUERIES = {
    "gap+elements+sg, page 1": f"{{ structures(filter: {WINDOW}, first: 100) {{ {PAGE} }} }}",
    "elements only (C,H,N), page 1": (
        '{ structures(filter: {elements: {hasAll: ["C", "H", "N"]}}, first: 100) '
        f"{{ {PAGE} }} }}"
    ),
    "gap+elements+sg + labels": f"{{ structures(filter: {WINDOW}, first: 100) {{ {LABELS} }} }}",
    "floor: one structure by id": '{ structure(id: "1") { id reducedFormula } }',
}
DEEP = "gap+elements+sg, page"
DEEP_PAGE = 50


def real_records() -> list[StructureRecord]:
    """Every valid structure of the COD CIFs and the sample COFs."""
    paths = sorted((DATA / "cod").glob("*.cif")) + sorted(COFS.glob("*.cif"))
    records = []
    for path in paths:
        if path.name not in SKIP:
            records += [r for r in process_file(path) if isinstance(r, StructureRecord)]
    return records


def synthetic(records: list[StructureRecord], n: int, seed: int = 0) -> Iterator[StructureRecord]:
    """n copies cycling small and large cells (mean 82 sites), each a distinct structure."""
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(4.0, 0.76, n)  # mean about 3.0 eV
    scale = rng.normal(1.0, 0.01, n)
    for i, record in enumerate(cycled(records, n)):
        s = float(scale[i])
        yield replace(
            record,
            fingerprint=f"bench-{i}",
            path="bench/api",
            entry=i,
            sha256=hashlib.sha256(str(i // CHUNK).encode()).hexdigest(),  # one per chunk
            volume=record.volume * s,
            density=record.density / s,
            external_ids={"cod": str(1_000_000 + i)},
            properties={"pbe_gap": round(float(gaps[i]), 3)},
        )


def load(db: Database, records: list[StructureRecord], n: int) -> float:
    """Write n synthetic structures with their labels and COD ids; seconds taken."""
    with track_run(db, "bench") as run, db.session() as session:
        batch = IngestBatch(run_id=run.id)
        session.add(batch)
        session.flush()
        batch_id = batch.id
    start = time.perf_counter()
    chunk: list[StructureRecord] = []
    done = 0
    for record in synthetic(records, n):
        chunk.append(record)
        if len(chunk) == CHUNK:
            write_chunk(db, batch_id, chunk, SPEC)
            done += len(chunk)
            chunk = []
            if done % 50_000 == 0:
                print(f"  {done:,} rows, {time.perf_counter() - start:.0f} s", flush=True)
    if chunk:
        write_chunk(db, batch_id, chunk, SPEC)
    seconds = time.perf_counter() - start
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    return seconds


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """uvicorn serving the app in a daemon thread, as tests/api/conftest.py does."""

    def __init__(self, db: Database) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(db), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}/graphql"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def post(client: httpx.Client, url: str, query: str) -> dict[str, Any]:
    """The data of a query that must succeed."""
    response = client.post(url, json={"query": query})
    body = response.json()
    if response.status_code != 200 or "errors" in body:
        raise RuntimeError(f"{query[:60]}...: {body}")
    return body["data"]


def captured(db: Database, client: httpx.Client, url: str, query: str) -> list[tuple[str, Any]]:
    """The statements (and parameters) one request sends to PostgreSQL."""
    seen: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.strip().upper() != "SELECT 1":
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        post(client, url, query)
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    return seen


def timings(run: Any, repeat: int, warmup: int = 3) -> list[float]:
    """Milliseconds of each of `repeat` calls, after a few untimed ones."""
    for _ in range(warmup):
        run()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p99(values: list[float]) -> float:
    """99th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def deep_query(client: httpx.Client, url: str) -> tuple[str, int]:
    """The window query after walking endCursors to page DEEP_PAGE (or the last full page)."""
    after: str | None = None
    page = 1
    while page < DEEP_PAGE:
        cursor = f', after: "{after}"' if after else ""
        q = f"{{ structures(filter: {WINDOW}, first: 100{cursor}) {{ {PAGE} }} }}"
        info = post(client, url, q)["structures"]["pageInfo"]
        if not info["hasNextPage"]:
            break
        after, page = info["endCursor"], page + 1
    cursor = f', after: "{after}"' if after else ""
    return f"{{ structures(filter: {WINDOW}, first: 100{cursor}) {{ {PAGE} }} }}", page


def main() -> None:
    """Fill, serve, time, drop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=300_000, help="rows to load")
    parser.add_argument("--repeat", type=int, default=50, help="timed requests per query")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"{os.cpu_count()} CPUs  Python {platform.python_version()}  "
        f"uvicorn {uvicorn.__version__}  httpx {httpx.__version__}  psycopg {psycopg.__version__}"
        f"  strawberry {version('strawberry-graphql')}  graphql-core {version('graphql-core')}"
    )
    start = time.perf_counter()
    records = real_records()
    print(f"{len(records)} real structures validated ({time.perf_counter() - start:.1f} s)")
    scratch = Path(tempfile.mkdtemp(prefix="crystaldb-bench-api-"))
    url = fresh_database(args.server, scratch / "data")
    db = connect(load_settings(database_url=url, data_dir=scratch / "data"))
    results: list[tuple[str, list[float], list[float], int]] = []
    try:
        migrate.upgrade(db)
        seconds = load(db, records, args.structures)
        print(
            f"loaded {args.structures:,} structures with labels and COD ids in {seconds:.1f} s "
            f"({args.structures / seconds:,.0f}/s), then ANALYZE; PostgreSQL {db.server_version()}"
        )
        raw_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with (
            Server(db) as api,
            httpx.Client(timeout=60) as client,
            psycopg.connect(raw_url, autocommit=True) as raw,
        ):
            deep, page = deep_query(client, api)
            print(f"deep page: page {page} of the window query")
            names = list(QUERIES)
            queries = {names[0]: QUERIES[names[0]], f"{DEEP} {page}": deep}
            queries |= {name: QUERIES[name] for name in names[1:]}
            for name, query in queries.items():
                statements = captured(db, client, api, query)

                def run_raw(statements: list[tuple[str, Any]] = statements) -> None:
                    for statement, params in statements:
                        raw.execute(statement, params).fetchall()

                api_ms = timings(lambda q=query: post(client, api, q), args.repeat)
                raw_ms = timings(run_raw, args.repeat)
                results.append((name, api_ms, raw_ms, len(statements)))
    finally:
        db.dispose()
        drop_database(url)
    print(
        f"\n{'query':<32}{'stmts':>6}{'API med':>9}{'API p99':>9}{'raw med':>9}{'raw p99':>9}"
        f"{'API/(raw+5)':>13}"
    )
    for name, api_ms, raw_ms, n in results:
        med, raw_med = statistics.median(api_ms), statistics.median(raw_ms)
        print(
            f"{name:<32}{n:>6}{med:9.1f}{p99(api_ms):9.1f}{raw_med:9.1f}{p99(raw_ms):9.1f}"
            f"{med / (raw_med + 5):13.2f}"
        )
    print("(milliseconds; goal: API/(raw+5) <= 2, and the deep page as fast as page 1)")


if __name__ == "__main__":
    main()
