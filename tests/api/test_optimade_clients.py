"""Real OPTIMADE clients against the live server: pymatgen's OptimadeRester and the optimade
package's OptimadeClient get the structures, formulas and counts GraphQL gives for the same
questions on the same database."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from optimade.client import OptimadeClient
from pymatgen.ext.optimade import OptimadeRester

from crystaldb.api.optimade.entries import optimade_reduced
from tests.api.conftest import RELEASE, Api, Row

GRAPHQL = """
query($f: StructureFilter) {
  structures(filter: $f, first: 1000) { totalCount edges { node { id reducedFormula } } }
}
"""
# (OPTIMADE filter, the same question as a GraphQL StructureFilter), built from a sample row
Case = Callable[[Row], tuple[str, dict[str, Any]]]
CASES: list[Case] = [
    lambda r: ('elements HAS ALL "C","H","N"', {"elements": {"hasAll": ["C", "H", "N"]}}),
    lambda r: ('elements HAS ANY "Cu","Zn"', {"elements": {"hasAny": ["Cu", "Zn"]}}),
    lambda r: ('elements HAS ONLY "C","H","O"', {"elements": {"hasOnly": ["C", "H", "O"]}}),
    lambda r: ('NOT elements HAS "H"', {"elements": {"excludes": ["H"]}}),
    lambda r: ("nelements = 2", {"nelements": {"gte": 2, "lte": 2}}),
    lambda r: ("nelements >= 3 AND nelements <= 4", {"nelements": {"gte": 3, "lte": 4}}),
    lambda r: ("nsites <= 20", {"nsites": {"lte": 20}}),
    lambda r: ("nsites >= 100 AND nsites <= 200", {"nsites": {"gte": 100, "lte": 200}}),
    lambda r: (
        f'chemical_formula_reduced = "{optimade_reduced(r.columns["reduced_formula"])}"',
        {"reducedFormula": r.columns["reduced_formula"]},
    ),
    lambda r: ("_crystaldb_space_group_number = 14", {"spaceGroup": {"number": 14}}),
    lambda r: (
        '_crystaldb_band_gap_pbe >= 2 AND elements HAS ALL "C","H","N"',
        {"and": [{"bandGap": {"gte": 2}}, {"elements": {"hasAll": ["C", "H", "N"]}}]},
    ),
    lambda r: (
        "_crystaldb_band_gap_pbe >= 1 AND nsites < 60",
        {"and": [{"bandGap": {"gte": 1}}, {"nsites": {"lte": 59}}]},
    ),
    lambda r: (
        '_crystaldb_crystal_system = "cubic" OR nelements = 1',
        {"or": [{"crystalSystem": "cubic"}, {"nelements": {"gte": 1, "lte": 1}}]},
    ),
    # the other provider fields: band gaps by functional and by model, releases, COD ids
    lambda r: (
        "_crystaldb_band_gap_hse06 >= 2",
        {"bandGap": {"gte": 2, "functional": "HSE06"}},
    ),
    lambda r: (
        "_crystaldb_predicted_band_gap_linear_density >= 1.5",
        {"bandGap": {"gte": 1.5, "model": "linear-density"}},
    ),
    lambda r: (
        f'_crystaldb_releases HAS "{RELEASE[0]}:{RELEASE[1]}"',
        {"release": ":".join(RELEASE)},
    ),
    lambda r: (f'_crystaldb_cod_id = "{_cod(r)}"', {"source": {"database": "cod", "id": _cod(r)}}),
    lambda r: ("_crystaldb_cod_id IS KNOWN", {"source": {"database": "cod"}}),
    lambda r: (
        f'_crystaldb_space_group_symbol = "{r.columns["spacegroup_symbol"]}"',
        {"spaceGroup": {"symbol": r.columns["spacegroup_symbol"]}},
    ),
]


def _cod(row: Row) -> str:
    """The row's COD id."""
    return next(eid for database, eid in sorted(row.ids) if database == "cod")


def _sample(api: Api) -> Row:
    """An ordered structure whose formula OPTIMADE can spell (for the formula case)."""
    return next(
        r
        for r in sorted(api.rows.values(), key=lambda r: r.id)
        if r.columns["occupancies"] is None and optimade_reduced(r.columns["reduced_formula"])
    )


def _graphql(api: Api, spec: dict[str, Any]) -> tuple[dict[int, str], int]:
    """Id -> pymatgen reduced formula of every match, and the total count."""
    page = api.data(GRAPHQL, f=spec)["structures"]
    found = {int(e["node"]["id"]): e["node"]["reducedFormula"] for e in page["edges"]}
    return found, page["totalCount"]


def _ordered(api: Api, sid: int) -> bool:
    """Whether every site is fully occupied (pymatgen's client reads only those; see below)."""
    occupancies = api.rows[sid].columns["occupancies"]
    return occupancies is None or all(o >= 1 for o in occupancies)


@pytest.fixture(scope="module")
def rester(api: Api) -> OptimadeRester:
    """pymatgen's client on the local server (the base URL with a trailing slash: it appends
    `v1/structures` with urljoin)."""
    return OptimadeRester(f"{api.url}/optimade/", timeout=30)


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_pymatgen_gets_what_graphql_gets(
    api: Api, rester: OptimadeRester, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    """Same structures and formulas. pymatgen builds a Structure from species_at_sites, which
    it reads as element symbols: partly occupied sites (species "Fe_0.5") fail there, so
    disordered structures are compared through OptimadeClient only."""
    text, spec = case(_sample(api))
    expected, _ = _graphql(api, spec)
    assert expected, f"{text} selects nothing: a weak case"
    with caplog.at_level(logging.ERROR, logger="pymatgen.ext.optimade"):
        got = rester.get_structures_with_filter(text)
    structures = next(iter(got.values()), {})
    ordered = {sid: f for sid, f in expected.items() if _ordered(api, sid)}
    assert {int(k) for k in structures} == set(ordered)
    for key, structure in structures.items():
        assert structure.composition.reduced_formula == ordered[int(key)]
        assert len(structure) == api.rows[int(key)].columns["nsites"]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_optimade_client_gets_what_graphql_gets(api: Api, case: Case) -> None:
    text, spec = case(_sample(api))
    expected, total = _graphql(api, spec)
    base = f"{api.url}/optimade"
    client = OptimadeClient(
        base_urls=[base], use_async=False, silent=True, max_results_per_provider=0
    )
    counted = client.count(text)["structures"][text][base]
    assert counted == total
    result = client.get(text, response_fields=["chemical_formula_reduced", "nsites"])
    body = result["structures"][text][base]
    assert not body["errors"], body["errors"]
    formulas = {int(e["id"]): e["attributes"]["chemical_formula_reduced"] for e in body["data"]}
    assert set(formulas) == set(expected)
    for sid, formula in formulas.items():
        assert formula == (optimade_reduced(expected[sid]) or formula)


def test_clients_compare_two_properties(api: Api, rester: OptimadeRester) -> None:
    """A comparison GraphQL cannot ask (one property against another), through both clients,
    against the oracle over the same rows: both values known, and the comparison holds."""
    text = "_crystaldb_space_group_number > nelements AND nsites < 40"
    expected = {
        r.id
        for r in api.rows.values()
        if r.columns["spacegroup_number"] is not None
        and r.columns["spacegroup_number"] > r.columns["nelements"]
        and r.columns["nsites"] < 40
    }
    assert expected and expected != set(api.rows)
    base = f"{api.url}/optimade"
    client = OptimadeClient(
        base_urls=[base], use_async=False, silent=True, max_results_per_provider=0
    )
    assert client.count(text)["structures"][text][base] == len(expected)
    body = client.get(text, response_fields=["nsites"])["structures"][text][base]
    assert not body["errors"], body["errors"]
    assert {int(e["id"]) for e in body["data"]} == expected
    got = next(iter(rester.get_structures_with_filter(text).values()), {})
    assert {int(k) for k in got} == {sid for sid in expected if _ordered(api, sid)}
