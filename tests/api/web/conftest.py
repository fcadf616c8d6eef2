"""A headless Debian chromium driven by Playwright, recording every request it makes; the
browser tests skip, saying why, where chromium or playwright is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Api

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


@pytest.fixture
def page(browser: Any, api: Api) -> Iterator[tuple[Any, Recorder]]:
    """A fresh page; at the end, the test fails on any request to another host."""
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
    assert not seen.foreign(api.url), f"requests to other hosts: {seen.foreign(api.url)}"
