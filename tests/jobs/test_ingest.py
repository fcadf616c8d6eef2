"""Batch ingestion into a real PostgreSQL through real Dask worker processes, on real files."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from crystaldb.formats.files import Payload
from crystaldb.jobs import ingest as pipeline
from crystaldb.jobs.ingest import (
    CRASHED,
    IngestInputError,
    ingest_omdb_gap1,
    ingest_paths,
    run_batch,
)
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import Settings, load_settings
from crystaldb.schema import (
    Calculation,
    ExternalId,
    IngestBatch,
    IngestReject,
    Label,
    Run,
    Source,
    Structure,
    migrate,
)
from tests.conftest import DatabaseFactory
from tests.realdata import MOLECULAR_XYZ, REPO, SAMPLE

pytestmark = pytest.mark.slow

COD = SAMPLE / "cod"
MALFORMED = SAMPLE / "malformed"
SEGFAULTS_SPGLIB = COD / "1001614.cif"  # overlapping disordered sites: spglib 2.8 segfaults
ORGANIC = ["2000642.cif", "1000002.cif", "2221562.cif", "7228312.cif", "2231779.cif"]


def _fresh(databases: DatabaseFactory, tmp_path: Path) -> tuple[Settings, Database]:
    """A newly migrated database of its own, so counts are exact."""
    return databases.migrated("crystaldb_ingest", tmp_path / "data")


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _places(db: Database) -> Counter[str]:
    """How many rows (sources + rejects) each input path ended in."""
    with db.session() as session:
        paths = list(session.scalars(select(Source.path))) + list(
            session.scalars(select(IngestReject.path))
        )
    return Counter(paths)


def _copy(names: list[str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(COD / name, folder / name)
    return folder


@pytest.fixture
def fresh(databases: DatabaseFactory, tmp_path: Path) -> tuple[Settings, Database]:
    return _fresh(databases, tmp_path)


def test_every_input_ends_in_exactly_one_place_and_a_rerun_adds_nothing(
    fresh: tuple[Settings, Database], tmp_path: Path
) -> None:
    settings, db = fresh
    malformed = tmp_path / "malformed"  # the sample's malformed CIFs, with a note beside them
    shutil.copytree(MALFORMED, malformed)
    (malformed / "descriptions.tsv").write_text("empty-file.cif\t1\n")
    first = ingest_paths(db, settings, [COD, malformed], database="cod", chunk_size=16)
    files = sorted(p for p in [*COD.iterdir(), *malformed.iterdir()] if p.suffix == ".cif")
    assert first.files == len(files)
    assert first.ignored == 1  # descriptions.tsv is no structure file

    places = _places(db)
    single_entry = {str(p) for p in files if places[str(p)] == 1}
    # Every offered file is somewhere; a file ends in several rows only for several data blocks.
    assert set(places) == {str(p) for p in files}
    with db.session() as session:
        multi = session.execute(
            select(Source.path, func.count()).group_by(Source.path).having(func.count() > 1)
        ).all()
    assert {str(p) for p in files} - single_entry == {path for path, _ in multi}
    c = first.counts
    assert c.stored == _count(db, Structure)
    assert c.stored + c.duplicates == _count(db, Source)
    assert c.rejected == _count(db, IngestReject)
    assert c.already_ingested == 0

    with db.session() as session:
        batch = session.get_one(IngestBatch, first.batch_id)
        assert (batch.n_files, batch.n_stored, batch.n_rejected) == (
            len(files),
            c.stored,
            c.rejected,
        )
        assert batch.finished_at is not None
        run = session.get_one(Run, first.run_id)
        assert run.status == "succeeded" and run.kind == "ingest"
        assert run.results["stored"] == c.stored
        cod_ids = set(session.scalars(select(ExternalId.external_id)))
    assert "1000002" in cod_ids

    before = {m.__name__: _count(db, m) for m in (Structure, Source, IngestReject, ExternalId)}
    again = ingest_paths(db, settings, [COD, malformed], database="cod", chunk_size=16)
    after = {m.__name__: _count(db, m) for m in (Structure, Source, IngestReject, ExternalId)}
    assert after == before
    assert again.counts.already_ingested == c.stored + c.duplicates + c.rejected
    assert (again.counts.stored, again.counts.rejected) == (0, 0)


def test_the_same_structure_in_another_file_is_linked_as_a_duplicate(
    fresh: tuple[Settings, Database], tmp_path: Path
) -> None:
    settings, db = fresh
    folder = _copy(ORGANIC[:2], tmp_path / "in")
    original = (COD / ORGANIC[0]).read_text()
    (folder / "renamed-copy.cif").write_text("# a comment changes the bytes\n" + original)
    summary = ingest_paths(db, settings, [folder], chunk_size=2)
    assert (summary.counts.stored, summary.counts.duplicates) == (2, 1)
    with db.session() as session:
        rows = session.execute(select(Source.path, Source.structure_id, Source.duplicate)).all()
    by_name = {Path(path).name: (sid, dup) for path, sid, dup in rows}
    assert by_name["renamed-copy.cif"][0] == by_name[ORGANIC[0]][0]
    assert {by_name["renamed-copy.cif"][1], by_name[ORGANIC[0]][1]} == {True, False}


def test_archives_are_read_member_by_member(
    fresh: tuple[Settings, Database], tmp_path: Path
) -> None:
    settings, db = fresh
    with zipfile.ZipFile(tmp_path / "part1.zip", "w") as archive:
        for name in ORGANIC[:3]:
            archive.write(COD / name, f"cifs/{name}")
    with tarfile.open(tmp_path / "part2.tar.gz", "w:gz") as archive:
        for name in ORGANIC[3:]:
            archive.add(COD / name, arcname=name)
    summary = ingest_paths(db, settings, [tmp_path / "part1.zip", tmp_path / "part2.tar.gz"])
    assert summary.files == 5
    places = _places(db)
    assert f"{tmp_path / 'part1.zip'}!cifs/{ORGANIC[0]}" in places
    assert f"{tmp_path / 'part2.tar.gz'}!{ORGANIC[4]}" in places
    with db.session() as session:
        cod_ids = set(session.scalars(select(ExternalId.external_id)))
    stored = {name.removesuffix(".cif") for name in ORGANIC}
    assert stored & cod_ids  # ids come from member names too


def test_bad_inputs_are_each_refused_with_a_reason_and_the_batch_goes_on(
    fresh: tuple[Settings, Database], tmp_path: Path
) -> None:
    settings, db = fresh
    folder = _copy(ORGANIC[:2], tmp_path / "in")
    good = (COD / ORGANIC[2]).read_bytes()
    (folder / "truncated.cif").write_bytes(good[: len(good) // 3])
    (folder / "junk.cif").write_bytes(np.random.default_rng(7).bytes(4096))
    (folder / "empty.cif").write_bytes(b"")
    (folder / "latin1.cif").write_bytes(good.replace(b"data_", b"data_\xe9", 1))
    (folder / "huge.cif").write_bytes(good + b"#" * (10 * 1024 * 1024))
    (folder / "nan.cif").write_text(_with_nan_coordinate((COD / ORGANIC[2]).read_text()))
    shutil.copy(SEGFAULTS_SPGLIB, folder / SEGFAULTS_SPGLIB.name)

    summary = ingest_paths(db, settings, [folder], chunk_size=3)
    with db.session() as session:
        reasons = {
            Path(path).name: (reason, message)
            for path, reason, message in session.execute(
                select(IngestReject.path, IngestReject.reason, IngestReject.message)
            )
        }
    expected = {
        "junk.cif": {"binary", "not_utf8"},
        "empty.cif": {"no_atoms"},
        "latin1.cif": {"not_utf8"},
        "huge.cif": {"file_too_large"},
        "nan.cif": {"nan_coordinates"},
        "1001614.cif": {"sites_too_close", "partial_occupancy"},
    }
    for name, allowed in expected.items():
        reason, message = reasons[name]
        assert reason in allowed, (name, reason, message)
        assert name in message
    # A CIF cut at a line boundary may still be a valid, smaller structure: then it is stored.
    assert summary.counts.stored == (2 if "truncated.cif" in reasons else 3)


def _with_nan_coordinate(cif: str) -> str:
    """The same CIF with the x coordinate of its first atom_site row replaced by nan."""
    lines = cif.splitlines()
    tags_start = next(i for i, ln in enumerate(lines) if ln.strip() == "_atom_site_fract_x")
    start = tags_start
    while lines[start - 1].strip().startswith("_atom_site_"):
        start -= 1
    tags = []
    row = start
    while lines[row].strip().startswith("_atom_site_"):
        tags.append(lines[row].strip())
        row += 1
    fields = lines[row].split()
    fields[tags.index("_atom_site_fract_x")] = "nan"
    lines[row] = " ".join(fields)
    return "\n".join(lines) + "\n"


def spglib_without_checks(items: list[Payload]) -> list[object]:
    """A worker task that calls spglib on the raw cell, skipping the overlap check: on
    1001614.cif this is the real segmentation fault the validator exists to prevent."""
    import gemmi
    import spglib

    from crystaldb.jobs.ingest import process_payloads

    for item in items:
        small = gemmi.read_small_structure(item.name)
        sites = small.get_all_unit_cell_sites()
        cell = (
            np.array(small.cell.orth.mat.tolist()).T,  # rows: lattice vectors
            [site.fract.tolist() for site in sites],
            [site.element.atomic_number for site in sites],
        )
        spglib.get_symmetry_dataset(cell, symprec=0.1)
    return process_payloads(items, pipeline.DEFAULT_LIMITS, "cod")


def test_a_file_that_crashes_native_code_costs_one_task_not_the_batch(
    fresh: tuple[Settings, Database],
) -> None:
    settings, db = fresh
    names = [*ORGANIC[:3], SEGFAULTS_SPGLIB.name, *ORGANIC[3:]]
    stream = [Payload(str(COD / name), (COD / name).read_bytes()) for name in names]

    def submit(client, chunk):  # type: ignore[no-untyped-def]
        return client.submit(spglib_without_checks, chunk, pure=False)

    summary = run_batch(db, settings, {"test": "crash"}, "cod", stream, submit, 8, 2, None, None)
    assert summary.files == len(names)
    with db.session() as session:
        rejects = session.execute(select(IngestReject.path, IngestReject.reason)).all()
        stored = set(session.scalars(select(Source.path)))
    assert rejects == [(str(SEGFAULTS_SPGLIB), CRASHED)]
    assert stored == {str(COD / name) for name in names if name != SEGFAULTS_SPGLIB.name}
    with db.session() as session:  # the run says which worker the segfault took down
        lost = session.get_one(Run, summary.run_id).results["lost_workers"]
    assert lost and all(entry["worker"].startswith("tcp://127.0.0.1:") for entry in lost)


def test_a_path_that_does_not_exist_is_a_clear_error(fresh: tuple[Settings, Database]) -> None:
    settings, db = fresh
    with pytest.raises(IngestInputError, match=r"ingest: /no/such/folder: no such file"):
        ingest_paths(db, settings, ["/no/such/folder"])
    assert _count(db, Run) == 0  # refused before any run was opened


def _omdb_layout(folder: Path, gaps: list[float] | None = None) -> tuple[Path, list[float]]:
    """An OMDB-GAP1-layout folder from the real molecular crystals (labels made up here)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = MOLECULAR_XYZ
    shutil.copy(source, folder / "structures.xyz")
    frames = sum(1 for line in source.read_text().splitlines() if "Lattice=" in line)
    values = gaps if gaps is not None else [round(0.25 * i, 3) for i in range(frames)]
    (folder / "bandgaps.csv").write_text("".join(f"{v:.18e}\n" for v in values))
    (folder / "CODids.csv").write_text("".join(f"{7000000 + i}\n" for i in range(frames)))
    return folder, values


def test_omdb_gap1_layout_stores_band_gaps_as_pbe_labels(
    fresh: tuple[Settings, Database], tmp_path: Path
) -> None:
    settings, db = fresh
    folder, gaps = _omdb_layout(tmp_path / "omdb")
    summary = ingest_omdb_gap1(db, settings, folder)
    assert summary.files == len(gaps)
    with db.session() as session:
        refused = {
            e: r for e, r in session.execute(select(IngestReject.entry, IngestReject.reason))
        }
        rows = session.execute(
            select(Source.entry, Label.value, Calculation)
            .join(Label, Label.structure_id == Source.structure_id)
            .join(Calculation, Calculation.id == Label.calculation_id)
        ).all()
        calc = rows[0][2]
        assert (calc.functional, calc.code) == ("PBE", "VASP")
        assert calc.parameters["k_mesh"] == [6, 6, 6]
        assert calc.parameters["pseudopotentials"] == "PAW"
        cod_of = {
            entry: cod
            for entry, cod in session.execute(
                select(Source.entry, ExternalId.external_id).join(
                    ExternalId, ExternalId.structure_id == Source.structure_id
                )
            )
        }
    # Two frames of this real set have atoms 0.37 and 0.45 A apart: refused, and unlabelled.
    assert set(refused.values()) <= {"sites_too_close"}
    assert summary.counts.rejected == len(refused)
    labelled = {entry: value for entry, value, _ in rows}
    assert labelled == {i: gap for i, gap in enumerate(gaps) if i not in refused}
    assert summary.counts.labels == len(labelled) == len(gaps) - len(refused)
    assert cod_of == {i: str(7000000 + i) for i in labelled}

    again = ingest_omdb_gap1(db, settings, folder)
    assert again.counts.labels == 0 and again.counts.already_ingested == len(gaps)
    assert _count(db, Label) == len(labelled)


def test_omdb_gap1_layout_with_mismatched_files_is_refused_whole(
    fresh: tuple[Settings, Database], tmp_path: Path
) -> None:
    settings, db = fresh
    folder, gaps = _omdb_layout(tmp_path / "omdb")
    (folder / "bandgaps.csv").write_text("".join(f"{v:.18e}\n" for v in gaps[:-1]))
    with pytest.raises(IngestInputError, match=r"bandgaps\.csv"):
        ingest_omdb_gap1(db, settings, folder)
    assert _count(db, Structure) == 0


def _db_url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def test_killed_ingest_resumes_with_nothing_lost_and_nothing_doubled(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    """Kill the whole command (client and Dask workers) mid-run with SIGKILL, then re-run."""
    killed_url, clean_url = databases.create("crystaldb_kill"), databases.create("crystaldb_clean")
    for url in (killed_url, clean_url):
        migrate.upgrade(connect(load_settings(database_url=_db_url(url))))
    command = [
        sys.executable,
        "-m",
        "crystaldb",
        "ingest",
        str(COD),
        "--source",
        "cod",
        "--chunk-size",
        "4",
        "--workers",
        "2",
    ]

    def env(url: URL) -> dict[str, str]:
        return {
            "CRYSTALDB_DATABASE_URL": _db_url(url),
            "CRYSTALDB_DATA_DIR": str(tmp_path),
            "PATH": str(Path(sys.executable).parent),
            "HOME": str(tmp_path),
        }

    killed = connect(load_settings(database_url=_db_url(killed_url)))
    child = subprocess.Popen(
        command,
        env=env(killed_url),
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _count(killed, Source) + _count(killed, IngestReject) < 40:
        assert child.poll() is None, "the ingest finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    import os

    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    partial = _count(killed, Source) + _count(killed, IngestReject)
    total_files = len(list(COD.iterdir()))
    assert partial < total_files

    for url in (killed_url, clean_url):
        done = subprocess.run(
            command,
            env=env(url),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    clean = connect(load_settings(database_url=_db_url(clean_url)))

    def state(db: Database) -> tuple[set[str], Counter[str], set[tuple[str, str]]]:
        with db.session() as session:
            fingerprints = set(session.scalars(select(Structure.fingerprint)))
            rejects = set(session.execute(select(IngestReject.path, IngestReject.reason)).all())
        return fingerprints, _places(db), {(str(p), str(r)) for p, r in rejects}

    assert state(killed) == state(clean)
    with killed.session() as session:  # the killed run is visible, never a silent gap
        statuses = Counter(session.scalars(select(Run.status)))
        error = session.scalar(select(Run.error).where(Run.status == "failed"))
    # SIGKILL left the first run open; the re-run on this host found its process gone.
    assert statuses == {"succeeded": 1, "failed": 1}
    assert error is not None and error.startswith("process vanished")


def test_sha256_of_sources_is_the_files_content_hash(fresh: tuple[Settings, Database]) -> None:
    settings, db = fresh
    path = COD / ORGANIC[0]
    ingest_paths(db, settings, [path])
    with db.session() as session:
        sha = session.scalar(select(Source.sha256))
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()


def test_quality_flags_are_stored_with_the_structure(fresh: tuple[Settings, Database]) -> None:
    from crystaldb.core.records import StructureRecord
    from crystaldb.formats.payload import process_file

    settings, db = fresh
    ingest_paths(db, settings, [COD], chunk_size=32)
    expected = {
        record.path: sorted(record.flags)
        for path in sorted(COD.glob("*.cif"))
        for record in process_file(path)
        if isinstance(record, StructureRecord)
    }
    with db.session() as session:
        stored = {
            path: sorted(flags)
            for path, flags in session.execute(
                select(Source.path, Structure.flags)
                .join(Structure, Structure.id == Source.structure_id)
                .where(Source.duplicate.is_(False))
            )
        }
    assert stored == {path: flags for path, flags in expected.items() if path in stored}
    assert any("organic_without_hydrogen" in flags for flags in stored.values())
