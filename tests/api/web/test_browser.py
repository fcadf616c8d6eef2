"""The explorer in a real browser (headless Debian chromium): the pages work, and the browser
asks nothing of any host but the server (the `page` fixture fails the test otherwise)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.api import oracle
from tests.api.conftest import RELEASE, Api
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


# chemiscope draws the map with plotly: its plot element (in chemiscope's shadow DOM) holds the
# traces it drew (trace 0: the points), and its axes turn data coordinates into pixels
MAP_COUNTS = """() => {
  const plot = window.crystaldbMap.visualizer.map._plot;
  const drawn = plot.data[0];
  return {
    dataset: window.crystaldbMap.dataset.structures.length,
    drawn: drawn.x.filter((x, i) => Number.isFinite(x) && Number.isFinite(drawn.y[i])).length,
  };
}"""
MAP_LONELY_POINT = """() => {
  // the point farthest from every other (not the first, marked as selected at start), away
  // from the plot's edges where chemiscope's buttons sit: where it is on the screen
  const plot = window.crystaldbMap.visualizer.map._plot;
  const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis;
  const box = plot.getBoundingClientRect();
  const trace = plot.data[0];
  const at = trace.x.map((x, i) => [xa._offset + xa.l2p(x), ya._offset + ya.l2p(trace.y[i])]);
  const inside = ([x, y]) =>
    x > xa._offset + 40 && x < xa._offset + xa._length - 40 &&
    y > ya._offset + 40 && y < ya._offset + ya._length - 40;
  let best = null;
  at.forEach(([x, y], i) => {
    if (i === 0 || !inside([x, y])) return;
    const gap = Math.min(...at.map(([u, v], j) => (j === i ? Infinity : Math.hypot(u - x, v - y))));
    if (best === null || gap > best.gap) best = {index: i, x: box.left + x, y: box.top + y, gap};
  });
  return best;
}"""


def test_the_map_draws_every_row_and_a_click_opens_the_structure(
    krr_site: KrrSite, krr_map: int, krr_page: Page
) -> None:
    from crystaldb.schema import KernelMatrix

    tab, seen = krr_page
    with krr_site.db.session() as session:
        rows = session.get_one(KernelMatrix, krr_site.kernel_id).row_ids
    tab.goto(f"{krr_site.url}/map?embedding={krr_map}")
    tab.wait_for_selector("#kernel-map[data-points]", timeout=30000)
    tab.wait_for_function("window.crystaldbMap.visualizer.map._plot._fullLayout?.xaxis?._length")
    assert tab.evaluate(MAP_COUNTS) == {"dataset": len(rows), "drawn": len(rows)}
    box = tab.locator("#chemiscope-map").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 300  # drawn, not hidden
    assert tab.locator("#chemiscope-structure canvas").count() >= 1  # the first crystal in 3D
    assert tab.locator("#map-selected").get_attribute("data-structure") == str(rows[0])
    _shot(tab, "map")
    target = tab.evaluate(MAP_LONELY_POINT)
    assert target is not None and target["gap"] > 8  # pixels to the next point: a clean click
    sid = rows[target["index"]]
    tab.mouse.move(target["x"], target["y"])
    tab.mouse.click(target["x"], target["y"])
    tab.wait_for_selector(f'#map-selected[data-structure="{sid}"]', timeout=15000)
    assert f"structure {sid}" in tab.locator("#map-selected").inner_text()
    tab.click("#map-selected-link")
    tab.wait_for_url(f"{krr_site.url}/structures/{sid}")
    assert tab.locator("h1").inner_text()  # the structure page rendered
    assert not seen.failed, seen.failed
    assert not seen.console_errors, seen.console_errors


LOADED = "document.getElementById('viewer').dataset.loaded"  # set by structure-view.js
SORTED = """
query($sort: StructureSort!) { structures(sort: $sort, first: 1000) { edges { node { id } } } }
"""


def test_the_structure_page_draws_the_cell_in_3d(api: Api, page: Page) -> None:
    tab, seen = page
    sid = api.graph_ids[-1]  # a structure with a stored quotient graph
    row = api.rows[sid]
    tab.goto(f"{api.url}/structures/{sid}")
    # software WebGL (SwiftShader: no GPU here) takes 10-20 s to set up on two busy cores
    tab.wait_for_function(f"{LOADED} === 'guess'", timeout=120_000)
    canvas = tab.locator("#viewer-structure canvas").first
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 200  # drawn, not hidden
    assert "chemiscope's guess" in tab.locator("#bonds-source").inner_text()
    tab.select_option("#bonds", "radius:3.0")
    tab.wait_for_function(f"{LOADED} === 'radius:3.0'", timeout=120_000)
    assert "stored quotient graph radius:3.0" in tab.locator("#bonds-source").inner_text()
    assert tab.locator("#viewer-structure canvas").count() >= 1
    labels = tab.locator("#labels tbody tr").all_inner_texts()
    assert len(labels) == sum(len(values) for values in row.gaps.values())
    predictions = tab.locator("#predictions tbody").inner_text()
    assert all(model in predictions for model in row.predictions)
    assert tab.locator("#viewer-problems").is_hidden()
    assert not seen.failed, seen.failed
    assert not seen.console_errors, seen.console_errors
    _shot(tab, "structure")


def test_sorting_by_band_gap_orders_and_pages_as_graphql_does(api: Api, page: Page) -> None:
    tab, _ = page
    tab.goto(f"{api.url}/?first=7")
    for sort, order in (("BAND_GAP_ASC", "ascending"), ("BAND_GAP_DESC", "descending")):
        tab.click("#results thead a[data-column=gap]")  # by id, then ascending gap: toggles
        tab.wait_for_selector(f"#results th[aria-sort={order}] a[data-column=gap]")
        edges = api.data(SORTED, sort=sort)["structures"]["edges"]
        expected = [int(e["node"]["id"]) for e in edges]
        seen: list[int] = []
        for _ in range(len(api.rows)):
            seen += _table_ids(tab)
            if tab.locator("#next-page").count() == 0:
                break
            tab.click("#next-page")
            tab.wait_for_selector("#results")
        assert seen == expected, sort
        assert tab.locator("#count strong").inner_text() == str(len(expected))


def test_a_release_page_shows_its_figures(api: Api, page: Page) -> None:
    tab, seen = page
    name, version = RELEASE
    tab.goto(f"{api.url}/releases")
    tab.click(f"#releases a[href='/releases/{name}/{version}']")
    tab.wait_for_url(f"{api.url}/releases/{name}/{version}")
    images = tab.locator("#plots img")
    assert images.count() == 2
    for index in range(images.count()):
        images.nth(index).scroll_into_view_if_needed()
        tab.wait_for_function(
            "img => img.complete && img.naturalWidth === 900",
            arg=images.nth(index).element_handle(),
        )
    assert not seen.failed, seen.failed
    tab.evaluate("window.scrollTo(0, 0)")
    _shot(tab, "release")


def test_the_search_page_screenshot_with_sortable_columns(api: Api, page: Page) -> None:
    tab, _ = page
    tab.goto(f"{api.url}/?all=O&gap_min=1&sort=-gap&first=20")
    tab.wait_for_selector("#results th[aria-sort=descending]")
    _shot(tab, "search")
