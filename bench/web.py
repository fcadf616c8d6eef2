"""Web explorer page loads against the GraphQL queries the pages run, at COD screening scale.

    python bench/web.py [--structures 50000] [--repeat 30] [--browser-repeat 5] [--server URL]

The database is bench/api.py's (its `load`: --structures copies of the real COD and COF
structures, one PBE gap and one COD id each, then ANALYZE), served by the same app in a
uvicorn thread. Each page is fetched over HTTP (httpx) --repeat times after 3 untimed, and
beside it, as the baseline measured in the same process, the GraphQL query the page runs
(crystaldb.api.web.queries, same variables) POSTed to /graphql. The pages: the search page
with no filter (the first 50 structures), the window filter (band gap 1-3 eV, C and H,
space group 14; 50 rows), the whole table sorted by band gap, descending (50 rows), and a
structure page with its 3D view's dataset. Where Debian's chromium and Playwright are
present, each page is also loaded --browser-repeat times in headless chromium, from
navigation to the `load` event (the HTML, CSS and scripts; for the structure page also
until chemiscope has drawn the cell). Goal (issue 15): a page load under 1 s for a 50-row
result on 300,000 structures. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from api import Server, load, p99, real_records, timings  # bench/api.py
from common import drop_database, fresh_database  # bench/common.py

from crystaldb.api.web import form, queries
from crystaldb.platform.database import connect
from crystaldb.platform.settings import load_settings
from crystaldb.schema import migrate

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
WINDOW = {"all": "C, H", "gap_min": "1", "gap_max": "3", "spacegroup": "14"}
SEARCHES = {  # name -> the search form's fields (50 rows a page, the form's default)
    "search: no filter, page 1": {},
    "search: gap+elements+sg window": WINDOW,
    "search: all, sorted by gap desc": {"sort": "-gap"},
}
STRUCTURE_ID = 1000


def get(client: httpx.Client, url: str, **params: str) -> str:
    """A page that must load (a search page with its 50 rows)."""
    response = client.get(url, params=params)
    if response.status_code != 200:
        why = re.findall(r"<li>(.*?)</li>", response.text)[:1] or [response.text[:300]]
        raise RuntimeError(f"{url} {params}: {response.status_code} {why[0]}")
    if url.endswith("/"):
        rows = response.text.count('<tr><td><a href="/structures/')
        if rows != 50:
            raise RuntimeError(f"{url} {params}: {rows} rows, not 50")
    return response.text


def post(client: httpx.Client, url: str, query: str, variables: dict[str, Any]) -> None:
    """A GraphQL query that must succeed."""
    body = client.post(url, json={"query": query, "variables": variables}).json()
    if "errors" in body:
        raise RuntimeError(f"{query[:60]}...: {body['errors']}")


Case = tuple[str, Callable[[], Any], Callable[[], Any], str]  # name, page, baseline, path


def cases(client: httpx.Client, base: str) -> list[Case]:
    """Each page with the GraphQL query it runs, and its path for the browser."""
    graphql = f"{base}/graphql"
    found: list[Case] = []
    for name, fields in SEARCHES.items():
        variables = form.read(fields).variables
        path = "/?" + "&".join(f"{k}={v}" for k, v in fields.items())
        found.append(
            (
                name,
                lambda f=fields: get(client, f"{base}/", **f),
                lambda v=variables: post(client, graphql, queries.SEARCH, v),
                path,
            )
        )
    sid = str(STRUCTURE_ID)
    found.append(
        (
            "structure page",
            lambda: get(client, f"{base}/structures/{sid}"),
            lambda: post(client, graphql, queries.STRUCTURE, {"id": sid}),
            f"/structures/{sid}",
        )
    )
    view = {"id": sid, "recipe": "", "withGraph": False}
    found.append(
        (
            "structure 3D view dataset",
            lambda: get(client, f"{base}/structures/{sid}/view.json"),
            lambda: post(client, graphql, queries.VIEW, view),
            "",
        )
    )
    return found


def browser_loads(base: str, paths: list[str], repeat: int) -> dict[str, list[float]]:
    """Milliseconds from navigation to `load` in headless chromium (and, on the structure
    page, to chemiscope's drawn cell), each path `repeat` times after one untimed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed: no browser timings")
        return {}
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        print("no chromium on PATH: no browser timings")
        return {}
    drawn = "document.getElementById('viewer').dataset.loaded === 'guess'"
    out: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        for path in paths:
            times = []
            for attempt in range(repeat + 1):
                start = time.perf_counter()
                tab.goto(base + path, wait_until="load")
                if path.startswith("/structures/"):
                    tab.wait_for_function(drawn, timeout=120_000)
                if attempt:  # the first fills the browser's cache, as a user's first visit does
                    times.append((time.perf_counter() - start) * 1000)
            out[path] = times
        browser.close()
    return out


def main() -> None:
    """Fill, serve, time, drop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=50_000, help="rows to load")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    parser.add_argument("--browser-repeat", type=int, default=5, help="timed browser loads")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"{os.cpu_count()} CPUs  Python {platform.python_version()}  httpx {httpx.__version__}"
    )
    records = real_records()
    scratch = Path(tempfile.mkdtemp(prefix="crystaldb-bench-web-"))
    url = fresh_database(args.server, scratch / "data")
    db = connect(load_settings(database_url=url, data_dir=scratch / "data"))
    rows: list[tuple[str, list[float], list[float]]] = []
    loads: dict[str, list[float]] = {}
    try:
        migrate.upgrade(db)
        seconds = load(db, records, args.structures)
        print(f"loaded {args.structures:,} structures in {seconds:.1f} s; {db.server_version()}")
        with Server(db) as graphql, httpx.Client(timeout=60) as client:
            base = graphql.removesuffix("/graphql")
            found = cases(client, base)
            failed: set[str] = set()
            for name, page, baseline, path in found:
                try:
                    rows.append((name, timings(page, args.repeat), timings(baseline, args.repeat)))
                except RuntimeError as exc:  # the API's timeout: reported, not a crash
                    print(f"{name}: failed: {str(exc)[:300]}")
                    failed.add(path)
            paths = [path for *_, path in found if path and path not in failed]
            loads = browser_loads(base, paths, args.browser_repeat) if args.browser_repeat else {}
    finally:
        db.dispose()
        drop_database(url)
        shutil.rmtree(scratch, ignore_errors=True)
    report(rows, loads, [(name, path) for name, *_, path in found])


def report(
    rows: list[tuple[str, list[float], list[float]]],
    loads: dict[str, list[float]],
    paths: list[tuple[str, str]],
) -> None:
    """Medians and p99 of the pages and their GraphQL queries, their ratio, browser loads."""
    print(
        f"\n{'page':<34}{'page med':>9}{'page p99':>9}{'GQL med':>9}{'GQL p99':>9}"
        f"{'page/GQL':>9}{'browser med':>12}{'browser max':>12}"
    )
    by_name = dict(paths)
    for name, page, gql in rows:
        med, gql_med = statistics.median(page), statistics.median(gql)
        browser = loads.get(by_name.get(name, ""), [])
        shown = f"{statistics.median(browser):12.0f}{max(browser):12.0f}" if browser else ""
        print(
            f"{name:<34}{med:9.1f}{p99(page):9.1f}{gql_med:9.1f}{p99(gql):9.1f}"
            f"{med / gql_med:9.2f}{shown}"
        )
    print(
        "(milliseconds; page: the HTML (or JSON) over HTTP; GQL: the query the page runs, over "
        "HTTP; browser: navigation to `load` in headless chromium, cache warm; goal: < 1 s)"
    )


if __name__ == "__main__":
    main()
