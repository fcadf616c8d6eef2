"""The SQL reads behind the OPTIMADE endpoints: one page of structures, its count, and the
label and external-id values the provider fields show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from crystaldb.api.optimade.entries import StoredStructure
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.structures import ExternalId, Structure

_COLUMNS = [
    Structure.id,
    Structure.lattice,
    Structure.frac_coords,
    Structure.atomic_numbers,
    Structure.occupancies,
    Structure.reduced_formula,
    Structure.hill_formula,
    Structure.elements,
    Structure.nsites,
    Structure.spacegroup_number,
    Structure.spacegroup_symbol,
    Structure.crystal_system,
    Structure.created_at,
]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of matching structures, how many match in all, whether more follow."""

    rows: list[StoredStructure]
    returned: int
    more: bool


def page(session: Session, clause: ColumnElement[bool], offset: int, limit: int) -> Page:
    """Structures matching `clause` in id order, `limit` from `offset`."""
    query = select(*_COLUMNS).where(clause).order_by(Structure.id).offset(offset).limit(limit)
    raw = [dict(r._mapping) for r in session.execute(query)]
    returned = session.scalar(select(func.count()).select_from(Structure).where(clause)) or 0
    rows = _decorate(session, raw)
    return Page(rows, returned, offset + len(rows) < returned)


def one(session: Session, structure_id: int) -> StoredStructure | None:
    """One structure by id, or None."""
    raw = [dict(r._mapping) for r in session.execute(
        select(*_COLUMNS).where(Structure.id == structure_id)
    )]  # fmt: skip
    rows = _decorate(session, raw)
    return rows[0] if rows else None


def total(session: Session) -> int:
    """How many structures the database holds."""
    return session.scalar(select(func.count()).select_from(Structure)) or 0


def distinct(session: Session, column: Any) -> list[str]:
    """The distinct stored values of a text column (formula filters test their spellings)."""
    return list(session.scalars(select(column).distinct()))


def _decorate(session: Session, raw: list[dict[str, Any]]) -> list[StoredStructure]:
    """Rows with their first PBE band gap and COD id."""
    ids = [r["id"] for r in raw]
    gaps: dict[int, float] = {}
    cods: dict[int, str] = {}
    if ids:
        gap_query = (
            select(Label.structure_id, Label.value)
            .join(Calculation, Calculation.id == Label.calculation_id)
            .where(Label.structure_id.in_(ids), Label.property == "band_gap")
            .where(Calculation.functional == "PBE")
            .order_by(Label.id.desc())
        )
        gaps = {sid: value for sid, value in session.execute(gap_query)}
        cod_query = (
            select(ExternalId.structure_id, ExternalId.external_id)
            .where(ExternalId.structure_id.in_(ids), ExternalId.database == "cod")
            .order_by(ExternalId.external_id.desc())
        )
        cods = {sid: eid for sid, eid in session.execute(cod_query)}
    return [
        StoredStructure(**r, band_gap_pbe=gaps.get(r["id"]), cod_id=cods.get(r["id"])) for r in raw
    ]
