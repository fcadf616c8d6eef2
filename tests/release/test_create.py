"""Releases on a real database: selection, order, splits, immutability, diff, round trips."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import ase.io
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from crystaldb.core.splits import SplitError
from crystaldb.jobs.ingest import ingest_omdb_gap1, ingest_paths
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.query.ast import FilterError
from crystaldb.query.selection import find_release, select_structures
from crystaldb.query.sql import where
from crystaldb.release.create import create_release
from crystaldb.release.export import export_release
from crystaldb.release.load import diff_releases, load_release
from crystaldb.schema import (
    Label,
    ReleaseMember,
    Source,
    Structure,
)
from crystaldb.schema.releases import ReleaseError
from tests.conftest import DatabaseFactory, run_cli
from tests.realdata import MOLECULAR_XYZ, SAMPLE
from tests.sampledb import add_band_gap

pytestmark = pytest.mark.slow


def omdb_layout(folder: Path) -> Path:
    """An OMDB-GAP1-layout folder from the real molecular crystals (labels made up here)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(MOLECULAR_XYZ, folder / "structures.xyz")
    frames = sum(1 for line in MOLECULAR_XYZ.read_text().splitlines() if "Lattice=" in line)
    (folder / "bandgaps.csv").write_text("".join(f"{0.31 * i:.18e}\n" for i in range(frames)))
    (folder / "CODids.csv").write_text("".join(f"{4000000 + i}\n" for i in range(frames)))
    return folder


def fresh(databases: DatabaseFactory, data_dir: Path) -> tuple[Settings, Database]:
    return databases.migrated("crystaldb_release", data_dir)


@pytest.fixture(scope="module")
def loaded(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Database]]:
    """One database with an imported OMDB-GAP1-layout folder and the sample's COD structures."""
    tmp = tmp_path_factory.mktemp("release")
    settings, db = fresh(databases, tmp / "data")
    ingest_omdb_gap1(db, settings, omdb_layout(tmp / "omdb"))
    ingest_paths(db, settings, [SAMPLE / "cod"], chunk_size=32)
    yield settings, db
    db.dispose()


def _members(db: Database, release_id: int) -> list[tuple[int, str, float | None]]:
    with db.session() as session:
        return [
            (int(s), str(p), v)
            for s, p, v in session.execute(
                select(ReleaseMember.structure_id, ReleaseMember.split, Label.value)
                .outerjoin(Label, Label.id == ReleaseMember.label_id)
                .where(ReleaseMember.release_id == release_id)
                .order_by(ReleaseMember.position)
            )
        ]


def test_ordered_split_keeps_the_import_order_and_freezes_pbe_labels(
    loaded: tuple[Settings, Database],
) -> None:
    _, db = loaded
    release_id = create_release(
        db, "omdb", "1.0", label="band_gap:PBE", split="ordered:14,4", where="cod >= 4000000"
    )
    members = _members(db, release_id)
    assert [split for _, split, _ in members] == ["train"] * 14 + ["test"] * 4
    with db.session() as session:
        rows = session.execute(
            select(Source.structure_id, Source.entry).where(Source.path.like("%structures.xyz"))
        )
        entry_of = {sid: entry for sid, entry in rows}
    entries = [entry_of[sid] for sid, _, _ in members]
    assert entries == sorted(entries)  # the folder's own order
    for (_, _, value), entry in zip(members, entries, strict=True):
        assert value == pytest.approx(0.31 * entry, abs=1e-15)


def test_a_split_that_does_not_fit_is_refused(loaded: tuple[Settings, Database]) -> None:
    _, db = loaded
    with pytest.raises(SplitError, match=r"add up to 10, but the selection has 18"):
        create_release(db, "misfit", "1", label="band_gap:PBE", split="ordered:5,5")


@pytest.mark.parametrize("split", ["random:0.6,0.2,0.2:7", "kfold:4:3", "group-by:elements"])
def test_seeded_splits_are_reproducible_and_never_split_a_structure(
    loaded: tuple[Settings, Database], split: str
) -> None:
    _, db = loaded
    name = f"s-{split.split(':')[0]}"  # release names hold no ':'
    first = _members(db, create_release(db, name, "a", split=split))
    second = _members(db, create_release(db, name, "b", split=split))
    assert first == second
    ids = [sid for sid, _, _ in first]
    assert len(ids) == len(set(ids))  # one structure, one side
    with db.session() as session:
        fingerprints = session.scalars(select(Structure.fingerprint).where(Structure.id.in_(ids)))
        assert len(set(fingerprints)) == len(ids)
        if split.startswith("group-by"):
            rows = session.execute(
                select(Structure.id, Structure.elements).where(Structure.id.in_(ids))
            )
            elements = {sid: els for sid, els in rows}
            side_of: dict[tuple[str, ...], set[str]] = {}
            for sid, part, _ in first:
                side_of.setdefault(tuple(elements[sid]), set()).add(part)
            assert all(len(sides) == 1 for sides in side_of.values())
    counts = Counter(part for _, part, _ in first)
    if split.startswith("kfold"):
        assert set(counts) == {"fold-0", "fold-1", "fold-2", "fold-3"}
        assert max(counts.values()) - min(counts.values()) <= 1


def test_releases_are_immutable_and_name_version_is_never_reused(
    loaded: tuple[Settings, Database],
) -> None:
    _, db = loaded
    release_id = create_release(db, "frozen", "1.0", where="nsites < 60")
    with pytest.raises(IntegrityError, match="releases are immutable"), db.session() as session:
        session.execute(
            update(ReleaseMember).where(ReleaseMember.release_id == release_id).values(split="x")
        )
    with pytest.raises(ReleaseError, match=r"frozen 1\.0 already exists"):
        create_release(db, "frozen", "1.0", where="nsites < 60")
    with db.session() as session:
        small = session.scalars(select(Structure.id).where(where("nsites < 60"))).all()
    assert sorted(sid for sid, _, _ in _members(db, release_id)) == sorted(small) != []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"where": "nsites < 0"}, ReleaseError, "the selection is empty"),
        ({"where": "nsites <"}, FilterError, "--where"),
        ({"label": "band_gap"}, ReleaseError, "expected PROPERTY:FUNCTIONAL"),
        ({"split": "halves"}, SplitError, "--split halves"),
        ({"label": "band_gap:HSE06"}, ReleaseError, "with a band_gap:HSE06 label"),
    ],
)
def test_bad_release_arguments_are_clear_errors(
    loaded: tuple[Settings, Database], kwargs: dict[str, str], error: type, message: str
) -> None:
    _, db = loaded
    with pytest.raises(error, match=message):
        create_release(db, "bad", "1", **kwargs)


def test_a_reference_reads_the_same_in_filters_and_commands(
    loaded: tuple[Settings, Database],
) -> None:
    _, db = loaded
    create_release(db, "beta", "x:1", where="cod >= 4000000 and nsites < 120")
    by_command = select_structures(db, release="beta:x:1")
    with db.session() as session:
        query = select(Structure.id).where(where('release = "beta:x:1"'))
        by_filter = session.scalars(query).all()
    assert by_command.description.startswith("release beta:x:1 (")
    assert sorted(by_command.structure_ids) == sorted(by_filter) != []
    assert find_release(db, "beta", "x:1").id == by_command.release_id


def test_a_name_that_a_reference_could_not_name_back_is_refused(
    loaded: tuple[Settings, Database],
) -> None:
    _, db = loaded
    with pytest.raises(ReleaseError, match=r"^NAME 'beta:y': a release name cannot contain ':'"):
        create_release(db, "beta:y", "1", where="cod >= 4000000")
    with pytest.raises(ReleaseError, match=r"^--version: a release needs a non-empty version"):
        create_release(db, "beta", "", where="cod >= 4000000")
    with pytest.raises(ReleaseError, match="no release beta:y"):
        find_release(db, "beta:y")


def test_an_unknown_release_is_named_with_the_versions_of_its_name(
    loaded: tuple[Settings, Database],
) -> None:
    _, db = loaded
    create_release(db, "gamma", "1", where="cod >= 4000000")
    create_release(db, "gamma", "2:rc", where="cod >= 4000000")
    with pytest.raises(
        ReleaseError, match=r"^--release: no release gamma:3; release gamma has versions 1, 2:rc$"
    ):
        select_structures(db, release="gamma:3")
    with pytest.raises(
        ReleaseError, match=r"^no release delta; none is named delta \(known releases: .*gamma"
    ):
        find_release(db, "delta")


def test_a_release_takes_its_members_by_id(loaded: tuple[Settings, Database]) -> None:
    _, db = loaded
    with db.session() as session:
        every = session.scalars(select(Structure.id).order_by(Structure.id)).all()
    chosen = [every[5], every[1], every[9], every[3]]
    by_id = _members(db, create_release(db, "by-id", "1", ids=chosen, split="ordered:3,1"))
    listed = f"id in ({', '.join(map(str, chosen))})"
    by_filter = _members(
        db, create_release(db, "by-filter", "1", where=listed, split="ordered:3,1")
    )
    assert by_id == by_filter and sorted(sid for sid, _, _ in by_id) == sorted(chosen)
    assert find_release(db, "by-id", "1").query is None
    with pytest.raises(ReleaseError, match="by a filter or by ids, not both"):
        create_release(db, "by-id", "2", ids=chosen, where="nsites < 60")


def test_diff_lists_added_removed_relabelled_and_moved(loaded: tuple[Settings, Database]) -> None:
    _, db = loaded
    where = "cod >= 4000000"
    create_release(db, "d", "1", where=f"{where} and nsites < 120", label="band_gap:PBE")
    with db.session() as session:  # a second functional for two structures
        structure_ids = [sid for sid, _, _ in _members(db, find_release(db, "d", "1").id)[:2]]
        for sid in structure_ids:
            add_band_gap(session, sid, "HSE06", 9.5)
    create_release(db, "d", "2", where=where, label="band_gap:PBE")
    create_release(db, "d", "3", where=f"{where} and nsites < 120", label="band_gap:HSE06")
    v1, v2, v3 = (find_release(db, "d", v) for v in ("1", "2", "3"))
    in_v1 = {sid for sid, _, _ in _members(db, v1.id)}

    grown = diff_releases(db, v1, v2)  # the nsites filter dropped
    assert grown.removed == [] and grown.relabelled == [] and grown.moved == []
    assert set(grown.added) == {sid for sid, _, _ in _members(db, v2.id)} - in_v1 != set()

    hse = diff_releases(db, v1, v3)  # only the two with an HSE06 gap, relabelled
    assert set(hse.removed) == in_v1 - set(structure_ids)
    assert hse.added == []
    assert {sid: new for sid, _, new in hse.relabelled} == dict.fromkeys(structure_ids, 9.5)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_export_twice_is_byte_identical(loaded: tuple[Settings, Database], tmp_path: Path) -> None:
    _, db = loaded
    create_release(
        db, "bytes", "1.0", label="band_gap:PBE", split="ordered:14,4", where="cod >= 4000000"
    )
    release = find_release(db, "bytes", "1.0")
    export_release(load_release(db, release), "omdb-gap1", tmp_path / "a")
    export_release(load_release(db, release), "omdb-gap1", tmp_path / "b")
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert {"structures.xyz", "bandgaps.csv", "CODids.csv", "README.md", "manifest.json"} <= set(
        _digests(tmp_path / "a")
    )


def test_omdb_gap1_export_reimports_and_exports_to_the_same_files(
    loaded: tuple[Settings, Database], databases: DatabaseFactory, tmp_path: Path
) -> None:
    _, db = loaded
    create_release(
        db, "trip", "1.0", label="band_gap:PBE", split="ordered:14,4", where="cod >= 4000000"
    )
    first = tmp_path / "first"
    export_release(load_release(db, find_release(db, "trip", "1.0")), "omdb-gap1", first)

    settings2, db2 = fresh(databases, tmp_path / "data2")
    ingest_omdb_gap1(db2, settings2, first)
    create_release(db2, "trip", "1.0", label="band_gap:PBE", split="ordered:14,4")
    second = tmp_path / "second"
    export_release(load_release(db2, find_release(db2, "trip", "1.0")), "omdb-gap1", second)
    a, b = _digests(first), _digests(second)
    a.pop("manifest.json"), b.pop("manifest.json")  # names the source database and its ids
    assert a == b
    db2.dispose()


def test_release_commands_end_to_end(databases: DatabaseFactory, tmp_path: Path) -> None:
    url = databases.create("crystaldb_release_cli").render_as_string(hide_password=False)
    env = {"CRYSTALDB_DATABASE_URL": url, "CRYSTALDB_DATA_DIR": str(tmp_path / "data")}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    folder = omdb_layout(tmp_path / "omdb")
    ingest = run_cli("ingest", "--format", "omdb-gap1", str(folder), env=env)
    assert ingest.returncode == 0, ingest.stderr
    created = run_cli(
        "release",
        "create",
        "omdb",
        "--version",
        "1.0",
        "--label",
        "band_gap:PBE",
        "--split",
        "ordered:14,4",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert "18 members (4 test, 14 train)" in created.stdout
    listed = run_cli("release", "list", env=env)
    assert "omdb" in listed.stdout and "ordered:14,4" in listed.stdout
    out = tmp_path / "export"
    exported = run_cli("release", "export", "omdb:1.0", "--out", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    assert (out / "bandgaps.csv").read_text().count("\n") == 18
    again = run_cli("release", "export", "omdb", "--out", str(out), env=env)
    assert again.returncode == 2 and "not empty" in again.stderr
    missing = run_cli("release", "export", "nope", "--out", str(tmp_path / "x"), env=env)
    assert missing.returncode == 2 and "NAME: no release nope; none is named nope" in missing.stderr
    refused = run_cli("release", "create", "omdb:x", "--version", "2", env=env)
    assert refused.returncode == 2
    assert "NAME 'omdb:x': a release name cannot contain ':'" in refused.stderr
    diff = run_cli("release", "diff", "omdb:1.0", "omdb:1.0", env=env)
    assert "0 added, 0 removed, 0 relabelled" in diff.stdout


def test_deuterated_members_are_loaded_and_exported_with_their_masses(
    loaded: tuple[Settings, Database], tmp_path: Path
) -> None:
    _, db = loaded
    create_release(db, "heavy", "1.0", where="cod in (1000002, 2000583, 2103766, 2000642)")
    data = load_release(db, find_release(db, "heavy", "1.0"))
    members = {m.external_ids["cod"]: m for m in data.members}
    assert members["2000642"].mass_numbers is None
    for cod in ("1000002", "2000583", "2103766"):
        masses = members[cod].mass_numbers
        assert masses is not None and set(masses.tolist()) == {0, 2}
        assert (masses == 2).tolist() == (members[cod].atomic_numbers == 1).tolist()
    export_release(data, "extxyz", tmp_path / "heavy")
    frames = ase.io.read(tmp_path / "heavy" / "structures.extxyz", index=":")
    assert [a.has("masses") for a in frames] == [m.mass_numbers is not None for m in data.members]
