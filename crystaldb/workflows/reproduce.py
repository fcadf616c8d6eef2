"""The OMDB-GAP1 paper's SOAP-KRR protocol as one job, on a folder in the OMDB-GAP1 layout.

Olsthoorn et al. (Adv. Quantum Technol. 2019, 1900023): the average SOAP kernel (r_c 4 A,
n_max 8, l_max 6), kernel ridge regression with its regularisation chosen by 10-fold
cross-validation on the first 10,000 structures, scored on the last 2,500. Each step reuses
what an earlier run left: ingestion knows its inputs by sha256 and entry, an identical
release is reused (else the next free version is created), the kernel build resumes or
reuses a finished kernel; only the model is trained again. The release's members are
exactly the folder's structures in the folder's order, with the folder's gaps: anything that
would change that (a refused or repeated entry, a structure first stored from another file,
another PBE gap stored for it earlier) is refused before the release is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.soap import SoapHypers
from crystaldb.formats.omdb_gap1 import BANDGAPS, COD_IDS, STRUCTURES, read_column
from crystaldb.jobs.ingest import IngestSummary, ingest_omdb_gap1
from crystaldb.jobs.kernels import KernelSummary, build_kernel, choose_landmarks
from crystaldb.jobs.krr import TrainSummary, train_krr
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import release_labels, release_selection
from crystaldb.release.create import (
    LabelChoice,
    create_release,
    list_releases,
    member_condition,
    select_members,
)
from crystaldb.schema import IngestReject, Label, Release, Source
from crystaldb.schema.releases import ReleaseRef, check_new_release

LABEL = "band_gap:PBE"  # what `ingest --format omdb-gap1` stores the folder's gaps as
RELEASE_NAME = "omdb-gap1"
Step = Callable[[str, Any], None]  # (step, its result): ingest, release, kernel, model
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Reference:
    """The paper's SOAP result on OMDB-GAP1 v1.1, to print beside ours."""

    mae: float = 0.430
    rmse: float = 0.576
    baseline_mae: float = 0.797  # predicting the training median
    train: int = 10_000
    test: int = 2_500


PAPER = Reference()


class ReproduceError(CrystaldbError):
    """A folder or request the protocol cannot run on, with what to do instead."""


@dataclass(frozen=True)
class Reproduction:
    """What each step of the protocol did."""

    ingest: IngestSummary
    release: str  # NAME:VERSION
    release_reused: bool
    kernel: KernelSummary
    model: TrainSummary


def reproduce_omdb_gap1(
    db: Database,
    settings: Settings,
    folder: Path,
    train: int = PAPER.train,
    test: int = PAPER.test,
    landmarks: int | None = None,
    landmark_seed: int = 0,
    folds: int = 10,
    release_name: str = RELEASE_NAME,
    workers: int | None = None,
    on_progress: Progress | None = None,
    on_step: Step | None = None,
) -> Reproduction:
    """Ingest, release (first `train` train, last `test` test), kernel, KRR: one command."""
    size = check_request(folder, train, test, folds, release_name)
    step = on_step or (lambda name, result: None)
    ingested = ingest_omdb_gap1(
        db,
        settings,
        folder,
        workers=workers,
        on_progress=(lambda s: on_progress("ingest", s.files, size)) if on_progress else None,
    )
    step("ingest", ingested)
    ids = folder_structures(db, folder, size)
    gaps = np.array(read_column(folder / BANDGAPS, float, "a band gap in eV"))
    release, reused = omdb_release(db, release_name, ids, gaps, train, test, folder)
    step("release", (release, reused))
    chosen = choose_landmarks(db, release, landmarks, landmark_seed) if landmarks else None
    kernel = build_kernel(
        db,
        settings,
        ids,
        chosen.ids if chosen else None,
        hypers=SoapHypers(),
        workers=workers,
        on_progress=on_progress,
        description=f"release {release} ({len(ids)} members)",
        landmarks=chosen.record if chosen else None,
    )
    step("kernel", kernel)
    model = train_krr(db, settings, kernel.kernel_id, release, folds=folds, on_progress=on_progress)
    step("model", model)
    return Reproduction(ingested, release, reused, kernel, model)


def check_request(
    folder: Path, train: int, test: int, folds: int, release_name: str = RELEASE_NAME
) -> int:
    """Refuse a folder, split or release name that cannot run before any work; the size."""
    check_new_release(release_name, "1", "--release-name")
    size = folder_size(folder)
    check_counts(size, train, test, folds, folder)
    return size


def folder_size(folder: Path) -> int:
    """Entries of an OMDB-GAP1 folder, counted from bandgaps.csv before anything is read."""
    if not folder.is_dir():
        raise ReproduceError(
            f"DIR {folder}: not a folder (an OMDB-GAP1 folder holds "
            f"{STRUCTURES}, {BANDGAPS} and {COD_IDS})"
        )
    for name in (STRUCTURES, BANDGAPS, COD_IDS):
        if not (folder / name).is_file():
            raise ReproduceError(f"DIR {folder}: no {name}, so not in the OMDB-GAP1 layout")
    with (folder / BANDGAPS).open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def check_counts(size: int, train: int, test: int, folds: int, folder: Path) -> None:
    """The ordered split must cover the folder exactly, with enough to train and to score."""
    if train < folds:
        raise ReproduceError(f"--train {train}: at least the {folds} cross-validation folds")
    if test < 1:
        raise ReproduceError(f"--test {test}: at least 1 structure to score the model on")
    if train + test != size:
        fifth = size // 5
        raise ReproduceError(
            f"DIR {folder} holds {size:,} structures, not --train {train:,} + --test {test:,}"
            f" = {train + test:,}: give --train and --test that add up to {size:,} (the paper's"
            f" 4:1 would be --train {size - fifth} --test {fifth})"
        )


def folder_structures(db: Database, folder: Path, size: int) -> list[int]:
    """The structure each entry of the folder became, in entry order; refusals named."""
    with (folder / STRUCTURES).open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    with db.session() as session:
        stored = dict(
            session.execute(
                select(Source.entry, Source.structure_id).where(Source.sha256 == sha256)
            ).all()
        )
        refused = session.execute(
            select(IngestReject.entry, IngestReject.reason, IngestReject.message)
            .where(IngestReject.sha256 == sha256)
            .order_by(IngestReject.entry)
        ).all()
    refused = [r for r in refused if r.entry not in stored]
    if refused:
        first = refused[0]
        raise ReproduceError(
            f"DIR {folder}: {len(refused)} of its {size:,} entries were refused at ingest (entry"
            f" {first.entry}: {first.reason}: {first.message}); the paper's ordered split needs"
            " every entry"
        )
    missing = [entry for entry in range(size) if entry not in stored]
    if missing:
        raise ReproduceError(f"DIR {folder}: entries {missing[:5]} were not ingested; run again")
    ids = [int(stored[entry]) for entry in range(size)]
    first_entry: dict[int, int] = {}
    for entry, sid in enumerate(ids):
        if sid in first_entry:
            raise ReproduceError(
                f"DIR {folder}: entries {first_entry[sid]} and {entry} are the same structure"
                f" ({sid}, by fingerprint); a release holds a structure once, so the ordered"
                " split would not cover the folder"
            )
        first_entry[sid] = entry
    return ids


def omdb_release(
    db: Database,
    name: str,
    ids: list[int],
    gaps: np.ndarray,
    train: int,
    test: int,
    folder: Path,
) -> tuple[str, bool]:
    """An identical release of that name (reused), else the next version: (NAME:VERSION, reused)."""
    splits = ["train"] * train + ["test"] * test
    named = [r for r in list_releases(db) if r.name == name]
    for release in reversed(named):
        if _same_release(db, release, ids, splits, gaps):
            return str(ReleaseRef(name, release.version)), True
    _check_members(db, ids, gaps, folder)
    versions = {r.version for r in named}
    version = str(next(n for n in range(1, len(named) + 2) if str(n) not in versions))
    create_release(
        db,
        name,
        version,
        ids=ids,
        label=LABEL,
        split=f"ordered:{train},{test}",
        description=f"OMDB-GAP1 folder {folder}: first {train} train, last {test} test",
    )
    return str(ReleaseRef(name, version)), False


def _same_release(
    db: Database, release: Release, ids: list[int], splits: list[str], gaps: np.ndarray
) -> bool:
    """Same members in the same order, same splits, the same (PBE) gaps."""
    if release.label_spec != LabelChoice.parse(LABEL).record():
        return False
    selection = release_selection(db, release)
    if list(selection.structure_ids) != ids or list(selection.splits or ()) != splits:
        return False
    return bool(np.array_equal(release_labels(db, selection), gaps))


def _check_members(db: Database, ids: list[int], gaps: np.ndarray, folder: Path) -> None:
    """The release `create_release` would make holds the folder in order with its gaps."""
    candidates = select_members(db, member_condition(None, ids), LabelChoice.parse(LABEL), None)
    order = [c.structure_id for c in candidates]
    if len(order) != len(ids):
        raise ReproduceError(
            f"DIR {folder}: {len(ids) - len(order)} of its structures carry no {LABEL} label"
        )
    if order != ids:
        moved = next(i for i, (a, b) in enumerate(zip(order, ids, strict=True)) if a != b)
        raise ReproduceError(
            f"DIR {folder}: a release keeps its members in the order they were first stored,"
            f" and structure {ids[moved]} (entry {moved}) was stored from another file first,"
            " so a release would not keep the folder's order; use a database without it"
        )
    with db.session() as session:
        values = dict(
            session.execute(
                select(Label.id, Label.value).where(Label.id.in_([c.label_id for c in candidates]))
            ).all()
        )
    frozen = np.array([values.get(c.label_id or 0, np.nan) for c in candidates])
    if not np.array_equal(frozen, gaps):
        entry = int(np.flatnonzero(frozen != gaps)[0])
        raise ReproduceError(
            f"DIR {folder}: structure {ids[entry]} (entry {entry}) carries an earlier PBE band"
            f" gap of {frozen[entry]} eV, not the folder's {gaps[entry]} eV; a release freezes"
            " the earliest, so it would not hold the folder's gaps"
        )
