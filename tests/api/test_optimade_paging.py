"""OPTIMADE `sort` and keyset paging: walking links.next returns every match once, in the
order a Python oracle sorts the same rows; stale or foreign cursors are refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, update

from crystaldb.api.optimade import queries
from crystaldb.api.optimade.filters import compile_filter
from crystaldb.api.optimade.provider import Catalogue
from crystaldb.core.lru import Lru
from crystaldb.schema.labels import Calculation, Label
from tests.api.conftest import Api, Row
from tests.api.test_optimade import checked

BASE = "/optimade/v1"


def _walk(api: Api, limit: int, **params: Any) -> list[int]:
    """Every id of a listing, following links.next from the first page to the last."""
    response = api.client.get(f"{api.url}{BASE}/structures", params={"page_limit": limit, **params})
    ids: list[int] = []
    seen_links: set[str] = set()
    while True:
        assert response.status_code == 200, response.text
        body = checked(response.json())
        ids += [int(entry["id"]) for entry in body["data"]]
        assert len(body["data"]) <= limit
        following = body["links"].get("next")
        assert bool(following) == body["meta"]["more_data_available"]
        if not following:
            assert body["meta"]["data_returned"] == len(ids)
            return ids
        assert following not in seen_links and "page_cursor=" in following
        seen_links.add(following)
        response = api.client.get(following)


def _key(row: Row, field: str) -> Any:
    """What the server sorts a row by (None: unknown, last in either direction)."""
    columns = row.columns
    if field == "_crystaldb_band_gap_pbe":
        return min(row.gaps["PBE"]) if row.gaps.get("PBE") else None
    name = {"_crystaldb_space_group_number": "spacegroup_number", "last_modified": "created_at"}
    return row.id if field == "id" else columns[name.get(field, field)]


def _expected(rows: list[Row], sort: str) -> list[int]:
    """The oracle's order: by key then id, in the sort's direction; unknown keys at the end."""
    field, descending = sort.removeprefix("-"), sort.startswith("-")
    known = [r for r in rows if _key(r, field) is not None]
    unknown = [r for r in rows if _key(r, field) is None]
    known.sort(key=lambda r: (_key(r, field), r.id), reverse=descending)
    unknown.sort(key=lambda r: r.id, reverse=descending)
    return [r.id for r in known + unknown]


SORTS = ["id", "-id", "nsites", "-nsites", "nelements", "-nelements",
         "_crystaldb_space_group_number", "-_crystaldb_space_group_number",
         "_crystaldb_band_gap_pbe", "-_crystaldb_band_gap_pbe", "last_modified",
         "-last_modified"]  # fmt: skip
FILTERS = {
    "": lambda r: True,
    'elements HAS "C"': lambda r: "C" in r.columns["elements"],
    "nsites < 40 OR nelements = 2": lambda r: (
        r.columns["nsites"] < 40 or r.columns["nelements"] == 2
    ),
}


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("text", list(FILTERS))
def test_walking_links_next_returns_each_match_once_in_order(
    api: Api, text: str, sort: str
) -> None:
    rows = [r for r in api.rows.values() if FILTERS[text](r)]
    walked = _walk(api, 7, filter=text, sort=sort)
    assert len(walked) == len(set(walked))
    assert walked == _expected(rows, sort)


def test_offset_paging_follows_the_sort(api: Api) -> None:
    everything = _expected(list(api.rows.values()), "-nsites")
    body = api.client.get(
        f"{api.url}{BASE}/structures",
        params={"sort": "-nsites", "page_offset": 10, "page_limit": 5},
    ).json()
    assert [int(e["id"]) for e in body["data"]] == everything[10:15]


def test_info_says_which_fields_sort(api: Api) -> None:
    properties = api.client.get(f"{api.url}{BASE}/info/structures").json()["data"]["properties"]
    sortable = {name for name, p in properties.items() if p["sortable"]}
    assert sortable == {field.removeprefix("-") for field in SORTS}


def test_a_cursor_belongs_to_its_sort(api: Api) -> None:
    first = api.client.get(
        f"{api.url}{BASE}/structures", params={"sort": "nsites", "page_limit": 2}
    )
    following = httpx.URL(first.json()["links"]["next"])
    cursor = following.params["page_cursor"]
    response = api.client.get(
        f"{api.url}{BASE}/structures", params={"sort": "-nsites", "page_cursor": cursor}
    )
    assert response.status_code == 400
    assert "sort=nsites" in response.json()["errors"][0]["detail"]


def test_other_providers_sort_fields_warn(api: Api) -> None:
    body = api.client.get(f"{api.url}{BASE}/structures", params={"sort": "_otherdb_x"}).json()
    assert "_otherdb_x" in body["meta"]["warnings"][0]["detail"]
    assert [int(e["id"]) for e in body["data"]] == sorted(api.rows)[: len(body["data"])]


def _counts(api: Api, text: str) -> tuple[int, int]:
    """data_returned of a full first page, and how many count statements the server issued."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT count(*)") and "WHERE" in statement:
            seen.append(statement)  # the page's count, not data_available's

    event.listen(api.db.engine, "before_cursor_execute", listen)
    try:
        response = api.client.get(
            f"{api.url}{BASE}/structures",
            params={"filter": text, "page_limit": 1, "response_fields": "nsites"},
        )
    finally:
        event.remove(api.db.engine, "before_cursor_execute", listen)
    body = checked(response.json())
    assert body["meta"]["more_data_available"]
    return body["meta"]["data_returned"], len(seen)


def _reused(api: Api, text: str, expected: int) -> bool:
    """Whether one of a few requests reused the kept count (any commit anywhere on the
    server, another test's or autovacuum's, makes a new snapshot and a new count)."""
    for _ in range(10):
        returned, counted = _counts(api, text)
        assert returned == expected
        if counted == 0:
            return True
    return False


def test_the_count_is_kept_for_its_snapshot_and_redone_after_a_write(api: Api) -> None:
    """Page 1 counts its matches once; the same filter again reuses the count while nothing
    is written, and counts again, exactly, once a commit changes what matches."""
    text = "_crystaldb_band_gap_pbe >= 0 AND nsites >= 1"  # this test's alone
    expected = sum(any(g >= 0 for g in r.gaps.get("PBE", [])) for r in api.rows.values())
    assert expected > 1
    assert _counts(api, text) == (expected, 1)
    assert _reused(api, text, expected)
    row = min((r for r in api.rows.values() if len(r.gaps.get("PBE", [])) == 1), key=_id)
    gap = row.gaps["PBE"][0]
    assert _set_pbe_gap(api, row.id, -1.0) == gap
    try:
        assert _counts(api, text) == (expected - 1, 1)  # the commit made a new snapshot
        assert _reused(api, text, expected - 1)
    finally:
        _set_pbe_gap(api, row.id, gap)
    assert _counts(api, text) == (expected, 1)


def _id(row: Row) -> int:
    return row.id


def _set_pbe_gap(api: Api, structure_id: int, value: float) -> float:
    """Give a structure's one PBE band gap another value, committed; the old value."""
    pbe = select(Calculation.id).where(Calculation.functional == "PBE")
    label = (Label.structure_id == structure_id) & Label.calculation_id.in_(pbe)
    with api.db.session() as session:
        old = session.scalars(select(Label.value).where(label)).one()
        session.execute(update(Label).where(label).values(value=value))
    return old


def test_a_transaction_that_has_written_keeps_no_count(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own changes are not in the snapshot's text: counted, never kept nor reused."""
    monkeypatch.setattr(queries, "COUNTS", Lru(8))  # this test's own, to see what is kept
    clause = compile_filter("_crystaldb_band_gap_pbe >= 0", lambda c: [], Catalogue()).clause
    row = min((r for r in api.rows.values() if r.gaps.get("PBE")), key=_id)
    with api.db.session() as session:
        snapshot = session.execute(select(queries.SNAPSHOT)).scalar()
        assert snapshot is not None
        before = queries.count(session, clause, snapshot)
        assert len(queries.COUNTS) == 1
        session.execute(update(Label).where(Label.structure_id == row.id).values(value=-1.0))
        assert session.execute(select(queries.SNAPSHOT)).scalar() is None
        assert queries.count(session, clause, None) == before - 1
        assert len(queries.COUNTS) == 1
        session.rollback()
