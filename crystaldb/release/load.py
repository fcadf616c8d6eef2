"""Reading a frozen release back as plain data, for the exporters and for `release diff`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select, text

import crystaldb
from crystaldb.core.release_data import Member, ReleaseData
from crystaldb.platform.arrays import numpy_rows
from crystaldb.platform.database import Database
from crystaldb.schema import Calculation, ExternalId, Label, Release, ReleaseMember, Structure


def load_release(db: Database, release: Release) -> ReleaseData:
    """Every member with its structure, label and COD id, in two queries."""
    ids = (
        select(
            ExternalId.structure_id,
            func.jsonb_object_agg(ExternalId.database, ExternalId.external_id).label("ids"),
        )
        .group_by(ExternalId.structure_id)
        .subquery("ids")
    )
    query = (
        select(
            ReleaseMember.position,
            ReleaseMember.split,
            Structure.id,
            Structure.lattice,
            Structure.frac_coords,
            Structure.atomic_numbers,
            Structure.reduced_formula,
            Structure.elements,
            Structure.spacegroup_number,
            Structure.spacegroup_symbol,
            Label.value,
            ids.c.ids,
            Structure.mass_numbers,
        )
        .join(Structure, Structure.id == ReleaseMember.structure_id)
        .outerjoin(Label, Label.id == ReleaseMember.label_id)
        .outerjoin(ids, ids.c.structure_id == Structure.id)
        .where(ReleaseMember.release_id == release.id)
        .order_by(ReleaseMember.position)
    )
    with db.session() as session:
        rows = numpy_rows(session, query)  # 10^6 atoms: arrays as NumPy, not Python floats
    label_unit, method = _label_method(db, release)
    members = tuple(
        Member(
            position=position,
            structure_id=sid,
            split=split,
            lattice=np.asarray(lattice, dtype=np.float64).reshape(3, 3),
            frac_coords=np.asarray(frac, dtype=np.float64).reshape(-1, 3),
            atomic_numbers=np.asarray(numbers, dtype=np.int64),
            reduced_formula=formula,
            elements=tuple(elements),
            spacegroup_number=sg_number,
            spacegroup_symbol=sg_symbol,
            external_ids=dict(external or {}),
            label=value,
            mass_numbers=None if masses is None else np.asarray(masses, dtype=np.int64),
        )
        for (
            position,
            split,
            sid,
            lattice,
            frac,
            numbers,
            formula,
            elements,
            sg_number,
            sg_symbol,
            value,
            external,
            masses,
        ) in rows
    )
    return ReleaseData(
        name=release.name,
        version=release.version,
        query=release.query,
        split_spec=release.split_spec,
        label_property=release.label_spec.get("property"),
        label_unit=label_unit,
        label_method=method,
        members=members,
        database_identity=database_identity(db),
        crystaldb_version=crystaldb.__version__,
    )


def _label_method(db: Database, release: Release) -> tuple[str | None, dict[str, Any]]:
    """Unit and method of the frozen labels (the distinct calculation methods among them)."""
    if not release.label_spec:
        return None, {}
    query = (
        select(
            Label.unit,
            Calculation.functional,
            Calculation.code,
            Calculation.code_version,
            Calculation.parameters,
            Calculation.reference,
        )
        .join(ReleaseMember, ReleaseMember.label_id == Label.id)
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(ReleaseMember.release_id == release.id)
        .distinct()
    )
    with db.session() as session:
        rows = session.execute(query).all()
    units = sorted({row.unit for row in rows})
    methods = [
        {
            "functional": row.functional,
            "code": row.code,
            "code_version": row.code_version,
            "parameters": row.parameters,
            "reference": row.reference,
        }
        for row in rows
    ]
    methods.sort(key=lambda m: repr(sorted(m.items())))
    method = methods[0] if len(methods) == 1 else {"methods": methods}
    return (units[0] if len(units) == 1 else ", ".join(units)) or None, method


def database_identity(db: Database) -> dict[str, str]:
    """Which database a release came from: server system id, database name, version."""
    with db.engine.connect() as conn:
        name = conn.execute(text("SELECT current_database()")).scalar_one()
        version = conn.execute(text("SHOW server_version")).scalar_one()
        try:
            system = conn.execute(text("SELECT system_identifier FROM pg_control_system()"))
            system_id = str(system.scalar_one())
        except Exception:  # needs pg_monitor rights on managed servers
            system_id = "unknown"
    return {"database": str(name), "server_version": str(version), "system_identifier": system_id}


@dataclass(frozen=True)
class ReleaseDiff:
    """What changed between two releases, by structure."""

    added: list[int]
    removed: list[int]
    relabelled: list[tuple[int, float | None, float | None]]
    moved: list[tuple[int, str, str]]  # structure, split in A, split in B


def diff_releases(db: Database, a: Release, b: Release) -> ReleaseDiff:
    """Members added, removed, relabelled (label value changed) and moved between splits."""

    def members(release: Release) -> dict[int, tuple[str, float | None]]:
        query = (
            select(ReleaseMember.structure_id, ReleaseMember.split, Label.value)
            .outerjoin(Label, Label.id == ReleaseMember.label_id)
            .where(ReleaseMember.release_id == release.id)
        )
        with db.session() as session:
            return {int(s): (str(p), v) for s, p, v in session.execute(query)}

    old, new = members(a), members(b)
    common = sorted(old.keys() & new.keys())
    return ReleaseDiff(
        added=sorted(new.keys() - old.keys()),
        removed=sorted(old.keys() - new.keys()),
        relabelled=[(s, old[s][1], new[s][1]) for s in common if old[s][1] != new[s][1]],
        moved=[(s, old[s][0], new[s][0]) for s in common if old[s][0] != new[s][0]],
    )
