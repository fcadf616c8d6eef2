"""`label_xtb` on real Dask workers and a real PostgreSQL: labels, failures, resumption, tables.

The structures are real and small, from the package sample: diamond (COD 1200017, 4 sites),
AsI3 (COD 9008098, 8 sites) and BINOL (COD 2000642, 36 sites); all three take a few seconds.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crystaldb.core.records import StructureRecord
from crystaldb.core.soap import SoapHypers
from crystaldb.core.xtb import XtbHypers, compute_gap, tblite_version
from crystaldb.formats.labels import COMPUTED_COLUMNS, LabelTableError, read_computed_labels
from crystaldb.formats.payload import process_file
from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import train_krr
from crystaldb.jobs.load import write_chunk
from crystaldb.jobs.predict import load_member, member_predictions
from crystaldb.jobs.xtb import (
    CRASHED,
    SHIPPED_LABELS,
    TIMEOUT,
    LabelJobError,
    LabelSummary,
    acquire,
    export_labels,
    label_in_child,
    label_xtb,
    load_labels,
    record_outcome,
)
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import load_cells, select_structures
from crystaldb.release.create import create_release
from crystaldb.schema import Calculation, ExternalId, Label, LabelFailure, Run
from crystaldb.schema.runs import track_run
from tests.conftest import DatabaseFactory
from tests.jarvis import OPTB88, jarvis_records
from tests.realdata import SAMPLE
from tests.sampledb import open_batch

COD = SAMPLE / "cod"
SMALL = ["1200017.cif", "9008098.cif", "2000642.cif"]  # diamond, AsI3, BINOL


def _records(paths: list[Path], database: str | None = None) -> list[StructureRecord]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            r
            for p in paths
            for r in process_file(p, database=database)
            if isinstance(r, StructureRecord)
        ]


def _with(
    databases: DatabaseFactory, tmp_path: Path, paths: list[Path], database: str | None = None
) -> tuple[Settings, Database]:
    """A new database holding these real files' structures (written without Dask)."""
    settings, db = databases.migrated("crystaldb_xtb", tmp_path / "data")
    write_chunk(db, open_batch(db), _records(paths, database))
    return settings, db


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.slow
def test_labels_are_stored_as_tblite_calculations_and_a_rerun_adds_nothing(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    settings, db = _with(databases, tmp_path, [COD / name for name in SMALL])
    everything = select_structures(db)
    summary = label_xtb(db, settings, everything, workers=1, timeout=120)
    assert (summary.selected, summary.todo, summary.labelled, summary.failed) == (3, 3, 3, 0)
    hypers = XtbHypers()
    with db.session() as session:
        rows = session.execute(
            select(Label.structure_id, Label.value, Label.unit, Label.property, Calculation).join(
                Calculation, Calculation.id == Label.calculation_id
            )
        ).all()
        session.expunge_all()
    assert len(rows) == 3
    for sid, value, unit, prop, calc in rows:
        assert (prop, unit, calc.functional, calc.code) == ("band_gap", "eV", "GFN1-xTB", "tblite")
        assert calc.code_version == tblite_version()
        p = calc.parameters
        assert p["hyperparameters"] == hypers.record() and p["k_sampling"] == "gamma"
        assert p["converged"] is True and p["scf_iterations"] > 0
        assert p["total_energy_hartree"] < 0 and value > 0
        # the worker's child process and this process agree: the result reproduces
        (cell,) = load_cells(db, [sid])
        assert value == pytest.approx(compute_gap(cell, hypers).band_gap, abs=1e-8)
    with db.session() as session:
        run = session.get_one(Run, summary.run_id)
        assert run.kind == "label-xtb" and run.status == "succeeded"
        assert run.results["labelled"] == 3 and run.parameters["code_version"] == tblite_version()

    again = label_xtb(db, settings, everything, workers=1, timeout=120)
    assert (again.already, again.todo, again.labelled) == (3, 0, 0)
    assert _count(db, Calculation) == 3 and _count(db, Label) == 3

    # another setting is another label: a time limit no child can meet records every failure
    hot = XtbHypers(electronic_temperature=1000.0)
    timed_out = label_xtb(db, settings, everything, hot, workers=1, timeout=0.05, limit=2)
    assert (timed_out.todo, timed_out.failed, timed_out.labelled) == (2, 2, 0)
    assert timed_out.failures == {TIMEOUT: 2}
    with db.session() as session:
        failures = session.execute(
            select(
                LabelFailure.structure_id,
                LabelFailure.reason,
                LabelFailure.message,
                LabelFailure.parameters,
                LabelFailure.run_id,
            )
        ).all()
        sizes = dict(session.execute(select(Label.structure_id, Label.value)).all())
    assert {f.reason for f in failures} == {TIMEOUT}
    assert all("0.05 s limit" in f.message and f.run_id == timed_out.run_id for f in failures)
    assert all(f.parameters == hot.record() for f in failures)
    assert len(sizes) == 3  # the first setting's labels are untouched
    # the two smallest (diamond, AsI3) were tried first; BINOL (36 sites) was left by --limit
    (binol,) = set(everything.structure_ids) - {f.structure_id for f in failures}
    with db.session() as session:
        assert (
            session.scalar(select(ExternalId.external_id).where(ExternalId.structure_id == binol))
            == "2000642"
        )

    skipped = label_xtb(db, settings, everything, hot, workers=1, timeout=0.05, limit=0)
    assert (skipped.failed_before, skipped.todo) == (2, 0)  # only BINOL is left to try
    assert _count(db, LabelFailure) == 2


def test_a_child_that_dies_in_native_code_is_recorded_as_crashed(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    _, db = _with(databases, tmp_path, [COD / "1200017.cif"])
    (cell,) = load_cells(db, list(select_structures(db).structure_ids))
    outcome = label_in_child(cell, XtbHypers(), 60, code="import os; os.abort()")
    assert outcome.result is None and outcome.reason == CRASHED
    assert "killed by SIGABRT" in (outcome.message or "")
    fine = label_in_child(cell, XtbHypers(), 60)
    assert fine.result is not None and fine.result.band_gap > 5  # diamond: a wide gap


def test_impossible_job_arguments_are_refused_before_a_run_opens(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    settings, db = _with(databases, tmp_path, [COD / "1200017.cif"])
    everything = select_structures(db)
    with pytest.raises(LabelJobError, match="--timeout"):
        label_xtb(db, settings, everything, timeout=0)
    with pytest.raises(LabelJobError, match="--limit"):
        label_xtb(db, settings, everything, limit=-1)
    with db.session() as session:  # refused before any run was opened
        assert session.scalar(select(func.count()).where(Run.kind == "label-xtb")) == 0


def test_exported_labels_load_into_another_database_once(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    """Export from one database, load into another that ingested the same file: attached by
    COD id, with the calculation's method and parameters; a second load adds nothing."""
    paths = [COD / "1200017.cif"]
    _, source = _with(databases, tmp_path / "a", paths)
    (cell,) = load_cells(source, list(select_structures(source).structure_ids))
    outcome = label_in_child(cell, XtbHypers(), 60)
    assert outcome.result is not None
    with track_run(source, "label-xtb") as run:
        summary = LabelSummary(run_id=run.id, method="GFN1-xTB")
        record_outcome(source, summary, XtbHypers(), tblite_version(), outcome)
    table = tmp_path / "labels.csv"
    assert export_labels(source, table) == 1
    (row,) = read_computed_labels(table)
    assert (row.source, row.source_id, row.nsites, row.method) == ("cod", "1200017", 4, "GFN1-xTB")
    assert row.value == outcome.result.band_gap  # written exactly

    _, target = _with(databases, tmp_path / "b", paths)
    loaded = load_labels(target, table)
    assert (loaded.rows, loaded.attached, loaded.not_found) == (1, 1, 0)
    assert load_labels(target, table).already == 1
    with target.session() as session:
        value, parameters, code, version = session.execute(
            select(
                Label.value, Calculation.parameters, Calculation.code, Calculation.code_version
            ).join(Calculation, Calculation.id == Label.calculation_id)
        ).one()
    assert (value, parameters, code, version) == (
        row.value,
        row.parameters,
        "tblite",
        row.code_version,
    )


def test_a_broken_label_table_is_refused_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text(",".join(COMPUTED_COLUMNS) + "\ncod,1\n")
    with pytest.raises(LabelTableError, match=r"labels.csv:2: expected 12 columns"):
        read_computed_labels(bad)


def test_the_shipped_labels_attach_to_the_sample_structures_they_name(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    """The shipped table (computed here) gives sample COD and CURATED-COFs structures their
    GFN1-xTB gaps, by source id, with the recorded value and parameters."""
    with SHIPPED_LABELS.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cod = [r for r in rows if r["source"] == "cod" and (COD / f"{r['source_id']}.cif").exists()]
    cofs = [
        r
        for r in rows
        if r["source"] == "curated-cofs" and (SAMPLE / "cofs" / f"{r['source_id']}.cif").exists()
    ]
    assert cod and cofs, "the shipped table names structures of the package sample"
    chosen_cod, chosen_cof = cod[:3], cofs[:2]
    _, db = _with(databases, tmp_path, [COD / f"{r['source_id']}.cif" for r in chosen_cod])
    write_chunk(
        db,
        open_batch(db),
        _records([SAMPLE / "cofs" / f"{r['source_id']}.cif" for r in chosen_cof], "curated-cofs"),
    )
    loaded = load_labels(db)
    assert loaded.attached == len(chosen_cod) + len(chosen_cof)
    assert loaded.not_found == len(rows) - loaded.attached
    with db.session() as session:
        got = dict(
            session.execute(
                select(ExternalId.external_id, Label.value).join(
                    Label, Label.structure_id == ExternalId.structure_id
                )
            ).all()
        )
    assert got == {r["source_id"]: float(r["value"]) for r in chosen_cod + chosen_cof}


@pytest.mark.slow
def test_acquire_picks_the_unlabelled_structures_the_ensemble_disagrees_on_most(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    """Two real KRR models (two SOAP settings) on the JARVIS sample; the K structures with the
    largest spread of their predictions are labelled, and the next acquisition skips them."""
    settings, db = databases.migrated("crystaldb_xtb_acquire", tmp_path / "data")
    write_chunk(db, open_batch(db), jarvis_records(), labels=OPTB88)
    create_release(db, "jarvis", "1.0", label="band_gap:OptB88vdW", split="ordered:40,10")
    ids = list(select_structures(db, release="jarvis").structure_ids)
    models = []
    for soap in (
        SoapHypers(cutoff=4.0, n_max=4, l_max=3),
        SoapHypers(cutoff=3.0, n_max=3, l_max=2),
    ):
        kernel = build_kernel(db, settings, ids, hypers=soap, tile=64, workers=1)
        models.append(train_krr(db, settings, kernel.kernel_id, "jarvis", folds=3).model_id)
    pool = select_structures(db, where="nsites <= 4")
    chosen, picked = acquire(db, settings, models, pool, 3, workers=1)

    # the same ranking from the models' weights, in this process
    members = [load_member(db, settings, m)[1] for m in models]
    spread = member_predictions(load_cells(db, list(pool.structure_ids)), {}, members).std(axis=0)
    expected = sorted(zip(pool.structure_ids, spread, strict=True), key=lambda p: (-p[1], p[0]))
    assert chosen.chosen == tuple(sid for sid, _ in expected[:3]) == picked.structure_ids
    assert chosen.spreads == pytest.approx([s for _, s in expected[:3]], abs=1e-9)
    assert chosen.spreads[0] > 0 and chosen.candidates == len(pool.structure_ids)

    summary = label_xtb(db, settings, picked, workers=1, timeout=120, acquisition=chosen)
    assert summary.todo == 3 and summary.labelled + summary.failed == 3
    with db.session() as session:
        run = session.get_one(Run, summary.run_id)
        assert run.parameters["acquisition"]["chosen"] == list(chosen.chosen)
    after, _ = acquire(db, settings, models, pool, 3, workers=1)
    assert not set(after.chosen) & set(chosen.chosen)  # labelled (or failed): not offered again
    assert after.candidates == chosen.candidates - 3
    with pytest.raises(LabelJobError, match="--acquire: K must be at least 1"):
        acquire(db, settings, models, pool, 0)
