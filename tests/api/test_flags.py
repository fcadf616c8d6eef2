"""Quality flags and isotopes over HTTP: Structure.flags, the flags filter, Site.massNumber and
the masses column of extxyz, checked against the stored rows (whatever flags ingestion set)."""

from __future__ import annotations

import io
from typing import Any

import ase.io
import numpy as np
import pytest
from ase import Atoms

from crystaldb.api.loaders import CELL_COLUMNS, SUMMARY_NAMES
from crystaldb.core.isotopes import site_masses
from crystaldb.core.records import FLAGS, ParsedStructure
from crystaldb.formats.extxyz import parse_extxyz_text
from tests.api import oracle
from tests.api.conftest import Api, Row
from tests.api.test_structures import selected

FLAGS_OF_ALL = "{ structures(first: 1000) { edges { node { id flags } } } }"
SITES = "query($id: ID!) { structure(id: $id) { sites { species massNumber } extxyz } }"


def _present(api: Api) -> list[str]:
    """The flags some stored structure has, in FLAGS order."""
    stored = {flag for row in api.rows.values() for flag in row.columns["flags"]}
    return [flag for flag in FLAGS if flag in stored]


def _isotopic(api: Api) -> list[Row]:
    """The stored structures with an isotope site (the sample's deuterated COD crystals)."""
    return [row for row in api.rows.values() if row.columns["mass_numbers"] is not None]


def test_flags_are_the_stored_ones(api: Api) -> None:
    """Structure.flags is the row's flags, in stored order; [] for an unflagged structure."""
    edges = api.data(FLAGS_OF_ALL)["structures"]["edges"]
    shown = {int(edge["node"]["id"]): edge["node"]["flags"] for edge in edges}
    assert shown == {row.id: list(row.columns["flags"]) for row in api.rows.values()}
    assert len(_present(api)) >= 3 and [] in shown.values()


def _flag_filters(api: Api) -> list[dict[str, Any]]:
    """Every mode on every flag the data holds, two flags at once, and with other fields."""
    present = _present(api)
    filters: list[dict[str, Any]] = []
    for flag in present:
        filters += [{"flags": {mode: [flag]}} for mode in ("hasAll", "hasAny", "excludes")]
    pair = present[:2]
    filters += [
        {"flags": {"hasAll": pair}},
        {"flags": {"hasAny": pair, "excludes": present[2:3]}},
        {"flags": {"hasAny": [*pair, "pymatgen_fallback"]}, "elements": {"hasAll": ["C"]}},
        {"not": {"flags": {"hasAny": present}}},
        {"or": [{"flags": {"hasAll": present[:1]}}, {"nsites": {"lte": 10}}]},
    ]
    return filters


def test_flag_filters_match_the_oracle(api: Api) -> None:
    """hasAll, hasAny and excludes select what the stored flags say, alone and combined."""
    for spec in _flag_filters(api):
        expected = oracle.select(api.rows, spec)
        assert expected not in (set(), set(api.rows)), spec
        assert selected(api, spec) == expected, spec


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"hasAny": ["deuterated", "deuterted"]},
            "filter.flags.hasAny: unknown flag 'deuterted': did you mean 'deuterated'? "
            "flags are " + ", ".join(FLAGS),
        ),
        ({"excludes": ["C"]}, "filter.flags.excludes: unknown flag 'C': flags are "),
        ({"hasAll": []}, "filter.flags.hasAll: give at least one flag"),
    ],
)
def test_unknown_flags_and_empty_lists_are_errors(
    api: Api, flags: dict[str, list[str]], message: str
) -> None:
    """A misspelt flag would select nothing: the error names the input and lists the flags."""
    body = api.post(
        "query($f: StructureFilter) { structures(filter: $f) { totalCount } }", f={"flags": flags}
    )
    assert body["data"] is None or body["data"]["structures"] is None
    (error,) = body["errors"]
    assert error["message"].startswith(message)


def test_mass_numbers_load_with_the_cell_not_the_page() -> None:
    """Per-site isotopes are cell data: a page without sites does not read them."""
    assert "mass_numbers" in CELL_COLUMNS and "mass_numbers" not in SUMMARY_NAMES
    assert "flags" in SUMMARY_NAMES


def test_sites_show_the_stored_mass_numbers(api: Api) -> None:
    """massNumber is the stored isotope (2 for D, species H), null for the natural mix."""
    heavy = _isotopic(api)
    assert heavy, "the sample's deuterated COD files should be stored"
    natural = next(row for row in api.rows.values() if row.columns["mass_numbers"] is None)
    for row in [*heavy, natural]:
        sites = api.data(SITES, id=str(row.id))["structure"]["sites"]
        stored = row.columns["mass_numbers"] or [0] * row.columns["nsites"]
        assert [site["massNumber"] for site in sites] == [a or None for a in stored]
        heavy_species = {site["species"] for site in sites if site["massNumber"]}
        assert heavy_species <= {"H"}


def test_extxyz_writes_masses_for_isotopes_and_reads_back(api: Api) -> None:
    """A masses column for a cell with isotopes, read back as the same isotopes; none else."""
    for row in _isotopic(api):
        text = api.data(SITES, id=str(row.id))["structure"]["extxyz"]
        atoms = ase.io.read(io.StringIO(text), format="extxyz")
        assert isinstance(atoms, Atoms)
        numbers = np.asarray(row.columns["atomic_numbers"])
        stored = np.asarray(row.columns["mass_numbers"])
        assert atoms.has("masses")
        heavy = stored != 0
        expected = site_masses(numbers, stored)
        np.testing.assert_allclose(atoms.get_masses()[heavy], expected[heavy], rtol=0, atol=1e-6)
        (parsed,) = parse_extxyz_text(text, "api.extxyz", None, None)
        assert isinstance(parsed, ParsedStructure) and parsed.mass_numbers is not None
        assert parsed.mass_numbers.tolist() == stored.tolist()
    natural = next(row for row in api.rows.values() if row.columns["mass_numbers"] is None)
    text = api.data(SITES, id=str(natural.id))["structure"]["extxyz"]
    assert "masses" not in text.splitlines()[1]
