"""structures(filter, sort, first, after) over HTTP, checked against the Python oracle."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.api import oracle
from tests.api.conftest import RELEASE, Api, Row

IDS = "query($f: StructureFilter) { structures(filter: $f, first: 1000) { totalCount edges { node { id } } pageInfo { hasNextPage } } }"  # noqa: E501
PAGE = """
query($f: StructureFilter, $sort: StructureSort!, $first: Int!, $after: String) {
  structures(filter: $f, sort: $sort, first: $first, after: $after) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
MODEL_PAGE = PAGE.replace("$after: String)", "$after: String, $model: String)").replace(
    "after: $after)", "after: $after, bandGapModel: $model)"
)


def selected(api: Api, spec: dict[str, Any]) -> set[int]:
    """Ids the API selects for a filter (the test data fits in one page)."""
    page = api.data(IDS, f=spec)["structures"]
    assert not page["pageInfo"]["hasNextPage"]
    ids = [int(edge["node"]["id"]) for edge in page["edges"]]
    assert len(ids) == len(set(ids)) == page["totalCount"]
    return set(ids)


def _some(api: Api) -> Row:
    """A structure with a space group, a PBE gap and a COD id."""
    return next(
        r
        for r in api.rows.values()
        if r.columns["spacegroup_number"]
        and r.gaps.get("PBE")
        and any(d == "cod" for d, _ in r.ids)
    )


def test_data_is_varied(api: Api) -> None:
    """The fixture holds what the filters need to tell apart."""
    rows = list(api.rows.values())
    assert len(rows) > 100
    assert sum(bool(r.gaps.get("PBE")) for r in rows) > 50
    assert {d for r in rows for d, _ in r.ids} >= {"cod", "curated-cofs"}


@pytest.mark.parametrize(
    "make",
    [
        lambda r: {"bandGap": {"gte": 1.0, "lte": 3.0}},
        lambda r: {"bandGap": {"lte": 2.0, "functional": "HSE06"}},
        lambda r: {"spaceGroup": {"number": r.columns["spacegroup_number"]}},
        lambda r: {"spaceGroup": {"symbol": r.columns["spacegroup_symbol"]}},
        lambda r: {"spaceGroup": {"in": [2, 14, r.columns["spacegroup_number"]]}},
        lambda r: {"crystalSystem": "monoclinic"},
        lambda r: {"elements": {"hasAll": ["C", "H"]}},
        lambda r: {"elements": {"hasAny": ["Cu", "Zn"]}},
        lambda r: {"elements": {"hasOnly": ["C", "H", "N", "O"]}},
        lambda r: {"elements": {"excludes": ["H"]}},
        lambda r: {"nelements": {"gte": 3, "lte": 4}},
        lambda r: {"nsites": {"lte": 50}},
        lambda r: {"reducedFormula": r.columns["reduced_formula"]},
        lambda r: {"anonymousFormula": r.columns["anonymous_formula"]},
        lambda r: {"source": {"database": "curated-cofs"}},
        lambda r: {"source": {"database": "cod", "id": sorted(r.ids)[0][1]}},
        lambda r: {"release": f"{RELEASE[0]}:{RELEASE[1]}"},
        lambda r: {"not": {"crystalSystem": "monoclinic"}},
        lambda r: {"or": [{"nsites": {"lte": 10}}, {"elements": {"hasAll": ["Cu"]}}]},
        lambda r: {"and": [{"nsites": {"gte": 10}}, {"bandGap": {"gte": 2}}]},
        lambda r: {},
    ],
)
def test_each_filter_matches_the_oracle(api: Api, make: Any) -> None:
    """Every filter field selects exactly what the Python oracle selects, and something."""
    spec = make(_some(api))
    expected = oracle.select(api.rows, spec)
    assert expected, f"the test data should make {spec} select something"
    assert selected(api, spec) == expected


def test_random_combinations_match_the_oracle(api: Api) -> None:
    """A hundred seeded random filters, nested and/or/not included."""
    rng = random.Random(20240611)
    rows = list(api.rows.values())
    nonempty = 0
    for _ in range(100):
        spec = oracle.random_filter(rng, rows)
        expected = oracle.select(api.rows, spec)
        nonempty += bool(expected)
        assert selected(api, spec) == expected, spec
    assert nonempty > 50


def _sorted_ids(api: Api, spec: dict[str, Any], sort: str, model: str | None = None) -> list[int]:
    """The oracle's order for a sort: (key, id), band gap = smallest PBE gap (or smallest
    prediction of `model`), formula in code-point order (the test server's C collation), no
    space group as 0."""
    rows = [api.rows[i] for i in oracle.select(api.rows, spec)]
    if sort.startswith("BAND_GAP") and model is not None:
        keyed: list[tuple[Any, int]] = [
            (min(r.predictions[model]), r.id) for r in rows if r.predictions.get(model)
        ]
    elif sort.startswith("BAND_GAP"):
        keyed = [(min(r.gaps["PBE"]), r.id) for r in rows if r.gaps.get("PBE")]
    elif sort.startswith("NSITES"):
        keyed = [(r.columns["nsites"], r.id) for r in rows]
    elif sort.startswith("FORMULA"):
        keyed = [(r.columns["reduced_formula"], r.id) for r in rows]
    elif sort.startswith("SPACE_GROUP"):
        keyed = [(r.columns["spacegroup_number"] or 0, r.id) for r in rows]
    else:
        keyed = [(r.id, r.id) for r in rows]
    return [i for _, i in sorted(keyed, reverse=sort.endswith("DESC"))]


SORTS = ["ID_ASC", "ID_DESC", "NSITES_ASC", "NSITES_DESC", "BAND_GAP_ASC", "BAND_GAP_DESC"]
SORTS += ["FORMULA_ASC", "FORMULA_DESC", "SPACE_GROUP_ASC", "SPACE_GROUP_DESC"]


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("spec", [{}, {"elements": {"hasAll": ["C"]}}])
def test_pages_walk_every_match_once_in_order(api: Api, sort: str, spec: dict[str, Any]) -> None:
    """Following endCursor returns each matching id exactly once, in sort order."""
    assert _walk(api, spec, sort) == _sorted_ids(api, spec, sort)


@pytest.mark.parametrize("sort", ["BAND_GAP_ASC", "BAND_GAP_DESC"])
def test_band_gap_sorts_read_a_models_predictions(api: Api, sort: str) -> None:
    """bandGapModel sorts by the model's predictions (the second model predicts every other
    structure, so the others are left out); an unknown model is an error naming the models."""
    model = "linear-density-nsites"
    expected = _sorted_ids(api, {}, sort, model)
    assert 0 < len(expected) < len(api.rows)
    assert _walk(api, {}, sort, model) == expected
    body = api.post('{ structures(sort: BAND_GAP_ASC, bandGapModel: "nope") { totalCount } }')
    (error,) = body["errors"]
    assert "bandGapModel: no model named 'nope'" in error["message"]
    assert "linear-density" in error["message"]


def _walk(api: Api, spec: dict[str, Any], sort: str, model: str | None = None) -> list[int]:
    """Every page of a sort, following endCursor, checking the count and cursors on the way."""
    query = PAGE if model is None else MODEL_PAGE
    variables = {} if model is None else {"model": model}
    expected = _sorted_ids(api, spec, sort, model)
    seen: list[int] = []
    after = None
    for _ in range(200):
        page = api.data(query, f=spec, sort=sort, first=17, after=after, **variables)
        page = page["structures"]
        assert page["totalCount"] == len(expected)
        seen += [int(edge["node"]["id"]) for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    return seen


def test_structure_fields(api: Api) -> None:
    """One structure with every field, looked up by id and by external id."""
    row = _some(api)
    database, eid = sorted(row.ids)[0]
    query = """
    query($id: ID!, $db: String!, $eid: String!) {
      structure(id: $id) {
        id lattice nsites elements reducedFormula hillFormula anonymousFormula crystalSystem
        volume density sites { species occupancy fractional cartesian }
        spaceGroup { number symbol symprec }
        externalIds { database id }
        labels {
          property value unit
          calculation { functional code codeVersion parameters reference }
        }
        releases { name version split }
        cif extxyz
      }
      structureByExternalId(database: $db, id: $eid) { id }
      missing: structure(id: "999999999") { id }
    }
    """
    data = api.data(query, id=str(row.id), db=database, eid=eid)
    node = data["structure"]
    assert data["structureByExternalId"] == {"id": str(row.id)}
    assert data["missing"] is None
    assert node["nsites"] == row.columns["nsites"] == len(node["sites"])
    assert node["spaceGroup"]["number"] == row.columns["spacegroup_number"]
    assert {(i["database"], i["id"]) for i in node["externalIds"]} == row.ids
    assert sorted(
        x["value"] for x in node["labels"] if x["calculation"]["functional"] == "PBE"
    ) == sorted(row.gaps["PBE"])
    assert {f"{r['name']}:{r['version']}" for r in node["releases"]} == row.releases
    assert "_cell_length_a" in node["cif"]
    assert node["extxyz"].splitlines()[0].strip() == str(row.columns["nsites"])
    lattice = node["lattice"]
    frac, cart = node["sites"][0]["fractional"], node["sites"][0]["cartesian"]
    for axis in range(3):
        want = sum(frac[k] * lattice[k][axis] for k in range(3))
        assert cart[axis] == pytest.approx(want, abs=1e-9)


def test_releases_and_runs(api: Api) -> None:
    """releases with member counts; runs filtered by kind."""
    query = """{ releases { name version query splitSpec members createdAt }
        runs(kind: "api-test", first: 5) {
          id kind status softwareNames software host parameters finishedAt error } }"""
    data = api.data(query)
    members = sum(f"{RELEASE[0]}:{RELEASE[1]}" in r.releases for r in api.rows.values())
    (release,) = data["releases"]
    assert (release["name"], release["version"], release["members"]) == (*RELEASE, members)
    assert [run["status"] for run in data["runs"]] == ["succeeded"]
    (run,) = data["runs"]
    assert "numpy" in run["softwareNames"]
    # what identifies the server is for operators only
    assert run["software"] is run["host"] is run["parameters"] is None
    (private,) = api.operator_data(query)["runs"]
    assert private["software"]["numpy"] and private["host"] and private["parameters"] is not None
    assert set(private["software"]) == set(run["softwareNames"])
