"""The explorer's routes over plain HTTP: what they show, and a clear message (never a 500)
for bad input."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.api import oracle
from tests.api.conftest import RELEASE, Api
from tests.api.web.conftest import KrrSite, Recorder


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


def _ids_in_order(html: str) -> list[int]:
    """The results table's ids, in the table's order."""
    return _ids(html)


def test_a_sorted_search_pages_in_the_oracles_order(api: Api) -> None:
    expected = [
        r.id
        for r in sorted(
            api.rows.values(), key=lambda r: (r.columns["reduced_formula"], r.id), reverse=True
        )
    ]
    seen: list[int] = []
    url = f"{api.url}/?sort=-formula&first=40"
    for _ in range(len(api.rows)):
        response = api.client.get(url)
        assert response.status_code == 200
        seen += _ids_in_order(response.text)
        following = re.search(r'<a href="([^"]+)" id="next-page"', response.text)
        if following is None:
            break
        url = api.url + following.group(1).replace("&amp;", "&")
        assert "sort=-formula" in url  # the next page keeps the sort
    assert seen == expected


def test_column_headers_toggle_the_order_and_start_from_the_first_page(api: Api) -> None:
    html = api.client.get(f"{api.url}/", params={"sort": "nsites", "all": "O"}).text
    links = dict(re.findall(r'<a href="([^"]+)" class="sort" data-column="(\w+)"', html))
    by_column = {column: url.replace("&amp;", "&") for url, column in links.items()}
    assert "sort=-nsites" in by_column["nsites"]  # sorted ascending: the header goes descending
    assert "sort=gap" in by_column["gap"] and "all=O" in by_column["gap"]
    assert all("after=" not in url for url in by_column.values())
    assert 'aria-sort="ascending"' in html


def test_a_band_gap_sort_follows_the_chosen_model(api: Api) -> None:
    model = "linear-density-nsites"
    params = {"sort": "-gap", "method": f"model:{model}", "first": "500"}
    response = api.client.get(f"{api.url}/", params=params)
    assert response.status_code == 200
    keyed = [(min(r.predictions[model]), r.id) for r in api.rows.values() if r.predictions[model]]
    assert _ids_in_order(response.text) == [i for _, i in sorted(keyed, reverse=True)]
    assert f"with a band gap from model {model}" in response.text


def test_an_unknown_sort_is_a_message_on_the_page(api: Api) -> None:
    response = api.client.get(f"{api.url}/", params={"sort": "density"})
    assert response.status_code == 400
    assert "sort: &#39;density&#39; is not one of id, formula, spacegroup, nsites, gap" in (
        response.text
    )


def test_the_view_dataset_bonds_are_the_stored_graph_edges(api: Api) -> None:
    from sqlalchemy import select

    from crystaldb.schema import GraphRecipe, QuotientGraph

    sid = api.graph_ids[-1]
    with api.db.session() as session:
        graph = session.execute(
            select(QuotientGraph)
            .join(GraphRecipe, GraphRecipe.id == QuotientGraph.recipe_id)
            .where(QuotientGraph.structure_id == sid, GraphRecipe.name == "radius:3.0")
        ).scalar_one()
        src, dst = list(graph.edge_src), list(graph.edge_dst)
        shifts = [tuple(graph.edge_images[3 * e : 3 * e + 3]) for e in range(graph.num_edges)]
        lengths = list(graph.edge_lengths)
    guess = api.client.get(f"{api.url}/structures/{sid}/view.json").json()
    (plain,) = guess["dataset"]["structures"]
    assert plain["size"] == api.rows[sid].columns["nsites"] and "bonds" not in plain
    assert len(plain["cell"]) == 9 and "guess" in guess["bonds"]
    bonded = api.client.get(f"{api.url}/structures/{sid}/view.json?graph=radius:3.0").json()
    (structure,) = bonded["dataset"]["structures"]
    images = {(d, s) for d, s in zip(dst, shifts, strict=True) if any(s)}
    assert structure["size"] == plain["size"] + len(images) == plain["size"] + bonded["images"]
    inside = {
        (min(a, b), max(a, b)) for a, b, s in zip(src, dst, shifts, strict=True) if not any(s)
    }
    crossing = {(a, b, s) for a, b, s in zip(src, dst, shifts, strict=True) if any(s)}
    assert len(structure["bonds"]) == len(inside) + len(crossing) > 0
    xyz = list(zip(structure["x"], structure["y"], structure["z"], strict=True))
    for i, j, order in structure["bonds"]:
        drawn = sum((p - q) ** 2 for p, q in zip(xyz[i], xyz[j], strict=True)) ** 0.5
        assert order == 1 and min(abs(drawn - x) for x in lengths) < 1e-4
    assert f"the {len(src)} edges of the stored quotient graph radius:3.0" in bonded["bonds"]


def test_the_view_dataset_refuses_what_is_not_there(api: Api) -> None:
    sid = api.graph_ids[0]
    no_graph = api.client.get(f"{api.url}/structures/{sid}/view.json?graph=radius:2.0")
    assert no_graph.status_code == 404
    assert no_graph.json()["problems"] == [
        f"structure {sid} has no stored quotient graph 'radius:2.0'"
    ]
    unknown = api.client.get(f"{api.url}/structures/{sid}/view.json?graph=radius:9.9")
    assert unknown.status_code == 400 and "radius:3.0" in unknown.json()["problems"][0]
    nowhere = api.client.get(f"{api.url}/structures/{max(api.rows) + 1000}/view.json")
    assert nowhere.status_code == 404 and "no structure" in nowhere.json()["problems"][0]


def test_the_structure_page_offers_its_stored_graphs_as_bonds(api: Api) -> None:
    html = api.client.get(f"{api.url}/structures/{api.graph_ids[0]}").text
    assert '<option value="radius:3.0">stored quotient graph radius:3.0' in html
    assert '<script src="/static/chemiscope/chemiscope.min.js" defer></script>' in html
    for source in re.findall(r'<script src="([^"]+)"', html):
        assert api.client.get(f"{api.url}{source}").status_code == 200, source


def test_a_release_page_shows_the_exports_figures_and_summary(api: Api, tmp_path: Path) -> None:
    from crystaldb.query.selection import find_release
    from crystaldb.release.export import export_release
    from crystaldb.release.load import load_release

    name, version = RELEASE
    page = api.client.get(f"{api.url}/releases/{name}/{version}")
    assert page.status_code == 200
    members = sum(f"{name}:{version}" in r.releases for r in api.rows.values())
    assert f"<tr><th>members</th><td>{members}</td></tr>" in page.text
    exported = export_release(
        load_release(api.db, find_release(api.db, name, version)), "extxyz", tmp_path / "out"
    )
    figures = [p for p in exported if p.suffix == ".png"]
    assert {p.name for p in figures} == {"elements.png", "spacegroups.png"}  # no frozen label
    for path in figures:
        src = f"/releases/{name}/{version}/plots/{path.name}"
        assert f'src="{src}"' in page.text
        shown = api.client.get(f"{api.url}{src}")
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
        assert shown.content == path.read_bytes()  # the export's figure, byte for byte
    listing = api.client.get(f"{api.url}/releases").text
    assert f'href="/releases/{name}/{version}"' in listing
    structure = next(r for r in api.rows.values() if r.releases)
    assert (
        f'href="/releases/{name}/{version}"'
        in api.client.get(f"{api.url}/structures/{structure.id}").text
    )


def test_missing_releases_figures_and_models_are_404_pages(api: Api) -> None:
    name, version = RELEASE
    cases = {
        f"/releases/{name}/9.9": "No release api-test:9.9",
        f"/releases/nope/{version}/plots/elements.png": "No release nope:1.0",
        f"/releases/{name}/{version}/plots/band_gap_histogram.png": "has no figure",
        "/models/nope": "No model nope",
        "/models/linear-density/learning-curve.png": "has no stored learning curve",
    }
    for path, message in cases.items():
        response = api.client.get(f"{api.url}{path}")
        assert response.status_code == 404, path
        assert message in response.text.replace("&#39;", "'"), path
    figure = api.client.get(f"{api.url}/releases/{name}/{version}/plots/spacegroups.png")
    assert (
        "elements.png, spacegroups.png"
        in api.client.get(f"{api.url}/releases/{name}/{version}/plots/x.png").text
        and figure.status_code == 200
    )


def test_a_model_page_shows_its_metrics_and_release(api: Api) -> None:
    response = api.client.get(f"{api.url}/models/linear-density")
    assert response.status_code == 200
    name, version = RELEASE
    assert f'<a href="/releases/{name}/{version}">{name}:{version}</a>' in response.text
    assert "mae_test" in response.text and "None stored" in response.text


def test_a_model_page_shows_the_learning_curve_its_training_stored(krr_site: KrrSite) -> None:
    from crystaldb.platform.store import ArtifactStore, Keys

    name = krr_site.models[0]
    stored = ArtifactStore(krr_site.settings.store_location).get_bytes(Keys.learning_curve(name))
    with httpx.Client(timeout=30) as client:
        page = client.get(f"{krr_site.url}/models/{name}")
        assert page.status_code == 200
        assert f'<img src="/models/{name}/learning-curve.png"' in page.text
        curve = client.get(f"{krr_site.url}/models/{name}/learning-curve.png")
    assert curve.headers["content-type"] == "image/png" and curve.content == stored
