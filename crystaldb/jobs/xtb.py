"""Band gaps the platform computes itself: GFN1-xTB with tblite, one structure per Dask task.

`label_xtb` is what `crystaldb label xtb` runs: one `runs` row (kind "label-xtb") for the job.
The selection's structures that have no label of the same method and hyperparameters yet
(and no recorded failure for them, unless `retry_failed`) are labelled smallest first, each in
a child interpreter started by its Dask task (`label_in_child`): the child gets a time limit
(killed when it passes) and a crash in tblite's native code kills only the child, so either
costs one structure, which is recorded with its reason. The runner's bisection stays as a
second guard (a worker killed for memory): a task that still fails alone is recorded as
`crashed` too. Each finished structure is written by the client in its own transaction: a
`calculations` row (functional = the method, code tblite, its version, the hyperparameters,
k-point sampling, SCF iterations, total energy, convergence) and its `band_gap` label, or a
`label_failures` row with the reason and message. An interrupted job resumes where it stopped;
two jobs of one setting at once never write a label twice (a per-method lock and a re-check).

`export_labels` and `load_labels` move these labels between databases as a CSV table keyed by
where each structure came from (COD id, CURATED-COFs name, or file and frame), so the shipped
table (crystaldb/data/labels/) attaches to any database that ingested the same files.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

import crystaldb
from crystaldb.core.cell import Cell
from crystaldb.core.errors import CrystaldbError
from crystaldb.core.xtb import XtbHypers, XtbResult, request, result_from, tblite_version
from crystaldb.formats.labels import ComputedLabel, read_computed_labels, write_computed_labels
from crystaldb.jobs.runner import Crashed, noting_lost_workers, run_window, window_for
from crystaldb.platform.cluster import dask_client
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import Selection, load_cells
from crystaldb.schema import (
    Calculation,
    ExternalId,
    Label,
    LabelFailure,
    Prediction,
    Source,
    Structure,
)
from crystaldb.schema.runs import track_run

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

PROPERTY = "band_gap"
UNIT = "eV"
CODE = "tblite"
RUN_KIND = "label-xtb"
LABELS_LOCK = 0x6C61626C  # advisory lock class for computed-label writes ("labl")
DEFAULT_TIMEOUT_S = 600.0
MAX_ERRORS_KEPT = 20  # failure messages kept in the run record
TIMEOUT = "timeout"
CRASHED = "crashed"
# The child: the request on stdin, the answer on stdout (crystaldb.core.xtb.main).
CHILD_CODE = "from crystaldb.core.xtb import main; main()"
SHIPPED_LABELS = Path(crystaldb.__file__).parent / "data" / "labels" / "xtb-gfn1.csv"


class LabelJobError(CrystaldbError):
    """A labelling job asked for something it cannot do, said in the user's terms."""


@dataclass
class LabelSummary:
    """What a labelling job did, for the progress bar, the run record and the final report."""

    run_id: int
    method: str
    selected: int = 0  # structures in the selection
    already: int = 0  # labelled with this setting before (or by a concurrent job meanwhile)
    failed_before: int = 0  # skipped: an earlier run recorded their failure
    todo: int = 0  # to compute in this run (after --limit)
    labelled: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # reason -> count, this run
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS_KEPT messages
    seconds: float = 0.0  # tblite's wall time summed over the labelled structures

    @property
    def done(self) -> int:
        """Structures of this run finished either way."""
        return self.labelled + self.failed

    def as_dict(self) -> dict[str, Any]:
        """Flat values for the run record."""
        return {
            "selected": self.selected,
            "already": self.already,
            "failed_before": self.failed_before,
            "todo": self.todo,
            "labelled": self.labelled,
            "failed": self.failed,
            "failures": dict(self.failures),
            "errors": self.errors,
            "tblite_seconds": round(self.seconds, 1),
        }


Progress = Callable[[LabelSummary], None]


@dataclass(frozen=True)
class Outcome:
    """One structure's answer from its child: a result, or the reason there is none."""

    structure_id: int
    result: XtbResult | None = None
    reason: str | None = None
    message: str | None = None
    seconds: float | None = None  # wall time of the child, start to answer (or kill)


# --- on the workers ------------------------------------------------------------------------


def label_in_child(
    cell: Cell,
    hypers: XtbHypers,
    timeout: float,
    threads: int = 1,
    code: str = CHILD_CODE,
) -> Outcome:
    """One structure in a child interpreter with a time limit; its result or why none.

    The child sees `threads` OpenMP/BLAS threads (one by default: the workers are the
    parallelism). The limit counts from the child's start, imports included (~0.5 s).
    """
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    package_root = str(Path(crystaldb.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=request(cell, hypers),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(
            cell.structure_id,
            reason=TIMEOUT,
            message=f"no answer within the {timeout:g} s limit ({cell.num_sites} sites); killed",
            seconds=time.perf_counter() - start,
        )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return Outcome(
            cell.structure_id,
            reason=CRASHED,
            message=f"the tblite process {_death(done.returncode)}: {_tail(done.stderr)}",
            seconds=seconds,
        )
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        return Outcome(
            cell.structure_id,
            reason=CRASHED,
            message=f"the tblite process gave no answer: {_tail(done.stderr or done.stdout)}",
            seconds=seconds,
        )
    if "result" in answer:
        return Outcome(cell.structure_id, result=result_from(answer["result"]), seconds=seconds)
    return Outcome(
        cell.structure_id, reason=answer["reason"], message=answer["message"], seconds=seconds
    )


def _death(returncode: int) -> str:
    """How a child ended: the signal's name, or its exit status."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _tail(text: str, chars: int = 300) -> str:
    """The last lines of a child's output, on one line, for the failure message."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    tail = " | ".join(lines[-3:])
    return tail[-chars:] if tail else "no output"


# --- the job -------------------------------------------------------------------------------


def label_xtb(
    db: Database,
    settings: Settings,
    selection: Selection,
    hypers: XtbHypers | None = None,
    *,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    limit: int | None = None,
    retry_failed: bool = False,
    threads: int = 1,
    acquisition: Acquisition | None = None,
    on_progress: Progress | None = None,
) -> LabelSummary:
    """Label every selected structure that has no label of this setting, smallest first.

    `acquisition`, when the selection is an `acquire` choice, is kept in the run's parameters.

    `on_progress` is called once when the work is known (`todo` set) and after each structure.
    """
    hypers = hypers or XtbHypers()
    if not timeout > 0:
        raise LabelJobError(f"--timeout: must be a positive number of seconds (got {timeout})")
    if limit is not None and limit < 0:
        raise LabelJobError(f"--limit: must be 0 or more (got {limit})")
    version = tblite_version()
    parameters = {
        "method": hypers.method,
        "hyperparameters": hypers.record(),
        "code": CODE,
        "code_version": version,
        "selection": selection.description,
        "release_id": selection.release_id,
        "timeout_s": timeout,
        "limit": limit,
        "retry_failed": retry_failed,
        "threads_per_structure": threads,
    }
    if acquisition is not None:
        parameters["acquisition"] = acquisition.record()
    with track_run(db, RUN_KIND, parameters) as run:
        summary = LabelSummary(run_id=run.id, method=hypers.method)
        try:
            todo = _plan(db, summary, selection, hypers, limit, retry_failed)
            if on_progress is not None:
                on_progress(summary)
            if todo:
                with dask_client(settings, n_workers=workers) as client:
                    _drive(
                        db, client, todo, summary, hypers, version, timeout, threads, on_progress
                    )
        finally:
            run.results.update(summary.as_dict())
    return summary


def _plan(
    db: Database,
    summary: LabelSummary,
    selection: Selection,
    hypers: XtbHypers,
    limit: int | None,
    retry_failed: bool,
) -> list[int]:
    """The structures to compute, smallest first: neither labelled nor failed with this setting."""
    ids = list(dict.fromkeys(selection.structure_ids))
    summary.selected = len(ids)
    labelled = labelled_ids(db, hypers, ids)
    failed = set() if retry_failed else failed_ids(db, hypers, ids)
    summary.already = len(labelled)
    summary.failed_before = len(failed - labelled)
    todo = smallest_first(db, [i for i in ids if i not in labelled and i not in failed])
    if limit is not None:
        todo = todo[:limit]
    summary.todo = len(todo)
    return todo


def _drive(
    db: Database,
    client: Client,
    todo: list[int],
    summary: LabelSummary,
    hypers: XtbHypers,
    version: str,
    timeout: float,
    threads: int,
    on_progress: Progress | None,
) -> None:
    """One structure per task through the runner; each outcome written as it lands.

    A task that fails even alone (its worker killed, not just its child) is a `crashed` row.
    """

    with noting_lost_workers(client) as track:

        def submit(chunk: list[int]) -> Future:
            (cell,) = load_cells(db, chunk)
            return track(client.submit(label_in_child, cell, hypers, timeout, threads, pure=False))

        chunks = ([sid] for sid in todo)
        for done in run_window(submit, chunks, window_for(client), bisect=True):
            outcome = done.result
            if isinstance(outcome, Crashed):
                outcome = Outcome(
                    done.item[0],
                    reason=CRASHED,
                    message=f"its task killed the worker or failed ({outcome.describe()})",
                )
            record_outcome(db, summary, hypers, version, outcome)
            if on_progress is not None:
                on_progress(summary)


@dataclass(frozen=True)
class Acquisition:
    """Which unlabelled structures an ensemble is least sure of, and how that was measured."""

    model_id: int  # the ensemble's model row (mean and spread of its members)
    predict_run_id: int  # the run whose stored predictions' spreads ranked the candidates
    candidates: int  # unlabelled (and not failed) structures of the selection
    chosen: tuple[int, ...]  # structure ids, largest spread first
    spreads: tuple[float, ...]  # their spreads, eV

    def record(self) -> dict[str, Any]:
        """For the labelling run's parameters."""
        return {
            "by": "ensemble spread (population standard deviation of the members)",
            "ensemble_model_id": self.model_id,
            "predict_run_id": self.predict_run_id,
            "candidates": self.candidates,
            "chosen": list(self.chosen),
            "spreads_ev": [round(v, 6) for v in self.spreads],
        }


def acquire(
    db: Database,
    settings: Settings,
    ensemble: Sequence[int],
    selection: Selection,
    k: int,
    hypers: XtbHypers | None = None,
    *,
    workers: int | None = None,
    retry_failed: bool = False,
) -> tuple[Acquisition, Selection]:
    """The K structures of the selection without a label of this setting whose ensemble
    spread is largest: where a compute budget buys the most (active learning).

    The ensemble predicts every candidate through `predict_ensemble` (stored, with its run);
    ties in spread go to the lower id, so the choice is reproducible.
    """
    from crystaldb.jobs.predict import predict_ensemble  # loads torch: only when acquiring

    hypers = hypers or XtbHypers()
    if k < 1:
        raise LabelJobError(f"--acquire: K must be at least 1 (got {k})")
    ids = list(dict.fromkeys(selection.structure_ids))
    skip = labelled_ids(db, hypers, ids) | (set() if retry_failed else failed_ids(db, hypers, ids))
    candidates = [sid for sid in ids if sid not in skip]
    if not candidates:
        raise LabelJobError(
            f"--acquire: {selection.description} has no structure without a {hypers.method} "
            "label (or a recorded failure) left to choose from"
        )
    pool = Selection(tuple(candidates), f"unlabelled of {selection.description}")
    predicted = predict_ensemble(db, settings, ensemble, pool, workers=workers)
    with db.session() as session:
        spread = dict(
            session.execute(
                select(Prediction.structure_id, Prediction.uncertainty).where(
                    Prediction.run_id == predicted.run_id
                )
            ).all()
        )
    ranked = sorted(candidates, key=lambda sid: (-(spread.get(sid) or 0.0), sid))[:k]
    chosen = Acquisition(
        model_id=predicted.model_id,
        predict_run_id=predicted.run_id,
        candidates=len(candidates),
        chosen=tuple(ranked),
        spreads=tuple(float(spread.get(sid) or 0.0) for sid in ranked),
    )
    description = (
        f"the {len(ranked)} of {len(candidates)} unlabelled structures of "
        f"{selection.description} with the largest spread of ensemble model {predicted.model_id}"
    )
    return chosen, Selection(tuple(ranked), description)


def _same_setting_calculations(hypers: XtbHypers) -> Any:
    """The WHERE clause of calculations made with this method and these hyperparameters."""
    return (
        Calculation.functional == hypers.method,
        Calculation.code == CODE,
        Calculation.parameters["hyperparameters"] == type_coerce(hypers.record(), JSONB),
    )


def labelled_ids(db: Database, hypers: XtbHypers, ids: Sequence[int]) -> set[int]:
    """The structures of `ids` that have a band gap label of this setting."""
    query = (
        select(Label.structure_id)
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(Label.property == PROPERTY, *_same_setting_calculations(hypers))
    )
    with db.session() as session:
        found = set(session.scalars(query))
    return found & set(ids)


def failed_ids(db: Database, hypers: XtbHypers, ids: Sequence[int]) -> set[int]:
    """The structures of `ids` with a recorded failure of this setting."""
    query = select(LabelFailure.structure_id).where(*_same_setting_failures(hypers))
    with db.session() as session:
        found = set(session.scalars(query))
    return found & set(ids)


def _same_setting_failures(hypers: XtbHypers) -> Any:
    return (
        LabelFailure.property == PROPERTY,
        LabelFailure.method == hypers.method,
        LabelFailure.code == CODE,
        LabelFailure.parameters == type_coerce(hypers.record(), JSONB),
    )


def smallest_first(db: Database, ids: Sequence[int]) -> list[int]:
    """`ids` by number of sites, then id: the cheap structures first, so labels come early."""
    if not ids:
        return []
    with db.session() as session:
        sizes = dict(
            session.execute(
                select(Structure.id, Structure.nsites).where(Structure.id.in_(ids))
            ).all()
        )
    return sorted(ids, key=lambda sid: (sizes.get(sid, 0), sid))


def record_outcome(
    db: Database, summary: LabelSummary, hypers: XtbHypers, version: str, outcome: Outcome
) -> None:
    """Write one structure's label (or its failure) in one transaction, counting it."""
    with db.session() as session:
        _lock(session, hypers)
        if outcome.result is not None:
            if _has_label(session, hypers, outcome.structure_id):
                summary.already += 1  # a concurrent job of the same setting wrote it
                return
            _add_label(
                session,
                outcome.structure_id,
                outcome.result.band_gap,
                hypers.method,
                version,
                outcome.result.parameters(hypers),
                f"computed by crystaldb {crystaldb.__version__} (run {summary.run_id})",
            )
            session.execute(
                delete(LabelFailure).where(
                    LabelFailure.structure_id == outcome.structure_id,
                    *_same_setting_failures(hypers),
                )
            )
            summary.labelled += 1
            summary.seconds += outcome.result.seconds
            return
        reason = outcome.reason or CRASHED
        message = outcome.message or "no message"
        row = {
            "structure_id": outcome.structure_id,
            "run_id": summary.run_id,
            "property": PROPERTY,
            "method": hypers.method,
            "code": CODE,
            "parameters": hypers.record(),
            "reason": reason,
            "message": message,
            "seconds": outcome.seconds,
        }
        statement = insert(LabelFailure).values(row)
        session.execute(
            statement.on_conflict_do_update(
                constraint="uq_label_failures_structure_id_property_method_code_parameters",
                set_={
                    "run_id": statement.excluded.run_id,
                    "reason": statement.excluded.reason,
                    "message": statement.excluded.message,
                    "seconds": statement.excluded.seconds,
                    "created_at": func.now(),
                },
            )
        )
    summary.failed += 1
    summary.failures[reason] += 1
    text_ = f"structure {outcome.structure_id}: {reason}: {message}"
    log.warning("%s", text_)
    if len(summary.errors) < MAX_ERRORS_KEPT:
        summary.errors.append(text_)


def _lock(session: Session, hypers: XtbHypers) -> None:
    """One writer per method at a time, so the re-check before an insert cannot race."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(CAST(:lock AS integer), CAST(:key AS integer))"),
        {"lock": LABELS_LOCK, "key": sum(hypers.method.encode()) % 2**31},
    )


def _has_label(session: Session, hypers: XtbHypers, structure_id: int) -> bool:
    query = (
        select(Label.id)
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(
            Label.structure_id == structure_id,
            Label.property == PROPERTY,
            *_same_setting_calculations(hypers),
        )
        .limit(1)
    )
    return session.scalar(query) is not None


def _add_label(
    session: Session,
    structure_id: int,
    value: float,
    method: str,
    version: str,
    parameters: dict[str, Any],
    reference: str,
) -> None:
    calculation = Calculation(
        structure_id=structure_id,
        functional=method,
        code=CODE,
        code_version=version,
        parameters=parameters,
        reference=reference,
    )
    session.add(calculation)
    session.flush()
    session.add(
        Label(
            calculation_id=calculation.id,
            structure_id=structure_id,
            property=PROPERTY,
            value=value,
            unit=UNIT,
        )
    )


def failure_reasons(db: Database, hypers: XtbHypers) -> list[tuple[str, int, str]]:
    """Why structures of this setting have no label: reason, count and one example message."""
    query = (
        select(LabelFailure.reason, func.count(), func.min(LabelFailure.message))
        .where(*_same_setting_failures(hypers))
        .group_by(LabelFailure.reason)
        .order_by(func.count().desc(), LabelFailure.reason)
    )
    with db.session() as session:
        return [(str(r), int(n), str(m)) for r, n, m in session.execute(query)]


# --- the shipped table: export and load by source id ---------------------------------------


@dataclass
class LoadSummary:
    """What loading a label table did."""

    rows: int = 0
    attached: int = 0
    already: int = 0  # the structure had a label of this method and hyperparameters
    not_found: int = 0  # no ingested structure has that source id
    missing: list[str] = field(default_factory=list)  # the first few source ids not found


def export_labels(db: Database, path: Path, method: str = "GFN1-xTB") -> int:
    """Write every tblite band gap of `method` to a CSV table; the number of rows."""
    query = (
        select(
            Label.structure_id,
            Label.value,
            Calculation.functional,
            Calculation.code_version,
            Calculation.parameters,
            Structure.reduced_formula,
            Structure.nsites,
            Structure.fingerprint,
        )
        .join(Calculation, Calculation.id == Label.calculation_id)
        .join(Structure, Structure.id == Label.structure_id)
        .where(
            Label.property == PROPERTY,
            Calculation.code == CODE,
            Calculation.functional == method,
        )
        .order_by(Structure.nsites, Label.structure_id, Label.id)
    )
    with db.session() as session:
        rows = session.execute(query).all()
        origins = source_ids(session, [row.structure_id for row in rows])
    seen: set[tuple[str, str]] = set()
    table: list[ComputedLabel] = []
    for row in rows:
        source, source_id = origins.get(row.structure_id, ("fingerprint", row.fingerprint))
        if (source, source_id) in seen:
            continue  # the same structure under two settings: the first (ordered) is kept
        seen.add((source, source_id))
        table.append(
            ComputedLabel(
                source=source,
                source_id=source_id,
                reduced_formula=row.reduced_formula,
                nsites=int(row.nsites),
                property=PROPERTY,
                value=float(row.value),
                unit=UNIT,
                method=row.functional,
                code=CODE,
                code_version=row.code_version or "",
                parameters=dict(row.parameters),
                fingerprint=row.fingerprint,
            )
        )
    write_computed_labels(path, table)
    return len(table)


def source_ids(session: Session, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Where each structure came from: an external id (cod, curated-cofs, ...) if it has one,
    else the name of its first source file and the frame in it (`molecular_crystals.xyz#3`)."""
    if not ids:
        return {}
    found: dict[int, tuple[str, str]] = {}
    external = session.execute(
        select(ExternalId.structure_id, ExternalId.database, ExternalId.external_id)
        .where(ExternalId.structure_id.in_(ids))
        .order_by(ExternalId.structure_id, ExternalId.database, ExternalId.external_id)
    )
    for sid, database, value in external:
        found.setdefault(int(sid), (str(database), str(value)))
    files = session.execute(
        select(Source.structure_id, Source.path, Source.entry)
        .where(Source.structure_id.in_(ids))
        .order_by(Source.structure_id, Source.duplicate, Source.id)
    )
    for sid, path, entry in files:
        found.setdefault(int(sid), ("file", file_source_id(path, entry)))
    return found


def file_source_id(path: str, entry: int) -> str:
    """A file's name (not its path) and the frame in it: `molecular_crystals.xyz#3`."""
    return f"{PurePosixPath(path.replace(chr(92), '/').split('!')[-1]).name}#{entry}"


def load_labels(db: Database, path: Path | None = None) -> LoadSummary:
    """Attach a computed-label table to the ingested structures with the same source ids.

    A row whose structure already has a label of that method and those hyperparameters is
    counted and skipped, so loading twice adds nothing.
    """
    table = read_computed_labels(path or SHIPPED_LABELS)
    summary = LoadSummary(rows=len(table))
    with db.session() as session:
        targets = _structures_for(session, table)
        for row in table:
            sid = targets.get((row.source, row.source_id))
            if sid is None:
                summary.not_found += 1
                if len(summary.missing) < 10:
                    summary.missing.append(f"{row.source}:{row.source_id}")
                continue
            if _has_same_label(session, sid, row):
                summary.already += 1
                continue
            _add_label(
                session,
                sid,
                row.value,
                row.method,
                row.code_version,
                row.parameters,
                f"crystaldb labels table {Path(path or SHIPPED_LABELS).name}",
            )
            summary.attached += 1
    return summary


def _structures_for(session: Session, table: Sequence[ComputedLabel]) -> dict[tuple[str, str], int]:
    """Structure ids by (source, source id): external ids, file names and frames, fingerprints."""
    found: dict[tuple[str, str], int] = {}
    external = [(r.source, r.source_id) for r in table if r.source not in ("file", "fingerprint")]
    if external:
        databases = sorted({source for source, _ in external})
        values = sorted({value for _, value in external})
        rows = session.execute(
            select(ExternalId.database, ExternalId.external_id, ExternalId.structure_id).where(
                ExternalId.database.in_(databases), ExternalId.external_id.in_(values)
            )
        )
        found.update(((str(d), str(v)), int(s)) for d, v, s in rows)
    files = {r.source_id for r in table if r.source == "file"}
    if files:
        names = sorted({name.rsplit("#", 1)[0] for name in files})
        located = session.execute(
            select(Source.path, Source.entry, Source.structure_id).where(
                func.regexp_replace(Source.path, r"^.*[/!]", "").in_(names)
            )
        )
        for source_path, entry, sid in located:
            key = ("file", file_source_id(source_path, entry))
            if key[1] in files:
                found.setdefault(key, int(sid))
    prints = [r.fingerprint for r in table if r.fingerprint]
    if prints:
        printed = session.execute(
            select(Structure.fingerprint, Structure.id).where(Structure.fingerprint.in_(prints))
        )
        by_print = {str(fp): int(sid) for fp, sid in printed}
        for r in table:
            if (r.source, r.source_id) not in found and r.fingerprint in by_print:
                found[(r.source, r.source_id)] = by_print[r.fingerprint]
    return found


def _has_same_label(session: Session, structure_id: int, row: ComputedLabel) -> bool:
    """The structure has a label of this property, method and hyperparameters already."""
    hypers = row.parameters.get("hyperparameters", {})
    query = (
        select(Label.id)
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(
            Label.structure_id == structure_id,
            Label.property == row.property,
            Calculation.functional == row.method,
            Calculation.code == row.code,
            Calculation.parameters["hyperparameters"] == type_coerce(hypers, JSONB),
        )
        .limit(1)
    )
    return session.scalar(query) is not None
