"""GraphQL API under concurrent load: `crystaldb serve --workers 1` against `--workers 2`.

    python bench/api_load.py [--structures 50000] [--seconds 10] [--clients 1,10,50,200]
                             [--workers 1,2] [--timeout 10] [--ramp 2] [--server URL]

Fills a fresh database as bench/api.py does (its ``real_records`` and ``load``: real COD and
COF cells cycled to a mean of 82 sites, a PBE gap and a COD id each, COPY, ANALYZE), starts
one ``crystaldb serve --workers N`` child process per --workers value on that database, and
drives them from this process with 1, 10, 50 and 200 concurrent clients, which join one by
one over --ramp seconds (not measured: a burst of connections opened at the same instant
is mostly accepted by one worker, which keeps them; --ramp 0 shows it), then for --seconds;
at each client count the servers' runs come back to back, so that whatever else the machine
runs weighs about the same on the runs compared. Each client is a coroutine with one
persistent HTTP/1.1 connection (raw asyncio streams: no HTTP library between the clock and
the socket) that POSTs the next query of a fixed mix as soon as its previous answer is in:

- a filtered first page (band gap 1-3 eV, C and H, space group 14; 100 ids and formulas);
- a deep keyset page (elements C and H, pages 26-50, after the endCursor of the page before);
- another filtered first page (elements C, H and N);
- one structure with its sites and its labels (ids spread over the table).

Reported per run: answers per second, p50 and p99 latency, errors (a status other than 200,
an `errors` key, a dropped connection) and timeouts (no answer within --timeout; the
connection is then replaced), requests per second per core the server used, and the CPU
each party used, in cores: this load generator, the server (all its processes), PostgreSQL
(its own processes and the benchmark database's backends) and the rest of the machine.
Then the ratios workers N / workers 1. Goal (issue 12): throughput at least 1.7x from 1 to 2
workers on 2 cores, and p99 under 1 s at 50 clients. The database and the servers' logs
are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import uvicorn
from api import DEFAULT_SERVER, PAGE, WINDOW, free_port, load, p99, real_records
from common import drop_database, fresh_database  # bench/common.py
from sqlalchemy import text
from sqlalchemy.engine import make_url

from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import load_settings
from crystaldb.schema import migrate

HOST = "127.0.0.1"
DEEP_FILTER = '{elements: {hasAll: ["C", "H"]}}'
DEEP_PAGES = (26, 50)  # the keyset pages driven: rows 2,500-5,000 of the filter
STRUCTURE = (
    '{{ structure(id: "{id}") {{ id reducedFormula nsites '
    "sites {{ species occupancy fractional cartesian }} "
    "labels {{ property value unit calculation {{ functional code }} }} }} }}"
)
START_S = 180  # N workers import the API on a busy 2-core machine


@dataclass
class Result:
    """One run: a worker count, a client count, what came back and the CPU it cost."""

    workers: int
    clients: int
    seconds: float
    timeout: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    timeouts: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # cores used, by party
    spread: list[int] = field(default_factory=list)  # client connections per serving process

    @property
    def throughput(self) -> float:
        """Answered requests per second (errors included: they were answered)."""
        return len(self.latencies_ms) / self.seconds

    @property
    def p50(self) -> float:
        """Median latency, ms."""
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        """99th percentile latency, ms."""
        return p99(self.latencies_ms) if self.latencies_ms else float("nan")


class Connection:
    """One persistent HTTP/1.1 connection: the leanest client asyncio allows."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST /graphql; the status and the body (connecting first when needed)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = (
            f"POST /graphql HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status, headers = _parse_head(raw)
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:
            data = await _read_chunked(self.reader)
        if headers.get("connection") == "close":
            self.close()
        return status, data

    def close(self) -> None:
        """Drop the socket; the next post opens a new one."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head."""
    lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip().lower()
    return int(lines[0].split()[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (uvicorn sends one only when the app gives no length)."""
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")
    return b"".join(parts)


async def _client(
    port: int, mix: Iterator[bytes], delay: float, window: tuple[float, float], result: Result
) -> None:
    """After `delay`, send the next query of the mix as soon as the last answer is in, until
    the window closes; only requests sent and answered inside the window are counted."""
    await asyncio.sleep(delay)
    opens, closes = window
    conn = Connection(port)
    try:
        while time.perf_counter() < closes:
            body = next(mix)
            start = time.perf_counter()
            counted = start >= opens
            try:
                status, data = await asyncio.wait_for(conn.post(body), result.timeout)
            except TimeoutError:
                result.timeouts += counted  # unanswered in time: its connection is replaced
                conn.close()
                continue
            except (OSError, asyncio.IncompleteReadError):
                result.errors += counted  # refused or dropped: counted, then a new connection
                conn.close()
                continue
            if counted and time.perf_counter() <= closes:
                result.latencies_ms.append((time.perf_counter() - start) * 1000)
                result.errors += status != 200 or b'"errors"' in data
    finally:
        conn.close()


def _cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    """User plus system CPU seconds of each process still there."""
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def _postgres(database: str) -> list[psutil.Process]:
    """The PostgreSQL server's own processes and its backends on `database` (not those of
    other databases: tests may share the server)."""
    chosen = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] != "postgres":
            continue
        line = " ".join(process.info["cmdline"] or [])
        backend = "[local]" in line or re.search(r"\d\(\d+\)", line)
        if database in line or not backend:
            chosen.append(process)
    return chosen


def _server_processes(server: subprocess.Popen[str]) -> list[psutil.Process]:
    """The serve process and its workers."""
    parent = psutil.Process(server.pid)
    return [parent, *parent.children(recursive=True)]


async def drive(
    server: subprocess.Popen[str], port: int, mix: list[bytes], clients: int, args: Any
) -> Result:
    """`clients` clients against the server: they join one by one over args.ramp seconds,
    then args.seconds are measured; what they saw and what it cost."""
    result = Result(workers=0, clients=clients, seconds=args.seconds, timeout=args.timeout)
    queries = itertools.cycle(mix)
    opens = time.perf_counter() + args.ramp
    window = (opens, opens + args.seconds)
    tasks = [
        asyncio.create_task(_client(port, queries, i * args.ramp / clients, window, result))
        for i in range(clients)
    ]
    await asyncio.sleep(max(0.0, opens - time.perf_counter()))
    parties = {"server": _server_processes(server), "postgres": _postgres(args.database)}
    before = {name: _cpu_seconds(ps) for name, ps in parties.items()}
    machine, own, started = _busy_seconds(), time.process_time(), time.perf_counter()
    await asyncio.sleep(args.seconds / 2)
    result.spread = _spread(server, port)
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started  # the window and the drain of its last requests
    parties["postgres"] = _postgres(args.database)  # backends opened during the run
    for name, processes in parties.items():
        after = _cpu_seconds(processes)
        result.cpu[name] = sum(t - before[name].get(pid, 0.0) for pid, t in after.items()) / wall
    result.cpu["generator"] = (time.process_time() - own) / wall
    busy = (_busy_seconds() - machine) / wall
    result.cpu["other"] = max(0.0, busy - sum(result.cpu.values()))
    return result


def _spread(server: subprocess.Popen[str], port: int) -> list[int]:
    """The client connections each serving process holds, largest first (a worker keeps the
    keep-alive connections it happened to accept)."""
    counts = []
    for process in _server_processes(server):
        try:
            held = process.net_connections("tcp")
        except psutil.Error:
            continue
        mine = [c for c in held if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED]
        if mine:
            counts.append(len(mine))
    return sorted(counts, reverse=True)


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent on anything but idling."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@contextmanager
def serving(url: str, data_dir: Path, workers: int, log: Path) -> Iterator[tuple[Any, int]]:
    """`crystaldb serve --workers N` on the bench database, until every worker has started."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYSTALDB_")}
    env |= {"CRYSTALDB_DATABASE_URL": url, "CRYSTALDB_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "crystaldb", "serve", "--workers", str(workers)]
    with log.open("w") as out:
        server = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        _wait_started(server, log, workers)
        yield server, port
    finally:
        _stop(server)


def _wait_started(server: subprocess.Popen[str], log: Path, workers: int) -> None:
    """Until uvicorn has logged one completed startup per worker."""
    deadline = time.monotonic() + START_S
    while log.read_text().count("Application startup complete") < workers:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"crystaldb serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _stop(server: subprocess.Popen[str]) -> None:
    """SIGTERM, as a service manager stops it; SIGKILL to the group if it hangs."""
    server.terminate()
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


async def _ask(port: int, query: str) -> dict[str, Any]:
    """The data of one query that must succeed."""
    conn = Connection(port)
    try:
        status, data = await conn.post(json.dumps({"query": query}).encode())
    finally:
        conn.close()
    body = json.loads(data)
    if status != 200 or "errors" in body:
        raise RuntimeError(f"{query[:80]}...: {status} {body}")
    return dict(body["data"])


async def query_mix(port: int, db: Database) -> tuple[list[bytes], str]:
    """The fixed mix (each entry one request body) and a line describing it."""
    first_pages = [
        f"{{ structures(filter: {WINDOW}, first: 100) {{ {PAGE} }} }}",
        f'{{ structures(filter: {{elements: {{hasAll: ["C", "H", "N"]}}}}, first: 100) '
        f"{{ {PAGE} }} }}",
    ]
    deep = await _deep_pages(port)
    with db.engine.connect() as conn:
        ids = list(conn.execute(text("SELECT id FROM structures ORDER BY id")).scalars())
    picked = ids[:: max(1, len(ids) // len(deep))][: len(deep)]
    structures = [STRUCTURE.format(id=i) for i in picked]
    for query in [*first_pages, deep[0], structures[0]]:
        await _ask(port, query)  # each must succeed before it is timed
    mix = []
    for deep_page, structure in zip(deep, structures, strict=True):
        mix += [first_pages[0], deep_page, first_pages[1], structure]
    described = (
        f"mix of {len(mix)} requests, cycled: 2 filtered first pages, {len(deep)} deep keyset "
        f"pages ({DEEP_FILTER} pages {DEEP_PAGES[0]}-{DEEP_PAGES[0] + len(deep) - 1}), "
        f"{len(structures)} structures with sites and labels"
    )
    return [json.dumps({"query": q}).encode() for q in mix], described


async def _deep_pages(port: int) -> list[str]:
    """The deep-filter queries of pages DEEP_PAGES, found by walking endCursors."""
    queries: list[str] = []
    after: str | None = None
    for page in range(1, DEEP_PAGES[1] + 1):
        cursor = f', after: "{after}"' if after else ""
        query = f"{{ structures(filter: {DEEP_FILTER}, first: 100{cursor}) {{ {PAGE} }} }}"
        if page >= DEEP_PAGES[0]:
            queries.append(query)
        info = (await _ask(port, query))["structures"]["pageInfo"]
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    if not queries:
        raise RuntimeError(f"fewer than {DEEP_PAGES[0]} pages: load more --structures")
    return queries


async def run_all(url: str, db: Database, scratch: Path, args: Any) -> list[Result]:
    """Every client count against every server, the servers' runs back to back.

    All servers run at once (an idle one costs no CPU), so that the runs compared with each
    other are seconds apart and meet the same load from whatever else the machine runs.
    """
    results = []
    with ExitStack() as stack:
        servers = {
            w: stack.enter_context(serving(url, scratch / "data", w, scratch / f"serve-{w}.log"))
            for w in args.workers
        }
        mix, described = await query_mix(servers[args.workers[0]][1], db)
        print(described, flush=True)
        warm = argparse.Namespace(**(vars(args) | {"seconds": 3.0, "timeout": 30.0, "ramp": 0}))
        for server, port in servers.values():
            await drive(server, port, mix, 10, warm)  # untimed: first requests, all workers
        print(HEADER, flush=True)
        for clients in args.clients:
            for workers, (server, port) in servers.items():
                result = await drive(server, port, mix, clients, args)
                result.workers = workers
                results.append(result)
                print(_row(result), flush=True)
    return results


HEADER = (
    f"{'workers':>7}{'clients':>8}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>9}{'errors':>7}"
    f"{'timeouts':>9}{'conns':>9}{'req/s/core':>11}   CPU cores: generator / server / "
    "postgres / other"
)


def _row(r: Result) -> str:
    """One line of the results table."""
    cpu = " / ".join(f"{r.cpu[k]:.2f}" for k in ("generator", "server", "postgres", "other"))
    return (
        f"{r.workers:>7}{r.clients:>8}{r.throughput:>8.1f}{r.p50:>8.1f}{r.p99:>9.1f}"
        f"{r.errors:>7}{r.timeouts:>9}{'+'.join(map(str, r.spread)):>9}{_per_core(r):>11.1f}"
        f"   {cpu}"
    )


def _per_core(r: Result) -> float:
    """Requests per second per core the server used: its efficiency, whatever it was given."""
    return r.throughput / r.cpu["server"] if r.cpu["server"] else float("nan")


def report(results: list[Result], args: Any) -> None:
    """The ratios against the first worker count, and the goal in words."""
    first = args.workers[0]
    base = {r.clients: r for r in results if r.workers == first}
    print(f"\nratios, workers N / workers {first}, at the same client count:")
    print(f"{'workers':>7}{'clients':>8}{'req/s':>8}{'p50':>8}{'p99':>9}{'server CPU':>11}")
    for r in results:
        if r.workers != first and r.clients in base:
            b = base[r.clients]
            print(
                f"{r.workers:>7}{r.clients:>8}{r.throughput / b.throughput:>8.2f}"
                f"{r.p50 / b.p50:>8.2f}{r.p99 / b.p99:>9.2f}"
                f"{r.cpu['server'] / b.cpu['server']:>11.2f}"
            )
    _goals(results)
    print(
        "(req/s: answers per second over the run, errors included; conns: client connections"
        " each server process held mid-run; req/s/core: per core the server's processes used;"
        f" CPU cores: used during the run, of this machine's {psutil.cpu_count()}, by this load"
        " generator, the server, PostgreSQL (its own processes and the benchmark database's"
        " backends) and everything else: other)"
    )


def _goals(results: list[Result]) -> None:
    """Issue 12's goals, met or not, with what the server was given."""
    peak = {
        w: max((r for r in results if r.workers == w), key=lambda r: r.throughput)
        for w in {r.workers for r in results}
    }
    if 1 in peak and 2 in peak:
        one, two = peak[1], peak[2]
        ratio = two.throughput / one.throughput
        print(
            f"\ngoal: peak throughput x1.7 from 1 to 2 workers: {one.throughput:.1f} "
            f"({one.clients} clients) -> {two.throughput:.1f} req/s ({two.clients} clients), "
            f"x{ratio:.2f}: {'met' if ratio >= 1.7 else 'NOT met'}; the server used "
            f"{one.cpu['server']:.2f} -> {two.cpu['server']:.2f} cores, other processes "
            f"{one.cpu['other']:.2f} -> {two.cpu['other']:.2f}"
        )
    for r in results:
        if r.clients == 50 and r.workers == max(peak):
            verdict = "met" if r.p99 < 1000 and not r.timeouts else "NOT met"
            print(
                f"goal: p99 under 1 s at 50 clients ({r.workers} workers): {r.p99:.0f} ms, "
                f"{r.timeouts} timeouts: {verdict}"
            )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    """Fill, serve with each worker count, drive, report, drop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=50_000, help="rows to load")
    parser.add_argument("--seconds", type=float, default=10, help="length of each run")
    parser.add_argument("--clients", type=_ints, default=[1, 10, 50, 200], help="e.g. 1,10")
    parser.add_argument("--workers", type=_ints, default=[1, 2], help="e.g. 1,2,4")
    parser.add_argument("--timeout", type=float, default=10, help="seconds per request")
    parser.add_argument(
        "--ramp", type=float, default=2, help="seconds over which the clients join, unmeasured"
    )
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"{psutil.cpu_count()} CPUs  load {os.getloadavg()[0]:.1f}  "
        f"Python {platform.python_version()}  uvicorn {uvicorn.__version__}"
    )
    records = real_records()
    scratch = Path(tempfile.mkdtemp(prefix="crystaldb-bench-load-"))
    url = fresh_database(args.server, scratch / "data")
    args.database = make_url(url).database
    db = connect(load_settings(database_url=url, data_dir=scratch / "data"))
    try:
        migrate.upgrade(db)
        seconds = load(db, records, args.structures)
        print(
            f"loaded {args.structures:,} structures in {seconds:.0f} s, then ANALYZE; "
            f"PostgreSQL {db.server_version()}; {args.seconds:g} s per run"
        )
        results = asyncio.run(run_all(url, db, scratch, args))
    finally:
        db.dispose()
        drop_database(url)
        shutil.rmtree(scratch, ignore_errors=True)  # the servers' logs; a failure quotes them
    report(results, args)


if __name__ == "__main__":
    main()
