"""The SQL reads behind the OPTIMADE endpoints: one page of structures, its count, and the
label and external-id values the provider fields show.

`meta.data_returned` is exact (the spec's meaning): a short page knows it, a cursor carries
the first page's, and a full page counts, once per filter and database snapshot. The count is
kept keyed by the count statement (its SQL and parameters) and the snapshot the counting
statement read (`pg_current_snapshot()`: the oldest running transaction, the next
transaction id and the running ones). Two statements with the same snapshot see the same
committed rows, so a page whose own statement reads the same snapshot reuses the count
exactly; any write anywhere in the cluster (a new transaction id, a commit) changes the
snapshot and the next page counts again. A transaction that has written (it has an id) neither
keeps nor reuses counts: its own changes are not in the snapshot's text.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Text, case, func, select
from sqlalchemy.orm import Session

from crystaldb.api.optimade.entries import FALLBACK, Row
from crystaldb.api.optimade.paging import Sort, decode, encode
from crystaldb.core.lru import Lru
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.ml import Model, Prediction
from crystaldb.schema.releases import Release, ReleaseMember
from crystaldb.schema.structures import ExternalId, Structure

# every column an attribute is built from (entries.BUILDERS), by name; the site counts of
# the formula fallback only for rows whose stored formulas are not whole-number ones
COLUMNS: dict[str, Any] = {
    name: getattr(Structure, name)
    for name in ("id", "lattice", "frac_coords", "atomic_numbers", "occupancies",
                 "reduced_formula", "hill_formula", "elements", "nsites", "spacegroup_number",
                 "spacegroup_symbol", "crystal_system", "created_at")
}  # fmt: skip
_WHOLE = "^([A-Z][a-z]?[0-9]*)+$"
COLUMNS[FALLBACK] = case(
    (
        Structure.reduced_formula.contains(".") | ~Structure.hill_formula.regexp_match(_WHOLE),
        Structure.atomic_numbers,
    )
)
_DECORATIONS = ("band_gap_pbe", "cod_id", "releases")  # from other tables, by _decorate
GAP, PREDICTION = "gap:", "prediction:"  # decorations named by functional, by model (provider)


# the snapshot the statement reads, as text; NULL in a transaction that has written
SNAPSHOT = case(
    (
        func.pg_current_xact_id_if_assigned().is_(None),
        func.pg_current_snapshot().cast(Text),
    )
).label("snapshot")
# (database, snapshot, count statement and parameters) -> how many match
COUNTS: Lru[tuple[str, str, Any], int] = Lru(512, 32 << 20, lambda key: 100 + len(repr(key[2])))


def _hashable(value: Any) -> Any:
    """A bound parameter as a dictionary key (lists, as array parameters come, to tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    return value


def _statement_key(statement: Any, dialect: Any) -> tuple[Any, ...]:
    """A statement as a dictionary key: SQLAlchemy's own cache key (the SQL's shape, as its
    compiled cache keys it) and the parameter values; the compiled SQL where it has none."""
    found = statement._generate_cache_key()
    if found is not None:  # 0.5 ms against 2 ms for compiling
        values = tuple(_hashable(p.effective_value) for p in found.bindparams)
        return ("key", found.key, values)
    compiled = statement.compile(dialect=dialect)
    params = tuple(sorted((k, _hashable(v)) for k, v in compiled.params.items()))
    return ("sql", str(compiled), params)


def count(session: Session, clause: ColumnElement[bool], snapshot: str | None = None) -> int:
    """How many structures match `clause`: reused when counted under the same `snapshot` (the
    one the caller's page statement read), else counted and kept under the counting
    statement's own snapshot."""
    statement = select(func.count(), SNAPSHOT).select_from(Structure).where(clause)
    engine = session.get_bind().engine
    database = engine.url.render_as_string(hide_password=True)
    key = _statement_key(statement, engine.dialect)
    found = None if snapshot is None else COUNTS.get((database, snapshot, key))
    if found is not None:
        return found
    counted, seen = session.execute(statement).one()
    if seen is not None:
        COUNTS.put((database, seen, key), counted)
    return int(counted)


def _selected(columns: set[str]) -> list[Any]:
    """The SQL of the named columns (the decorations come from their own queries)."""
    return [COLUMNS[name].label(name) for name in COLUMNS if name in columns]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of matching structures, how many match in all, whether more follow, and the
    cursor of its last row (None when it is the last page)."""

    rows: list[Row]
    returned: int
    more: bool
    cursor: str | None = None


def page(
    session: Session,
    clause: ColumnElement[bool],
    limit: int,
    sort: Sort,
    offset: int = 0,
    cursor: str | None = None,
    columns: set[str] | None = None,
) -> Page:
    """Structures matching `clause` in the sort's order: `limit` after the cursor when there
    is one (a keyset seek, as fast on page 1,000 as on page 1), else from `offset`; only the
    `columns` named (entries.needed), all when None."""
    columns = set(COLUMNS) | set(_DECORATIONS) if columns is None else columns | {"id"}
    key = sort.key()
    # a page that may count reads its snapshot too (see the module's docstring)
    stamp = [SNAPSHOT] if cursor is None else []
    query = select(*_selected(columns), key.label("sort_key"), *stamp).where(clause)
    returned: int | None = None
    if cursor is not None:
        value, last_id, returned = decode(sort, cursor)
        query = query.where(sort.after(key, value, last_id))
    elif offset:
        query = query.offset(offset)
    found = list(session.execute(query.order_by(*sort.order(key)).limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    if returned is None and not more and (found or not offset):
        returned = offset + len(found)  # the last page: nothing to count
    if returned is None:  # the first page counts; its cursor carries the count on
        returned = count(session, clause, found[0].snapshot if found else None)
    last = encode(sort, found[-1].sort_key, found[-1].id, returned) if more else None
    rows = [dict(r._mapping) for r in found]
    return Page(_decorate(session, rows, columns), returned, more, last)


def one(session: Session, structure_id: int, columns: set[str] | None = None) -> Row | None:
    """One structure by id with the `columns` named (all when None), or None."""
    columns = set(COLUMNS) | set(_DECORATIONS) if columns is None else columns | {"id"}
    query = select(*_selected(columns)).where(Structure.id == structure_id)
    rows = _decorate(session, [dict(r._mapping) for r in session.execute(query)], columns)
    return rows[0] if rows else None


_TOTAL: dict[int, tuple[float, int]] = {}  # engine id -> (when counted, how many)
TOTAL_TTL = 60.0  # seconds a count of all structures (meta.data_available) is reused


def total(session: Session) -> int:
    """How many structures the database holds, counted at most once a minute (an exact count
    scans the whole table: 100 ms at 300,000 rows, on every page otherwise)."""
    engine = id(session.get_bind())
    now = time.monotonic()
    cached = _TOTAL.get(engine)
    if cached is None or now - cached[0] > TOTAL_TTL:
        cached = (now, session.scalar(select(func.count()).select_from(Structure)) or 0)
        _TOTAL[engine] = cached
    return cached[1]


def distinct(session: Session, column: Any) -> list[str]:
    """The distinct stored values of a text column (formula filters test their spellings)."""
    return list(session.scalars(select(column).distinct()))


def _decorate(session: Session, rows: list[Row], columns: set[str]) -> list[Row]:
    """Rows with their smallest PBE band gap (the one `sort` orders by) and COD id, when
    `columns` asks for them."""
    ids = [r["id"] for r in rows]
    if ids and "band_gap_pbe" in columns:
        gap_query = (
            select(Label.structure_id, func.min(Label.value))
            .join(Calculation, Calculation.id == Label.calculation_id)
            .where(Label.structure_id.in_(ids), Label.property == "band_gap")
            .where(Calculation.functional == "PBE")
            .group_by(Label.structure_id)
        )
        gaps = {sid: value for sid, value in session.execute(gap_query)}
        for row in rows:
            row["band_gap_pbe"] = gaps.get(row["id"])
    if ids and "cod_id" in columns:
        cod_query = (
            select(ExternalId.structure_id, ExternalId.external_id)
            .where(ExternalId.structure_id.in_(ids), ExternalId.database == "cod")
            .order_by(ExternalId.external_id.desc())
        )
        cods = {sid: eid for sid, eid in session.execute(cod_query)}
        for row in rows:
            row["cod_id"] = cods.get(row["id"])
    if ids:
        _decorate_more(session, rows, ids, columns)
    return rows


def _decorate_more(session: Session, rows: list[Row], ids: list[int], columns: set[str]) -> None:
    """Rows with their releases ("NAME:VERSION", sorted), their smallest band gap per functional
    and their most recent prediction per model, as `columns` asks (provider.Catalogue)."""
    by_id = {row["id"]: row for row in rows}
    if "releases" in columns:
        for row in rows:
            row["releases"] = []
        members = (
            select(ReleaseMember.structure_id, Release.name, Release.version)
            .join(Release, Release.id == ReleaseMember.release_id)
            .where(ReleaseMember.structure_id.in_(ids))
            .order_by(Release.name, Release.version)
        )
        for sid, name, version in session.execute(members):
            by_id[sid]["releases"].append(f"{name}:{version}")
    functionals = [c.removeprefix(GAP) for c in columns if c.startswith(GAP)]
    models = [c.removeprefix(PREDICTION) for c in columns if c.startswith(PREDICTION)]
    for row in rows:
        row.update({f"{GAP}{f}": None for f in functionals})
        row.update({f"{PREDICTION}{m}": None for m in models})
    if functionals:
        gaps = (
            select(Label.structure_id, Calculation.functional, func.min(Label.value))
            .join(Calculation, Calculation.id == Label.calculation_id)
            .where(Label.structure_id.in_(ids), Label.property == "band_gap")
            .where(Calculation.functional.in_(functionals))
            .group_by(Label.structure_id, Calculation.functional)
        )
        for sid, functional, value in session.execute(gaps):
            by_id[sid][f"{GAP}{functional}"] = _finite(value)
    if models:
        predicted = (
            select(Prediction.structure_id, Model.name, Prediction.value)
            .join(Model, Model.id == Prediction.model_id)
            .where(Prediction.structure_id.in_(ids), Prediction.property == "band_gap")
            .where(Model.name.in_(models))
            .order_by(Prediction.id)
        )
        for sid, model, value in session.execute(predicted):  # the most recent comes last
            by_id[sid][f"{PREDICTION}{model}"] = _finite(value)


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those are unknown."""
    return value if value is not None and math.isfinite(value) else None
