"""The database itself refuses inconsistent rows: checks, uniqueness, frozen releases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymatgen.core import Structure as PmgStructure
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from crystaldb.platform.database import Database
from crystaldb.schema import Calculation, Label, Release, ReleaseMember, Structure
from tests.realdata import SAMPLE

POSCAR = SAMPLE / "jarvis" / "POSCAR-JVASP-1996.vasp"


def _structure_row(fingerprint: str, **overrides: object) -> Structure:
    """A real structure (a JARVIS POSCAR, read by pymatgen) as a `structures` row."""
    pmg = PmgStructure.from_file(POSCAR)
    comp = pmg.composition
    elements = sorted(el.symbol for el in comp.elements)
    values: dict[str, object] = {
        "lattice": pmg.lattice.matrix.tolist(),
        "frac_coords": pmg.frac_coords.tolist(),
        "atomic_numbers": [site.specie.Z for site in pmg],
        "reduced_formula": comp.reduced_formula,
        "hill_formula": comp.hill_formula.replace(" ", ""),
        "anonymous_formula": comp.anonymized_formula,
        "elements": elements,
        "nelements": len(elements),
        "nsites": len(pmg),
        "spacegroup_number": pmg.get_space_group_info()[1],
        "volume": pmg.volume,
        "density": float(pmg.density),
        "fingerprint": fingerprint,
    }
    values.update(overrides)
    return Structure(**values)


@pytest.fixture
def stored(db: Database, request: pytest.FixtureRequest) -> Iterator[int]:
    """One real structure stored for the test, removed afterwards."""
    with db.session() as session:
        row = _structure_row(f"test-{request.node.name}"[:64])
        session.add(row)
        session.flush()
        structure_id = row.id
    yield structure_id
    with db.session() as session:
        session.execute(delete(Structure).where(Structure.id == structure_id))


def test_a_real_structure_round_trips(db: Database, stored: int) -> None:
    with db.session() as session:
        row = session.get_one(Structure, stored)
        assert row.nsites == len(row.atomic_numbers) == len(row.frac_coords)
        assert len(row.lattice) == 3 and all(len(v) == 3 for v in row.lattice)
        assert 1 <= (row.spacegroup_number or 0) <= 230


def test_same_fingerprint_cannot_be_stored_twice(db: Database, stored: int) -> None:
    with db.session() as session:
        fingerprint = session.get_one(Structure, stored).fingerprint
    with pytest.raises(IntegrityError, match="uq_structures_fingerprint"), db.session() as session:
        session.add(_structure_row(fingerprint))


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        ({"spacegroup_number": 231}, "ck_structures_spacegroup_number"),
        ({"nsites": 999}, "ck_structures_nsites"),
        ({"crystal_system": "rhombic"}, "ck_structures_crystal_system"),
        ({"volume": -1.0}, "ck_structures_volume"),
    ],
)
def test_inconsistent_structures_are_refused(
    db: Database, overrides: dict[str, object], constraint: str
) -> None:
    with pytest.raises(IntegrityError, match=constraint), db.session() as session:
        session.add(_structure_row("bad-row", **overrides))


def test_a_label_must_belong_to_its_calculations_structure(db: Database, stored: int) -> None:
    with db.session() as session:
        other = _structure_row("test-other-structure")
        calc = Calculation(structure_id=stored, functional="PBE", code="VASP")
        session.add_all([other, calc])
        session.flush()
        ids = (calc.id, other.id)
        session.add(
            Label(
                calculation_id=calc.id,
                structure_id=stored,
                property="band_gap",
                value=1.5,
                unit="eV",
            )
        )
    with pytest.raises(IntegrityError, match="fk_labels"), db.session() as session:
        session.add(
            Label(
                calculation_id=ids[0],
                structure_id=ids[1],
                property="band_gap_direct",
                value=2.0,
                unit="eV",
            )
        )
    with db.session() as session:
        session.execute(delete(Structure).where(Structure.id == ids[1]))


def test_releases_are_immutable(db: Database, stored: int, request: pytest.FixtureRequest) -> None:
    with db.session() as session:
        release = Release(name=f"frozen-{request.node.name}", version="1.0")
        session.add(release)
        session.flush()
        session.add(
            ReleaseMember(release_id=release.id, position=0, structure_id=stored, split="train")
        )
        release_id = release.id
    statements = [
        update(Release).where(Release.id == release_id).values(version="1.1"),
        update(ReleaseMember).where(ReleaseMember.release_id == release_id).values(split="test"),
        delete(ReleaseMember).where(ReleaseMember.release_id == release_id),
        delete(Release).where(Release.id == release_id),
    ]
    for statement in statements:
        with pytest.raises(IntegrityError, match="releases are immutable"), db.session() as s:
            s.execute(statement)
    # The member keeps the structure alive: deleting it is refused by the foreign key.
    with pytest.raises(IntegrityError), db.session() as session:
        session.execute(delete(Structure).where(Structure.id == stored))
    with db.engine.begin() as conn:  # test cleanup only: lift the freeze for this release
        conn.exec_driver_sql("ALTER TABLE release_members DISABLE TRIGGER release_members_frozen")
        conn.exec_driver_sql("ALTER TABLE releases DISABLE TRIGGER releases_frozen")
        conn.execute(delete(ReleaseMember).where(ReleaseMember.release_id == release_id))
        conn.execute(delete(Release).where(Release.id == release_id))
        conn.exec_driver_sql("ALTER TABLE release_members ENABLE TRIGGER release_members_frozen")
        conn.exec_driver_sql("ALTER TABLE releases ENABLE TRIGGER releases_frozen")
