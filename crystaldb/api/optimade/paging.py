"""`sort` and keyset paging for OPTIMADE lists: one sort field (ties broken by id), and the
opaque `page_cursor` of links.next, so a deep page starts at its key instead of counting rows.

The cursor is GraphQL's scheme (crystaldb.api.pagination): urlsafe base64 of compact JSON
[sort, key, id], with the same size and id limits; its sorts are OPTIMADE fields, not the
StructureSort enum, so the encoding lives here. It also carries the first page's count of
matches, so later pages report data_returned without counting again.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, tuple_

from crystaldb.api.errors import shorten
from crystaldb.api.optimade.entries import PREFIX
from crystaldb.api.pagination import MAX_CURSOR, MAX_ID
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.structures import Structure

_COMPACT = json.JSONEncoder(separators=(",", ":"))
_OTHER_PROVIDER = re.compile(r"_[a-z0-9]+_\w*")
DEFAULT = "id"


class PagingError(ValueError):
    """A sort or page_cursor the server cannot honour (HTTP 400)."""


def _pbe_gap() -> Any:
    """The smallest PBE band gap of the row's structure (the value the entries show)."""
    return (
        select(func.min(Label.value))
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(Label.structure_id == Structure.id, Label.property == "band_gap")
        .where(Calculation.functional == "PBE")
        .scalar_subquery()
    )


# sortable OPTIMADE field -> (its SQL, kind of key, stand-in for unknown when ascending)
SORTABLE: dict[str, tuple[Any, str, Any]] = {
    "id": (Structure.id, "int", None),
    "nsites": (Structure.nsites, "int", None),
    "nelements": (Structure.nelements, "int", None),
    f"{PREFIX}space_group_number": (Structure.spacegroup_number, "int", 1000),
    f"{PREFIX}band_gap_pbe": (None, "float", math.inf),  # None: _pbe_gap(), built per query
    "last_modified": (Structure.created_at, "time", None),
}


@dataclass(frozen=True, slots=True)
class Sort:
    """One sort field and its direction; unknown values come last either way."""

    field: str
    descending: bool = False

    @property
    def text(self) -> str:
        """The sort as the `sort` parameter spells it."""
        return f"-{self.field}" if self.descending else self.field

    def key(self) -> Any:
        """The SQL of the sort key, unknown values replaced by a stand-in that sorts last."""
        column, _, missing = SORTABLE[self.field]
        expression = _pbe_gap() if column is None else column
        if missing is None:
            return expression
        return func.coalesce(expression, -missing if self.descending else missing)

    def order(self, key: Any) -> list[Any]:
        """ORDER BY: the key, then id, both in the sort's direction."""
        columns = [Structure.id] if self.field == "id" else [key, Structure.id]
        return [c.desc() if self.descending else c.asc() for c in columns]

    def after(self, key: Any, value: Any, last_id: int) -> ColumnElement[bool]:
        """Rows after a decoded cursor's position (`value`, `last_id`), in this sort."""
        if self.field == "id":
            return Structure.id < last_id if self.descending else Structure.id > last_id
        position, seen = tuple_(key, Structure.id), tuple_(value, last_id)
        return position < seen if self.descending else position > seen


def parse_sort(text: str | None) -> tuple[Sort, list[str]]:
    """The sort asked for (id when none) and warnings for other providers' fields, ignored."""
    warnings: list[str] = []
    chosen: list[Sort] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name = part.removeprefix("-")
        if name in SORTABLE:
            chosen.append(Sort(name, part.startswith("-")))
        elif _OTHER_PROVIDER.fullmatch(name) and not name.startswith(PREFIX):
            warnings.append(f"sort on unknown provider property '{name[:60]}' is ignored")
        else:
            fields = ", ".join(SORTABLE)
            raise PagingError(f"cannot sort on '{name[:60]}'; the sortable fields are {fields}")
    if len(chosen) > 1:
        raise PagingError("sort on one field at a time (ties are broken by id)")
    return (chosen[0] if chosen else Sort(DEFAULT)), warnings


def encode(sort: Sort, key: Any, structure_id: int, count: int) -> str:
    """The opaque cursor of a row: its sort, its key (as JSON), its id and the match count."""
    if isinstance(key, datetime):
        key = key.isoformat()
    fields = [sort.text, None if sort.field == "id" else key, structure_id, count]
    return base64.urlsafe_b64encode(_COMPACT.encode(fields).encode()).decode()


def decode(sort: Sort, cursor: str) -> tuple[Any, int, int]:
    """The key, id and count of a cursor made by `encode` for this sort; else PagingError."""
    foreign = PagingError(f"page_cursor {shorten(cursor)} is not a cursor from this server")
    if len(cursor) > MAX_CURSOR:
        raise foreign
    try:
        text, key, structure_id, count = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeError, RecursionError):
        raise foreign from None
    if text != sort.text:
        raise PagingError(f"page_cursor was made for sort={str(text)[:60]}; keep that sort")
    if not (_whole(structure_id) and 0 < structure_id <= MAX_ID):
        raise foreign
    if not (_whole(count) and 0 <= count <= MAX_ID):
        raise foreign
    value = _key(SORTABLE[sort.field][1], key) if sort.field != "id" else None
    if value is None and sort.field != "id":
        raise foreign
    return value, structure_id, count


def _whole(value: Any) -> bool:
    """An int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _key(kind: str, key: Any) -> Any:
    """A cursor's key as the SQL compares it, or None when it is not one `encode` writes."""
    if kind == "int":
        return key if _whole(key) and abs(key) <= MAX_ID else None
    if kind == "float":
        number = _whole(key) or isinstance(key, float)
        return float(key) if number and not math.isnan(key) else None
    if isinstance(key, str):
        try:
            return datetime.fromisoformat(key)
        except ValueError:
            return None
    return None
