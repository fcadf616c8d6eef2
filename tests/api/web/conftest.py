"""A headless Debian chromium driven by Playwright, recording every request it makes; the
browser tests skip, saying why, where chromium or playwright is missing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crystaldb.api.app import create_app
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.embeddings import embed_kernel
from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import train_krr
from crystaldb.jobs.load import write_chunk
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import select_structures
from crystaldb.release.create import create_release
from crystaldb.schema.tokens import create_token
from tests.api.conftest import Api, serving
from tests.conftest import DatabaseFactory
from tests.jarvis import OPTB88, jarvis_records
from tests.sampledb import open_batch

__all__ = ["Api"]


def _chromium() -> str | None:
    """The chromium executable (Debian's; Playwright's own browsers cannot be downloaded)."""
    wanted = os.environ.get("CRYSTALDB_CHROMIUM")
    if wanted:
        return wanted if os.access(wanted, os.X_OK) else None
    return next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for a test module."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    executable = _chromium()
    if executable is None:
        pytest.skip(
            "no chromium executable on PATH or at CRYSTALDB_CHROMIUM (apt-get install chromium):"
            " browser tests skipped"
        )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


class Recorder:
    """Every URL the page requested, and every request that failed."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.failed: list[str] = []
        self.console_errors: list[str] = []

    def foreign(self, base: str) -> list[str]:
        """Requests to any host but the server (data: URLs stay inside the page)."""
        return [u for u in self.urls if not (u.startswith(base + "/") or u.startswith("data:"))]


@contextmanager
def _tab(browser: Any, base: str) -> Iterator[tuple[Any, Recorder]]:
    """A fresh page; at the end, the test fails on any request to a host but `base`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    seen = Recorder()
    opened.on("request", lambda request: seen.urls.append(request.url))
    opened.on("requestfailed", lambda request: seen.failed.append(request.url))
    opened.on(
        "console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None
    )
    yield opened, seen
    context.close()
    assert not seen.foreign(base), f"requests to other hosts: {seen.foreign(base)}"


@pytest.fixture
def page(browser: Any, api: Api) -> Iterator[tuple[Any, Recorder]]:
    """A fresh page on the `api` server."""
    with _tab(browser, api.url) as opened:
        yield opened


@dataclass(frozen=True)
class KrrSite:
    """A server over the JARVIS sample with a SOAP kernel, two KRR models and a live token."""

    url: str
    db: Database
    settings: Settings
    kernel_id: int
    models: tuple[str, ...]
    token: str


@pytest.fixture(scope="package")
def krr_site(databases: DatabaseFactory) -> Iterator[KrrSite]:
    """Built once for the package, in a database of its own (the `api` one has no KRR)."""
    data_dir = Path(tempfile.mkdtemp(prefix="crystaldb-test-web-"))
    settings, db = databases.migrated("crystaldb_web", data_dir)
    write_chunk(db, open_batch(db), jarvis_records(), labels=OPTB88)
    create_release(db, "jarvis", "1.0", label="band_gap:OptB88vdW", split="ordered:40,10")
    ids = list(select_structures(db, release="jarvis").structure_ids)
    hypers = SoapHypers(n_max=4, l_max=3)
    kernel = build_kernel(db, settings, ids, hypers=hypers, workers=1)
    names = ("krr-web-sharp", "krr-web-smooth")
    for name, alpha in zip(names, (1e-3, 1e-1), strict=True):
        train_krr(db, settings, kernel.kernel_id, "jarvis", grid=(alpha,), folds=3, name=name)
    token = create_token(db, "web-test")
    with serving(create_app(db, settings)) as url:
        yield KrrSite(url, db, settings, kernel.kernel_id, names, token)
    db.dispose()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def krr_map(krr_site: KrrSite) -> int:
    """A kernel PCA map of the site's kernel, embedded once: its id."""
    return embed_kernel(krr_site.db, krr_site.kernel_id).embedding_id


@pytest.fixture
def krr_page(browser: Any, krr_site: KrrSite) -> Iterator[tuple[Any, Recorder]]:
    """A fresh page on the `krr_site` server."""
    with _tab(browser, krr_site.url) as opened:
        yield opened
