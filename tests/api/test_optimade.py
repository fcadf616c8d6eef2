"""The OPTIMADE endpoints over the test database: shapes, paging, errors, and filters checked
against a Python oracle over the same rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from ase.data import chemical_symbols
from optimade.models import LinksResponse, StructureResponseMany, StructureResponseOne
from optimade.models.utils import anonymize_formula, reduce_formula
from pymatgen.core import Composition
from sqlalchemy import select, update

from crystaldb.api.optimade.filters import compile_filter
from crystaldb.api.optimade.provider import Catalogue
from crystaldb.schema.structures import Structure
from tests.api.conftest import RELEASE, Api, Row

BASE = "/optimade/v1"


def _get(api: Api, path: str, status: int = 200, **params: Any) -> dict[str, Any]:
    """GET an OPTIMADE path; the decoded body, after checking the status."""
    response = api.client.get(f"{api.url}{path}", params=params)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return checked(body) if status == 200 and "/structures" in path and "info" not in path else body


def checked(body: dict[str, Any]) -> dict[str, Any]:
    """A structures response, after validating it with the optimade models (the server builds
    entries without them): each entry must be exactly what the model dumps."""
    many = isinstance(body["data"], list)
    model = (StructureResponseMany if many else StructureResponseOne)(**body)
    dumped = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    assert dumped["data"] == body["data"]
    return body


def _all_ids(api: Api, text: str) -> list[int]:
    """Every id a filter selects, page after page."""
    ids: list[int] = []
    offset = 0
    while True:
        body = _get(api, f"{BASE}/structures", filter=text, page_limit=500, page_offset=offset)
        ids += [int(entry["id"]) for entry in body["data"]]
        if not body["meta"]["more_data_available"]:
            assert body["meta"]["data_returned"] == len(ids)
            return ids
        offset += 500


def _formula(row: Row) -> str:
    """The row's composition as an alphabetical formula (pymatgen reads the stored one)."""
    amounts = Composition(row.columns["reduced_formula"]).get_el_amt_dict()
    return "".join(f"{el}{int(n)}" for el, n in sorted(amounts.items()))


def _pbe(row: Row) -> list[float]:
    return row.gaps.get("PBE", [])


def _hse(row: Row) -> list[float]:
    return row.gaps.get("HSE06", [])


def _predicted(row: Row, model: str) -> list[float]:
    return row.predictions.get(model, [])


def _species_names(row: Row) -> set[str]:
    """species_at_sites as the spec names them: the symbol, "Fe_0.5" where partly occupied."""
    occupancies = row.columns["occupancies"] or [1.0] * row.columns["nsites"]
    return {
        chemical_symbols[z] if occ >= 1 else f"{chemical_symbols[z]}_{occ:g}"
        for z, occ in zip(row.columns["atomic_numbers"], occupancies, strict=True)
    }


def _ratios(row: Row) -> dict[str, float]:
    counts = Counter(chemical_symbols[z] for z in row.columns["atomic_numbers"])
    return {el: n / row.columns["nsites"] for el, n in counts.items()}


def _has_ratio(row: Row, element: str, test: Callable[[float], bool]) -> bool:
    ratio = _ratios(row).get(element)
    return ratio is not None and test(ratio)


def _known_below(value: int | None, other: int) -> bool:
    return value is not None and value < other


def _known_at_least(value: int | None, other: int) -> bool:
    return value is not None and value >= other


_RELEASE = f"{RELEASE[0]}:{RELEASE[1]}"
_ELEMENTS_BELOW_C = {s for s in chemical_symbols[1:] if s < "C"}


Oracle = Callable[[Row], bool]
CASES: list[tuple[str, Oracle]] = [
    ('elements HAS "C"', lambda r: "C" in r.columns["elements"]),
    ('elements HAS ALL "C", "H", "N"', lambda r: {"C", "H", "N"} <= set(r.columns["elements"])),
    ('elements HAS ANY "Cu", "Zn"', lambda r: bool({"Cu", "Zn"} & set(r.columns["elements"]))),
    ('elements HAS ONLY "C", "H", "O"', lambda r: set(r.columns["elements"]) <= {"C", "H", "O"}),
    ("elements LENGTH 3", lambda r: r.columns["nelements"] == 3),
    (
        "nelements >= 4 AND nsites < 100",
        lambda r: r.columns["nelements"] >= 4 and r.columns["nsites"] < 100,
    ),
    ("NOT nsites <= 50", lambda r: not r.columns["nsites"] <= 50),
    ("50 > nsites", lambda r: r.columns["nsites"] < 50),
    ("_crystaldb_space_group_number = 14", lambda r: r.columns["spacegroup_number"] == 14),
    (
        "NOT _crystaldb_space_group_number = 14",
        lambda r: r.columns["spacegroup_number"] != 14,
    ),
    ("_crystaldb_band_gap_pbe > 2", lambda r: any(g > 2 for g in _pbe(r))),
    (
        '_crystaldb_band_gap_pbe > 2 AND elements HAS ALL "C","H","N"',
        lambda r: any(g > 2 for g in _pbe(r)) and {"C", "H", "N"} <= set(r.columns["elements"]),
    ),
    ("_crystaldb_band_gap_pbe IS KNOWN", lambda r: bool(_pbe(r))),
    ("_crystaldb_cod_id IS UNKNOWN", lambda r: not any(db == "cod" for db, _ in r.ids)),
    (
        '_crystaldb_crystal_system = "monoclinic" OR nelements = 2',
        lambda r: r.columns["crystal_system"] == "monoclinic" or r.columns["nelements"] == 2,
    ),
    (
        'chemical_formula_reduced STARTS WITH "C"',
        lambda r: reduce_formula(_formula(r)).startswith("C"),
    ),
    ('chemical_formula_anonymous = "AB"', lambda r: anonymize_formula(_formula(r)) == "AB"),
    ('chemical_formula_hill CONTAINS "N2"', lambda r: "N2" in r.columns["hill_formula"]),
    ("nperiodic_dimensions = 3 AND NOT nsites > 30", lambda r: r.columns["nsites"] <= 30),
    ("_otherdb_field = 2", lambda r: False),
    ("NOT _otherdb_field = 2", lambda r: True),
    ('id = "3" OR id = "5"', lambda r: r.id in (3, 5)),
    ('id STARTS WITH "1"', lambda r: str(r.id).startswith("1")),
    # band gaps by functional, predictions by model, releases
    ("_crystaldb_band_gap_hse06 > 2", lambda r: any(g > 2 for g in _hse(r))),
    ("_crystaldb_band_gap_hse06 IS KNOWN", lambda r: bool(_hse(r))),
    (
        "_crystaldb_band_gap_hse06 < 3 AND NOT _crystaldb_band_gap_pbe IS KNOWN",
        lambda r: any(g < 3 for g in _hse(r)) and not _pbe(r),
    ),
    (
        "_crystaldb_predicted_band_gap_linear_density > 1.5",
        lambda r: any(p > 1.5 for p in _predicted(r, "linear-density")),
    ),
    (
        "_crystaldb_predicted_band_gap_linear_density_nsites IS UNKNOWN",
        lambda r: not _predicted(r, "linear-density-nsites"),
    ),
    (
        "_crystaldb_predicted_band_gap_linear_density_nsites <= 1 OR nsites < 20",
        lambda r: (
            any(p <= 1 for p in _predicted(r, "linear-density-nsites")) or r.columns["nsites"] < 20
        ),
    ),
    (f'_crystaldb_releases HAS "{_RELEASE}"', lambda r: _RELEASE in r.releases),
    (f'NOT _crystaldb_releases HAS "{_RELEASE}"', lambda r: _RELEASE not in r.releases),
    ('_crystaldb_releases HAS "api-test:9"', lambda r: False),
    (
        f'_crystaldb_releases HAS ANY "{_RELEASE}", "other:1"',
        lambda r: _RELEASE in r.releases,
    ),
    ('_crystaldb_releases HAS ONLY "other:1"', lambda r: not r.releases),
    ("_crystaldb_releases LENGTH 0", lambda r: not r.releases),
    ("_crystaldb_releases LENGTH >= 1", lambda r: bool(r.releases)),
    # HAS with operators, species, zipped elements:elements_ratios
    ('elements HAS < "C"', lambda r: bool(_ELEMENTS_BELOW_C & set(r.columns["elements"]))),
    (
        'elements HAS ALL >= "W", "O"',
        lambda r: "O" in r.columns["elements"] and any(e >= "W" for e in r.columns["elements"]),
    ),
    ('elements HAS ONLY < "I"', lambda r: all(e < "I" for e in r.columns["elements"])),
    (
        'elements HAS ANY > "Zn", = "Cu"',
        lambda r: any(e > "Zn" or e == "Cu" for e in r.columns["elements"]),
    ),
    ('species_at_sites HAS "C"', lambda r: "C" in _species_names(r)),
    ('species_at_sites HAS ALL "C", "H"', lambda r: {"C", "H"} <= _species_names(r)),
    ('species_at_sites HAS ANY "Cu", "Zn"', lambda r: bool({"Cu", "Zn"} & _species_names(r))),
    (
        'species_at_sites HAS ONLY "C", "H", "N", "O"',
        lambda r: _species_names(r) <= {"C", "H", "N", "O"},
    ),
    ('elements:elements_ratios HAS "C":>0.5', lambda r: _has_ratio(r, "C", lambda x: x > 0.5)),
    ('elements_ratios:elements HAS >0.5:"C"', lambda r: _has_ratio(r, "C", lambda x: x > 0.5)),
    (
        'elements:elements_ratios HAS ALL "C":>0.3, "H":<0.5',
        lambda r: _has_ratio(r, "C", lambda x: x > 0.3) and _has_ratio(r, "H", lambda x: x < 0.5),
    ),
    (
        'elements:elements_ratios HAS ANY "Cu":>0.1, "Zn":>0',
        lambda r: _has_ratio(r, "Cu", lambda x: x > 0.1) or _has_ratio(r, "Zn", lambda x: x > 0),
    ),
    (
        'elements:elements_ratios HAS ONLY "C":>0.2, "H":>0, "N":<0.2, "O":<=0.25',
        lambda r: all(
            {"C": x > 0.2, "H": True, "N": x < 0.2, "O": x <= 0.25}.get(el, False)
            for el, x in _ratios(r).items()
        ),
    ),
    (
        'elements:elements_ratios HAS <"C":>=0.25',
        lambda r: any(el < "C" and x >= 0.25 for el, x in _ratios(r).items()),
    ),
    # one property compared with another: both known and some pair of values compares so
    ("nsites > nelements", lambda r: r.columns["nsites"] > r.columns["nelements"]),
    ("nsites = nelements", lambda r: r.columns["nsites"] == r.columns["nelements"]),
    (
        "_crystaldb_space_group_number < nsites",
        lambda r: _known_below(r.columns["spacegroup_number"], r.columns["nsites"]),
    ),
    (
        "NOT _crystaldb_space_group_number >= nsites",
        lambda r: not _known_at_least(r.columns["spacegroup_number"], r.columns["nsites"]),
    ),
    (
        "_crystaldb_band_gap_pbe > nelements",
        lambda r: any(g > r.columns["nelements"] for g in _pbe(r)),
    ),
    (
        "_crystaldb_band_gap_pbe < _crystaldb_band_gap_hse06",
        lambda r: any(p < h for p in _pbe(r) for h in _hse(r)),
    ),
    ("_crystaldb_band_gap_pbe < _crystaldb_band_gap_pbe", lambda r: len(set(_pbe(r))) > 1),
    ("nelements >= nperiodic_dimensions", lambda r: r.columns["nelements"] >= 3),
    ("nperiodic_dimensions < nelements", lambda r: r.columns["nelements"] > 3),
    ("nsites > _otherdb_count", lambda r: False),
]


@pytest.mark.parametrize(("text", "oracle"), CASES, ids=[c[0] for c in CASES])
def test_filters_match_the_oracle(api: Api, text: str, oracle: Oracle) -> None:
    expected = sorted(row.id for row in api.rows.values() if oracle(row))
    assert sorted(_all_ids(api, text)) == expected


def test_formula_equality_uses_optimade_spelling(api: Api) -> None:
    row = next(iter(api.rows.values()))
    reduced = reduce_formula(_formula(row))
    ids = _all_ids(api, f'chemical_formula_reduced = "{reduced}"')
    assert row.id in ids
    assert all(reduce_formula(_formula(api.rows[i])) == reduced for i in ids)


def test_structures_page_is_a_valid_optimade_response(api: Api) -> None:
    body = _get(api, f"{BASE}/structures", page_limit=3)
    StructureResponseMany(**body)
    assert len(body["data"]) == 3
    meta = body["meta"]
    assert meta["api_version"] == "1.2.0"
    assert meta["data_returned"] == len(api.rows)
    assert meta["more_data_available"] is True
    assert meta["provider"]["prefix"] == "crystaldb"
    assert "page_cursor=" in body["links"]["next"]
    attributes = body["data"][0]["attributes"]
    assert attributes["elements"] == sorted(attributes["elements"])
    assert attributes["nsites"] == len(attributes["cartesian_site_positions"])
    second = _get(api, f"{BASE}/structures", page_limit=3, page_offset=3)
    assert {e["id"] for e in second["data"]}.isdisjoint({e["id"] for e in body["data"]})


def test_single_structure_and_its_fields(api: Api) -> None:
    row = next(r for r in api.rows.values() if _pbe(r) and any(d == "cod" for d, _ in r.ids))
    body = _get(api, f"/optimade/structures/{row.id}")
    StructureResponseOne(**body)
    attributes = body["data"]["attributes"]
    assert attributes["_crystaldb_space_group_number"] == row.columns["spacegroup_number"]
    assert attributes["_crystaldb_band_gap_pbe"] in _pbe(row)
    assert attributes["_crystaldb_cod_id"] in {eid for db, eid in row.ids if db == "cod"}
    assert attributes["chemical_formula_reduced"] == reduce_formula(_formula(row))


def test_response_fields_cut_the_attributes(api: Api) -> None:
    body = _get(api, f"{BASE}/structures", page_limit=2, response_fields="nsites,elements")
    for entry in body["data"]:
        assert set(entry) >= {"id", "type"}
        assert set(entry["attributes"]) == {"nsites", "elements"}


def test_info_links_versions(api: Api) -> None:
    info = _get(api, f"{BASE}/info")
    assert info["data"]["attributes"]["api_version"] == "1.2.0"
    entry = _get(api, "/optimade/info/structures")
    assert "_crystaldb_band_gap_pbe" in entry["data"]["properties"]
    links = _get(api, f"{BASE}/links")
    LinksResponse(**links)
    assert [link["attributes"]["link_type"] for link in links["data"]] == ["root"]
    assert links["data"][0]["attributes"]["base_url"] == f"{api.url}/optimade"
    versions = api.client.get(f"{api.url}/optimade/versions")
    assert versions.text.splitlines() == ["version", "1"]
    assert versions.headers["content-type"].startswith("text/csv")


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        (f"{BASE}/structures", {"filter": "nsites >"}, 400),
        (f"{BASE}/structures", {"filter": "crazyfield = 2"}, 400),
        (f"{BASE}/structures", {"filter": "_crystaldb_nonsense = 2"}, 400),
        (f"{BASE}/structures", {"filter": 'elements:species_at_sites HAS "C":"C"'}, 501),
        (f"{BASE}/structures", {"filter": 'species_at_sites HAS > "C"'}, 501),
        (f"{BASE}/structures", {"filter": "nsites > _crystaldb_cod_id"}, 501),
        (f"{BASE}/structures", {"filter": "chemical_formula_hill = chemical_formula_reduced"}, 501),
        (f"{BASE}/structures", {"filter": "elements HAS nelements"}, 501),
        (f"{BASE}/structures", {"filter": "nsites > crazyfield"}, 400),
        (f"{BASE}/structures", {"filter": "nsites > _crystaldb_nonsense"}, 400),
        (f"{BASE}/structures", {"filter": '_crystaldb_releases HAS "no-version"'}, 400),
        (f"{BASE}/structures", {"filter": '_crystaldb_releases = "api-test:1.0"'}, 400),
        (f"{BASE}/structures", {"filter": "_crystaldb_predicted_band_gap_nomodel > 1"}, 400),
        (f"{BASE}/structures", {"sort": "chemical_formula_hill"}, 400),
        (f"{BASE}/structures", {"sort": "nsites,-nelements"}, 400),
        (f"{BASE}/structures", {"sort": "_crystaldb_nonsense"}, 400),
        (f"{BASE}/structures", {"page_cursor": "bm90IGEgY3Vyc29y"}, 400),
        (f"{BASE}/structures", {"page_cursor": "x", "page_offset": "3"}, 400),
        (f"{BASE}/structures", {"page_limit": "1000"}, 403),
        (f"{BASE}/structures", {"page_limit": "x"}, 400),
        (f"{BASE}/structures/999999999", {}, 404),
        (f"{BASE}/structures/abc", {}, 404),
        ("/optimade/v2/info", {}, 553),
        ("/optimade/v1/v123123/info", {}, 404),
    ],
)
def test_errors(api: Api, path: str, params: dict[str, str], status: int) -> None:
    body = _get(api, path, status, **params)
    assert body["errors"][0]["status"] == str(status)
    assert body["errors"][0]["detail"]


def test_unknown_provider_field_warns(api: Api) -> None:
    body = _get(api, f"{BASE}/structures", filter="_otherdb_x > 1")
    assert body["data"] == []
    assert "_otherdb_x" in body["meta"]["warnings"][0]["detail"]


def test_response_fields_select_the_same_values_as_whole_entries(api: Api) -> None:
    # each attribute alone is built from only its own columns: it must not differ
    whole = _get(api, f"{BASE}/structures", page_limit=500)["data"]
    assert len(whole) == min(500, len(api.rows))
    for name in whole[0]["attributes"]:
        alone = _get(api, f"{BASE}/structures", page_limit=500, response_fields=name)["data"]
        assert [e["attributes"] for e in alone] == [{name: e["attributes"][name]} for e in whole]
    one = _get(api, f"{BASE}/structures/{whole[0]['id']}", response_fields="species,nsites")
    assert one["data"]["attributes"] == {
        k: whole[0]["attributes"][k] for k in ("species", "nsites")
    }


def test_partly_occupied_species_names(api: Api) -> None:
    # the sample has no partly occupied site: give one row some, in a transaction rolled back
    row = next(iter(api.rows.values()))
    n = row.columns["nsites"]
    symbol = chemical_symbols[row.columns["atomic_numbers"][0]]
    occupancies = [1 / 3] + [1.0] * (n - 1)
    known = Catalogue()
    with api.db.session() as session:
        session.execute(
            update(Structure).where(Structure.id == row.id).values(occupancies=occupancies)
        )

        def ids(text: str) -> set[int]:
            clause = compile_filter(text, lambda c: [], known).clause
            return set(session.scalars(select(Structure.id).where(clause)))

        assert row.id in ids(f'species_at_sites HAS "{symbol}_0.333333"')
        assert row.id not in ids(f'species_at_sites HAS "{symbol}_0.333"')
        assert row.id not in ids(f'species_at_sites HAS "{symbol}_0.3333330"')
        only = ", ".join(f'"{s}"' for s in {*row.columns["elements"], f"{symbol}_0.333333"})
        assert row.id in ids(f"species_at_sites HAS ONLY {only}")
        whole = ", ".join(f'"{s}"' for s in row.columns["elements"])
        assert row.id not in ids(f"species_at_sites HAS ONLY {whole}")
        full = row.columns["atomic_numbers"].count(row.columns["atomic_numbers"][0]) > 1
        assert (row.id in ids(f'species_at_sites HAS "{symbol}"')) == full
        session.rollback()


def test_provider_fields_by_functional_model_and_release(api: Api) -> None:
    properties = _get(api, f"{BASE}/info/structures")["data"]["properties"]
    for name in ("_crystaldb_band_gap_hse06", "_crystaldb_predicted_band_gap_linear_density",
                 "_crystaldb_predicted_band_gap_linear_density_nsites"):  # fmt: skip
        assert properties[name]["type"] == "float"
        assert properties[name]["unit"] == "eV"
    assert "HSE06" in properties["_crystaldb_band_gap_hse06"]["description"]
    assert properties["_crystaldb_releases"]["type"] == "list"
    row = next(r for r in api.rows.values() if _hse(r) and r.releases)
    attributes = _get(api, f"{BASE}/structures/{row.id}")["data"]["attributes"]
    assert attributes["_crystaldb_band_gap_hse06"] == min(_hse(row))
    assert attributes["_crystaldb_releases"] == [_RELEASE]
    assert attributes["_crystaldb_predicted_band_gap_linear_density"] in _predicted(
        row, "linear-density"
    )
    other = next(r for r in api.rows.values() if not _hse(r) and not r.releases)
    attributes = _get(api, f"{BASE}/structures/{other.id}")["data"]["attributes"]
    assert attributes["_crystaldb_band_gap_hse06"] is None
    assert attributes["_crystaldb_releases"] == []
