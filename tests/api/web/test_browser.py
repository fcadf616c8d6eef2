"""The explorer in a real browser (headless Debian chromium): the pages work, and the browser
asks nothing of any host but the server (the `page` fixture fails the test otherwise)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.api import oracle
from tests.api.conftest import Api
from tests.api.web.conftest import KrrSite, Recorder
from tests.api.web.test_predict_form import CIF, mutation

pytestmark = pytest.mark.slow
SHOTS = Path(__file__).parents[3] / "docs" / "img"
Page = tuple[Any, Recorder]


def _shot(page: Any, name: str) -> None:
    """A screenshot for docs/howto/web.md, when SCREENSHOTS=1 (the docs keep the last ones)."""
    if os.environ.get("SCREENSHOTS") == "1":
        page.screenshot(path=str(SHOTS / f"web-{name}.png"), full_page=False)


def _table_ids(page: Any) -> list[int]:
    """The ids of the results table's rows."""
    return [int(t) for t in page.locator("#results tbody tr td:first-child a").all_inner_texts()]


def test_a_search_by_elements_and_band_gap_shows_the_oracles_rows(api: Api, page: Page) -> None:
    tab, _ = page
    tab.goto(f"{api.url}/")
    tab.fill("input[name=all]", "O")
    tab.fill("input[name=gap_min]", "1")
    tab.fill("input[name=gap_max]", "4.5")
    tab.fill("input[name=first]", "500")
    tab.select_option("select[name=method]", "PBE")
    tab.click("button[type=submit]")
    tab.wait_for_selector("#count")
    spec = {"elements": {"hasAll": ["O"]}, "bandGap": {"gte": 1.0, "lte": 4.5}}
    expected = sorted(oracle.select(api.rows, spec))
    assert expected and _table_ids(tab) == expected
    assert tab.locator("#count strong").inner_text() == str(len(expected))
    _shot(tab, "search")


def test_paging_walks_every_page_once(api: Api, page: Page) -> None:
    tab, _ = page
    tab.goto(f"{api.url}/?first=7")
    seen: list[int] = []
    for _ in range(len(api.rows)):
        seen += _table_ids(tab)
        if tab.locator("#next-page").count() == 0:
            break
        tab.click("#next-page")
        tab.wait_for_selector("#results")
    assert seen == sorted(api.rows)


def test_a_bad_symbol_shows_a_message(api: Api, page: Page) -> None:
    tab, _ = page
    tab.goto(f"{api.url}/")
    tab.fill("input[name=any]", "Qq")
    tab.click("button[type=submit]")
    assert "Qq" in tab.locator(".problems").inner_text()


def test_the_structure_page_lists_labels_and_predictions(api: Api, page: Page) -> None:
    tab, _ = page
    row = next(r for r in api.rows.values() if r.predictions and len(r.gaps) > 1)
    tab.goto(f"{api.url}/structures/{row.id}")
    labels = tab.locator("#labels tbody tr").all_inner_texts()
    assert len(labels) == sum(len(values) for values in row.gaps.values())
    assert {f for f in row.gaps} <= {line.split("\t")[2].strip() for line in labels}
    predictions = tab.locator("#predictions tbody").inner_text()
    for model in row.predictions:
        assert model in predictions
    _shot(tab, "structure")


def test_graphiql_renders_and_runs_a_query_offline(api: Api, page: Page) -> None:
    tab, seen = page
    tab.goto(f"{api.url}/graphql")
    tab.wait_for_selector(".graphiql-container", timeout=15000)
    tab.click(".graphiql-execute-button")
    tab.wait_for_function(
        "document.querySelector('.result-window') &&"
        " document.querySelector('.result-window').innerText.includes('totalCount')",
        timeout=15000,
    )
    assert not seen.failed, seen.failed
    assert not seen.console_errors, seen.console_errors
    _shot(tab, "graphiql")


def test_the_upload_form_shows_the_mutations_numbers(krr_site: KrrSite, krr_page: Page) -> None:
    tab, seen = krr_page
    tab.goto(f"{krr_site.url}/predict")
    tab.set_input_files("#file", str(CIF))
    tab.wait_for_function(f"document.getElementById('file').dataset.loaded === '{CIF.name}'")
    tab.select_option("select[name=models]", list(krr_site.models))
    tab.fill("input[name=token]", krr_site.token)
    tab.click("button[type=submit]")
    tab.wait_for_selector("#result")
    shown = tab.locator("#predictions tbody td:first-child").all_inner_texts()  # form order
    assert sorted(shown) == sorted(krr_site.models)
    expected = mutation(krr_site, shown)
    values = tab.locator("#predictions td.value").all_inner_texts()
    assert values == [f"{p['value']:.4f}" for p in expected["predictions"]]
    assert tab.locator("#mean").inner_text() == f"{expected['mean']:.4f}"
    assert tab.locator("#spread").inner_text() == f"{expected['spread']:.4f}"
    assert not seen.console_errors, seen.console_errors
    _shot(tab, "predict")


def test_the_map_draws_every_row_and_a_click_opens_the_structure(
    krr_site: KrrSite, krr_map: int, krr_page: Page
) -> None:
    from crystaldb.schema import KernelMatrix

    tab, seen = krr_page
    with krr_site.db.session() as session:
        rows = session.get_one(KernelMatrix, krr_site.kernel_id).row_ids
    tab.goto(f"{krr_site.url}/map?embedding={krr_map}")
    circles = tab.locator("#kernel-map g.points circle")
    assert circles.count() == len(rows)
    box = tab.locator("#kernel-map").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 300  # drawn, not hidden
    _shot(tab, "map")
    target = circles.last  # drawn last, so never under another point
    sid = target.get_attribute("data-structure")
    assert sid is not None and int(sid) in rows
    target.click()
    tab.wait_for_url(f"{krr_site.url}/structures/{sid}")
    assert tab.locator("h1").inner_text()  # the structure page rendered
    assert not seen.console_errors, seen.console_errors
