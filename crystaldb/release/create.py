"""Freezing a selection of structures, and their labels, into an immutable versioned release.

Members are ordered by where they came from (the file and entry that first stored each
structure, then the structure id), so a release of an imported OMDB-GAP1 folder keeps the
folder's order, and re-creating a release with the same arguments gives the same members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Select,
    any_,
    cast,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.exc import IntegrityError

from crystaldb.core.splits import assign, parse_split
from crystaldb.platform.database import Database, copy_connection
from crystaldb.query.sql import where as parse_where
from crystaldb.schema import Calculation, Label, Release, ReleaseMember, Source, Structure
from crystaldb.schema.releases import ReleaseError, check_new_release
from crystaldb.schema.runs import track_run


@dataclass(frozen=True)
class LabelChoice:
    """Which label a release freezes: property and the functional that computed it."""

    property: str
    functional: str

    @classmethod
    def parse(cls, text: str) -> LabelChoice:
        """`band_gap:PBE` -> the PBE band gap."""
        prop, sep, functional = text.partition(":")
        if not prop or not sep or not functional:
            raise ReleaseError(f"--label {text}: expected PROPERTY:FUNCTIONAL, e.g. band_gap:PBE")
        return cls(prop, functional)

    def record(self) -> dict[str, str]:
        """What the release row keeps as its `label_spec`."""
        return {"property": self.property, "functional": self.functional}


@dataclass(frozen=True)
class Candidate:
    """A selected structure in release order, with the label it will carry."""

    structure_id: int
    label_id: int | None
    group: object


def create_release(
    db: Database,
    name: str,
    version: str,
    *,
    where: str | None = None,
    ids: Sequence[int] | None = None,
    label: str | None = None,
    split: str | None = None,
    description: str | None = None,
) -> int:
    """Select, order, split and store a release in one transaction; returns its id.

    The members are what `where` selects, or the structures `ids` names (for a job that
    already knows them), or every structure; without a split every member is in split `all`.
    """
    check_new_release(name, version)
    spec = parse_split(split) if split else None
    choice = LabelChoice.parse(label) if label else None
    condition = member_condition(where, ids)
    group_field = spec.group_field if spec is not None else None
    parameters = {
        "name": name,
        "version": version,
        "where": where,
        "given_ids": None if ids is None else len(ids),
        "label": label,
        "split": split,
    }
    with track_run(db, "release-create", parameters) as run:
        candidates = select_members(db, condition, choice, group_field)
        if not candidates:
            raise ReleaseError(
                f"release {name} {version}: the selection is empty"
                + (f" (--where {where})" if where else "")
                + (f" (the {len(ids)} ids given)" if ids is not None else "")
                + (f" (only structures with a {label} label)" if label else "")
            )
        if spec is None:
            splits = ["all"] * len(candidates)
        else:
            splits = assign(spec, len(candidates), [c.group for c in candidates])
        release_id = _store(
            db, name, version, where, choice, split, description, run.id, candidates, splits
        )
        run.results.update({"release_id": release_id, "members": len(candidates)})
    return release_id


def member_condition(where: str | None, ids: Sequence[int] | None) -> ColumnElement[bool]:
    """What a release selects: a filter, the structures of an id list, or (neither) all."""
    if where is not None and ids is not None:
        raise ReleaseError("a release selects by a filter or by ids, not both")
    if ids is not None:
        return Structure.id == any_(cast(list(ids), ARRAY(BigInteger)))
    return parse_where(where) if where else true()


def select_members(
    db: Database,
    condition: ColumnElement[bool],
    choice: LabelChoice | None,
    group_field: str | None,
) -> list[Candidate]:
    """The structures the filter selects, in release order, with the label to freeze."""
    with db.session() as session:
        rows = session.execute(_member_query(condition, choice, group_field)).all()
    return [Candidate(int(sid), lid, _group(g)) for sid, lid, g in rows]


def _group(value: Any) -> object:
    return tuple(value) if isinstance(value, list) else value


def _member_query(
    condition: ColumnElement[bool], choice: LabelChoice | None, group_field: str | None
) -> Select[Any]:
    """One query: filter, first source for the order, the earliest matching label."""
    origin = (
        select(Source.structure_id, Source.path, Source.entry)
        .ext(distinct_on(Source.structure_id))
        .order_by(Source.structure_id, Source.duplicate, Source.id)
        .subquery("origin")
    )
    group = getattr(Structure, group_field) if group_field else literal(None)
    if choice is None:
        label_id: Any = literal(None)
        label_join = None
    else:
        chosen = (
            select(Label.structure_id, Label.id.label("label_id"))
            .join(Calculation, Calculation.id == Label.calculation_id)
            .where(Label.property == choice.property, Calculation.functional == choice.functional)
            .ext(distinct_on(Label.structure_id))
            .order_by(Label.structure_id, Label.calculation_id)
            .subquery("chosen")
        )
        label_id, label_join = chosen.c.label_id, chosen
    query = (
        select(Structure.id, label_id, group)
        .select_from(Structure)
        .outerjoin(origin, origin.c.structure_id == Structure.id)
        .where(condition)
    )
    if label_join is not None:
        query = query.join(label_join, label_join.c.structure_id == Structure.id)
    return query.order_by(origin.c.path, origin.c.entry, Structure.id)


def _store(
    db: Database,
    name: str,
    version: str,
    where: str | None,
    choice: LabelChoice | None,
    split: str | None,
    description: str | None,
    run_id: int,
    candidates: Sequence[Candidate],
    splits: Sequence[str],
) -> int:
    """The release row and its members, all or nothing; a taken name+version is refused."""
    label_spec = choice.record() if choice else {}
    try:
        with db.session() as session:
            release = Release(
                name=name,
                version=version,
                description=description,
                query=where,
                label_spec=label_spec,
                split_spec=split,
                run_id=run_id,
            )
            session.add(release)
            session.flush()
            pg = copy_connection(session)
            with pg.cursor().copy(
                "COPY release_members (release_id, position, structure_id, split, label_id)"
                " FROM STDIN"
            ) as copy:
                for position, (member, part) in enumerate(zip(candidates, splits, strict=True)):
                    copy.write_row(
                        (release.id, position, member.structure_id, part, member.label_id)
                    )
            return int(release.id)
    except IntegrityError as exc:
        if "uq_releases_name_version" in str(exc):
            raise ReleaseError(
                f"release {name} {version} already exists; releases are immutable: "
                "create a new --version"
            ) from None
        raise


def member_counts(db: Database, release_id: int) -> dict[str, int]:
    """How many members each split holds."""
    with db.session() as session:
        rows = session.execute(
            select(ReleaseMember.split, func.count())
            .where(ReleaseMember.release_id == release_id)
            .group_by(ReleaseMember.split)
            .order_by(ReleaseMember.split)
        ).all()
    return {str(split): int(n) for split, n in rows}


def list_releases(db: Database) -> list[Release]:
    """All releases, oldest first."""
    with db.session() as session:
        releases = list(session.scalars(select(Release).order_by(Release.created_at, Release.id)))
        session.expunge_all()
    return releases
