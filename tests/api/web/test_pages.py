"""The explorer's routes over plain HTTP: what they show, and a clear message (never a 500)
for bad input."""

from __future__ import annotations

import re

from tests.api import oracle
from tests.api.conftest import Api
from tests.api.web.conftest import Recorder


def _ids(html: str) -> list[int]:
    """The structure ids linked from a results table."""
    return [int(i) for i in re.findall(r'<a href="/structures/(\d+)">', html)]


def test_the_search_page_lists_what_the_oracle_selects(api: Api) -> None:
    response = api.client.get(f"{api.url}/", params={"all": "O", "gap_min": "1", "first": "500"})
    assert response.status_code == 200
    expected = oracle.select(api.rows, {"elements": {"hasAll": ["O"]}, "bandGap": {"gte": 1.0}})
    assert expected
    assert _ids(response.text) == sorted(expected)
    assert f"<strong>{len(expected)}</strong> structures match" in response.text


def test_a_band_gap_range_on_a_models_predictions(api: Api) -> None:
    params = {"gap_min": "2", "gap_max": "4", "method": "model:linear-density", "first": "500"}
    response = api.client.get(f"{api.url}/", params=params)
    assert response.status_code == 200
    spec = {"bandGap": {"gte": 2.0, "lte": 4.0, "model": "linear-density"}}
    expected = oracle.select(api.rows, spec)
    assert expected and _ids(response.text) == sorted(expected)


def test_the_empty_form_counts_every_structure(api: Api) -> None:
    response = api.client.get(f"{api.url}/")
    assert response.status_code == 200
    assert f"<strong>{len(api.rows)}</strong> structures match" in response.text
    assert 'name="all"' in response.text


def test_a_bad_element_symbol_is_a_message_on_the_page(api: Api) -> None:
    response = api.client.get(f"{api.url}/", params={"all": "Xx"})
    assert response.status_code == 400
    assert "could not run" in response.text
    assert "Xx" in response.text
    assert 'value="Xx"' in response.text  # the form keeps what was typed


def test_a_bad_number_is_a_message_on_the_page(api: Api) -> None:
    response = api.client.get(f"{api.url}/", params={"gap_min": "one", "nsites_max": "2.5"})
    assert response.status_code == 400
    assert "band gap: &#39;one&#39; is not a number" in response.text
    assert "number of sites: &#39;2.5&#39; is not a whole number" in response.text


def test_a_foreign_cursor_is_a_message_on_the_page(api: Api) -> None:
    response = api.client.get(f"{api.url}/", params={"after": "garbage"})
    assert response.status_code == 400
    assert "not a cursor from this API" in response.text


def test_a_structure_page_shows_its_labels_ids_and_downloads(api: Api) -> None:
    row = next(r for r in api.rows.values() if r.ids and any(d == "cod" for d, _ in r.ids))
    response = api.client.get(f"{api.url}/structures/{row.id}")
    assert response.status_code == 200
    html = response.text
    assert row.columns["reduced_formula"] in html
    cod = next(i for d, i in row.ids if d == "cod")
    assert f"https://www.crystallography.net/cod/{cod}.html" in html
    for functional in row.gaps:
        assert f"<td>{functional}</td>" in html
    for kind in ("cif", "extxyz", "poscar"):
        assert f"/structures/{row.id}/download/{kind}" in html


def test_unknown_and_unreadable_ids_are_a_404_page(api: Api) -> None:
    for sid in (str(max(api.rows) + 1000), "abc"):
        response = api.client.get(f"{api.url}/structures/{sid}")
        assert response.status_code == 404
        assert f"No structure {sid}" in response.text


def test_downloads_are_the_cell_in_each_format(api: Api) -> None:
    sid = min(api.rows)
    cif = api.client.get(f"{api.url}/structures/{sid}/download/cif")
    assert cif.status_code == 200 and "_cell_length_a" in cif.text
    assert "attachment" in cif.headers["content-disposition"]
    xyz = api.client.get(f"{api.url}/structures/{sid}/download/extxyz")
    assert xyz.status_code == 200 and "Lattice=" in xyz.text
    poscar = api.client.get(f"{api.url}/structures/{sid}/download/poscar")
    assert poscar.status_code == 200 and "Direct" in poscar.text
    assert api.client.get(f"{api.url}/structures/{sid}/download/pdf").status_code == 404


def test_graphiql_loads_nothing_from_another_host(api: Api) -> None:
    response = api.client.get(f"{api.url}/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "unpkg" not in response.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert sources and all(s.startswith("/") or s.startswith("data:") for s in sources)
    for source in sources:
        if source.startswith("/static/"):
            assert api.client.get(f"{api.url}{source}").status_code == 200, source


def test_the_recorder_flags_requests_to_other_hosts() -> None:
    seen = Recorder()
    base = "http://127.0.0.1:8000"
    seen.urls += [f"{base}/static/style.css", "data:,", "https://unpkg.com/react.js"]
    seen.urls += ["http://127.0.0.1:8000.evil.org/x"]
    assert seen.foreign(base) == ["https://unpkg.com/react.js", "http://127.0.0.1:8000.evil.org/x"]
