"""Keyset pagination over structures: sort orders, opaque cursors, the page query."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import strawberry
from sqlalchemy import ColumnElement, Executable, func, select, tuple_

from crystaldb.api.errors import ApiError, shorten
from crystaldb.api.loaders import SUMMARY_COLUMNS, SUMMARY_NAMES
from crystaldb.query.fields import DEFAULT_FUNCTIONAL
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.ml import Model, Prediction
from crystaldb.schema.structures import Structure

DEFAULT_PAGE = 100
MAX_PAGE = 1000
_ID = SUMMARY_NAMES.index("id")


@strawberry.enum(
    description="Order of structures; ties are broken by id in the same direction. FORMULA "
    "sorts by reduced formula (the database's collation), SPACE_GROUP by space-group number "
    "(a structure without one sorts as 0), BAND_GAP by the smallest band gap of the chosen "
    "source (structures without one are left out)."
)
class StructureSort(Enum):
    ID_ASC = "ID_ASC"
    ID_DESC = "ID_DESC"
    NSITES_ASC = "NSITES_ASC"
    NSITES_DESC = "NSITES_DESC"
    BAND_GAP_ASC = "BAND_GAP_ASC"
    BAND_GAP_DESC = "BAND_GAP_DESC"
    FORMULA_ASC = "FORMULA_ASC"
    FORMULA_DESC = "FORMULA_DESC"
    SPACE_GROUP_ASC = "SPACE_GROUP_ASC"
    SPACE_GROUP_DESC = "SPACE_GROUP_DESC"

    @property
    def by_band_gap(self) -> bool:
        """Whether the key is a band gap (structures without one are left out)."""
        return self in (StructureSort.BAND_GAP_ASC, StructureSort.BAND_GAP_DESC)

    @property
    def by_id(self) -> bool:
        """Whether the id is the whole key (the cursor then records no other)."""
        return self in (StructureSort.ID_ASC, StructureSort.ID_DESC)


@dataclass(frozen=True)
class PageQuery:
    """The statements for one page: its rows (with the sort key last) and the total count."""

    rows: Executable
    count: Executable


def check_first(first: int) -> int:
    """The page size, or an error saying the allowed range."""
    if not 1 <= first <= MAX_PAGE:
        raise ApiError(
            f"first must be between 1 and {MAX_PAGE}, got {first}: "
            "ask for fewer and page on with `after: endCursor`"
        )
    return first


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps builds one per call otherwise


def encode_cursor(sort: StructureSort, key: Any, structure_id: int) -> str:
    """Opaque cursor: base64 of the sort, its key and the id of the last structure seen."""
    raw = _COMPACT.encode([sort.value, key, structure_id])
    return base64.urlsafe_b64encode(raw.encode()).decode()


MAX_CURSOR = 400  # characters: the API's cursors are under 100, a long formula's under 400
MAX_ID = 2**63 - 1  # structures.id is a bigint
MAX_NSITES = 2**31 - 1  # structures.nsites is an integer
MAX_FORMULA = 200  # characters of a reduced formula in a cursor (a cursor's key)


def decode_cursor(cursor: str, sort: StructureSort) -> tuple[Any, int]:
    """The sort key and id in a cursor made by encode_cursor for the same sort; anything else
    (a key of the wrong type or out of the column's range, NaN, a bool) is an ApiError."""
    foreign = ApiError(f"after: {shorten(cursor)} is not a cursor from this API; use an endCursor")
    if len(cursor) > MAX_CURSOR:
        raise foreign
    try:
        name, key, structure_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeError, RecursionError):
        raise foreign from None
    if not isinstance(name, str):
        raise foreign
    if name != sort.value:
        if name not in StructureSort.__members__:
            raise foreign
        raise ApiError(f"after: the cursor was made for sort {name}; use the same sort, {name}")
    if not (_whole(structure_id) and 0 < structure_id <= MAX_ID and _fits(sort, key)):
        raise foreign
    return key, structure_id


def _whole(value: Any) -> bool:
    """An int and not a bool (json reads true as True, an int to isinstance)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(sort: StructureSort, key: Any) -> bool:
    """Whether a cursor's key is what row_key records for this sort."""
    if sort.by_id:
        return key is None
    if sort in (StructureSort.NSITES_ASC, StructureSort.NSITES_DESC):
        return _whole(key) and 0 <= key <= MAX_NSITES
    if sort in (StructureSort.SPACE_GROUP_ASC, StructureSort.SPACE_GROUP_DESC):
        return _whole(key) and 0 <= key <= 230
    if sort in (StructureSort.FORMULA_ASC, StructureSort.FORMULA_DESC):
        return isinstance(key, str) and len(key) <= MAX_FORMULA and "\x00" not in key
    number = _whole(key) or isinstance(key, float)
    return number and math.isfinite(key) and abs(key) < 1e300


def _gaps(functional: str) -> Any:
    """Each structure's smallest band gap from this functional (no row when it has none)."""
    return (
        select(Label.structure_id.label("structure_id"), func.min(Label.value).label("gap"))
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(Label.property == "band_gap", Calculation.functional == functional)
        .group_by(Label.structure_id)
        .subquery("gaps")
    )


def _predicted_gaps(model: str) -> Any:
    """Each structure's smallest band gap predicted by this model (no row when it has none)."""
    return (
        select(
            Prediction.structure_id.label("structure_id"), func.min(Prediction.value).label("gap")
        )
        .join(Model, Model.id == Prediction.model_id)
        .where(Prediction.property == "band_gap", Model.name == model)
        .group_by(Prediction.structure_id)
        .subquery("gaps")
    )


_KEYS: dict[StructureSort, Any] = {
    StructureSort.NSITES_ASC: Structure.nsites,
    StructureSort.NSITES_DESC: Structure.nsites,
    StructureSort.FORMULA_ASC: Structure.reduced_formula,
    StructureSort.FORMULA_DESC: Structure.reduced_formula,
    # a structure without a space group sorts as 0 (NULL would drop it from keyset pages)
    StructureSort.SPACE_GROUP_ASC: func.coalesce(Structure.spacegroup_number, 0),
    StructureSort.SPACE_GROUP_DESC: func.coalesce(Structure.spacegroup_number, 0),
}


def page_query(
    where: ColumnElement[bool],
    sort: StructureSort,
    first: int,
    after: str | None,
    functional: str = DEFAULT_FUNCTIONAL,
    model: str | None = None,
) -> PageQuery:
    """first + 1 rows after the cursor (one more tells whether there is a next page); band
    gap sorts read `model`'s predictions when it is given, else `functional`'s labels."""
    base = select(*SUMMARY_COLUMNS)  # the site arrays load only if asked for
    if sort.by_band_gap:
        gaps = _gaps(functional) if model is None else _predicted_gaps(model)
        base = base.add_columns(gaps.c.gap.label("sort_key")).join(
            gaps, gaps.c.structure_id == Structure.id
        )
        key: Any = gaps.c.gap
    elif sort in _KEYS:
        key = _KEYS[sort]
        base = base.add_columns(key.label("sort_key"))
    else:
        base = base.add_columns(Structure.id.label("sort_key"))
        key = None
    base = base.where(where)
    count = select(func.count()).select_from(base.subquery())
    columns = (Structure.id,) if key is None else (key, Structure.id)
    descending = sort.value.endswith("_DESC")
    rows = base
    if after is not None:
        value, last_id = decode_cursor(after, sort)
        values = (last_id,) if key is None else (value, last_id)
        position = tuple_(*columns)
        rows = rows.where(position < tuple_(*values) if descending else position > tuple_(*values))
    order = [c.desc() if descending else c.asc() for c in columns]
    return PageQuery(rows.order_by(*order).limit(first + 1), count)


def row_key(sort: StructureSort, row: Any) -> Any:
    """The sort key a cursor records for a row (None for the id sorts, where the id is the
    key); the page statement selects it last (read by position: see loaders.reader)."""
    return None if sort.by_id else row[-1]


def row_id(row: Any) -> int:
    """The structure id of a row starting with SUMMARY_COLUMNS."""
    return int(row[_ID])


def row_cursor(sort: StructureSort, row: Any) -> str:
    """The cursor of a page's row."""
    return encode_cursor(sort, row_key(sort, row), row_id(row))
