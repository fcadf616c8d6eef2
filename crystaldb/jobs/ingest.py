"""Batch ingestion on Dask, builder-style: get items, process them on workers, update targets.

The client walks the inputs (files, folders, .zip and .tar.gz archives) and ships their bytes
in chunks to the workers, which parse and validate them (pure functions, no database); each
finished chunk is written by the client in one transaction (`load.write_chunk`). At most a
few chunks are in flight, so memory stays flat whatever the collection's size. A chunk whose
worker dies (a segfault in native code) is split in two and retried until the one file that
kills workers is isolated and refused with that reason: a crash costs one task, never the run.
"""

from __future__ import annotations

import logging
import os
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.records import IngestError, LabelSpec, ParsedStructure, Reason, Rejection
from crystaldb.core.validate import DEFAULT_LIMITS, Limits
from crystaldb.formats.files import Payload, read_input, sha256_bytes, too_large
from crystaldb.formats.labels import SOURCE_PROPERTY, LabelTable, file_key
from crystaldb.formats.omdb_gap1 import BAND_GAP, read_omdb_gap1
from crystaldb.formats.payload import process_payload, validate_all
from crystaldb.formats.readers import parser_for
from crystaldb.jobs.load import ChunkCounts, Entry, write_chunk
from crystaldb.jobs.runner import Crashed, noting_lost_workers, run_window, window_for
from crystaldb.platform.cluster import dask_client
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.schema import IngestBatch, IngestReject
from crystaldb.schema.runs import track_run

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
CRASHED = "worker_crashed"

# What the OMDB-GAP1 release states about how its band gaps were computed.
OMDB_GAP1_LABELS = LabelSpec(
    source_property=BAND_GAP,
    property="band_gap",
    unit="eV",
    functional="PBE",
    code="VASP",
    parameters={
        "pseudopotentials": "PAW",
        "k_mesh": [6, 6, 6],
        "k_mesh_type": "Gamma-centred",
        "magnetic_moment_below_muB": 1e-4,
    },
    reference="OMDB-GAP1 v1.1 (Olsthoorn et al., Adv. Quantum Technol. 2019, 1900023)",
)


class IngestInputError(CrystaldbError):
    """A path given to `crystaldb ingest` does not exist or cannot be read at all."""


@dataclass
class IngestSummary:
    """What an ingest run did, for the progress bar, the run record and the final report."""

    run_id: int
    batch_id: int
    files: int = 0
    ignored: int = 0
    counts: ChunkCounts = field(default_factory=ChunkCounts)
    empty_folders: dict[str, int] = field(default_factory=dict)  # folder -> files it held

    def as_dict(self) -> dict[str, int]:
        """Flat numbers for the run record."""
        return {"files": self.files, "ignored": self.ignored, **vars(self.counts)}


Progress = Callable[[IngestSummary], None]


# --- get items ---------------------------------------------------------------------------


def is_archive(path: Path) -> bool:
    """Archives are opened and their members ingested one by one."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass(frozen=True)
class Inputs:
    """What the paths given to an ingest hold: the inputs, the other files, the empty folders.

    `empty_folders` maps each folder (as given) that holds no structure file at all to the
    number of files it held, hidden ones included.
    """

    files: list[Path]
    ignored: int = 0
    empty_folders: dict[str, int] = field(default_factory=dict)


def expand(paths: Sequence[str | Path]) -> Inputs:
    """Inputs under the given paths, sorted; the other files and the folders with no input.

    A file named on the command line is always an input (refused if it is no structure
    file), hidden or not; inside folders only structure files and archives are, so a README or
    LICENSE beside the CIFs is counted as ignored rather than refused.  Hidden names (a dot
    first) are skipped only below the folder given: `../data/cifs` and
    `~/.local/share/crystaldb/cifs` are read whole, their `.git` or `.DS_Store` are not.
    """
    files: list[Path] = []
    ignored = 0
    empty: dict[str, int] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found, others, held = _folder_inputs(path)
            files.extend(found)
            ignored += others
            if not found:
                empty[str(raw)] = held
        elif path.is_file():
            files.append(path)
        else:
            raise IngestInputError(f"ingest: {raw}: no such file or folder")
    normalised = [Path(os.path.abspath(p)) for p in files]  # links kept
    return Inputs(files=normalised, ignored=ignored, empty_folders=empty)


def _folder_inputs(folder: Path) -> tuple[list[Path], int, int]:
    """A folder's structure files and archives, how many other visible files, how many files."""
    inputs: list[Path] = []
    others = held = 0
    for found in sorted(folder.rglob("*")):
        if not found.is_file():
            continue
        held += 1
        if is_hidden_below(found, folder):
            continue
        if is_archive(found) or parser_for(found) is not None:
            inputs.append(found)
        else:
            others += 1
    return inputs, others, held


def is_hidden_below(path: Path, folder: Path) -> bool:
    """A name between `folder` and `path` (the file's own included) starts with a dot."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def empty_folder_warning(folder: str, held: int) -> str:
    """The warning for a folder that yields nothing, so a wrong path never passes for done."""
    if held == 0:
        what = "it holds no files"
    else:
        what = (
            f"it holds {held} file{'s' if held != 1 else ''}, none of them .cif, .xyz, .extxyz,"
            " .vasp, POSCAR, CONTCAR, .json or .zip/.tar.gz outside hidden names"
        )
    return f"ingest: {folder}: no structure file in this folder ({what}); nothing ingested from it"


def count_inputs(files: Sequence[Path]) -> int | None:
    """How many inputs there are, where that is cheap to know (None for .tar.gz)."""
    total = 0
    for path in files:
        if not is_archive(path):
            total += 1
        elif path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                total += sum(1 for info in archive.infolist() if not info.is_dir())
        else:
            return None
    return total


def payloads(files: Sequence[Path], max_bytes: int) -> Iterator[Payload | Rejection]:
    """Stream every input's bytes; oversized or unreadable inputs become rejections unread."""
    for path in files:
        if not is_archive(path):
            yield read_input(path, max_bytes)
        elif path.name.lower().endswith(".zip"):
            yield from _zip_members(path, max_bytes)
        else:
            yield from _tar_members(path, max_bytes)


def _zip_members(path: Path, max_bytes: int) -> Iterator[Payload | Rejection]:
    """Members of a zip archive, in archive order."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                name = f"{path}!{info.filename}"
                if info.file_size > max_bytes:
                    yield too_large(name, info.file_size, max_bytes)
                else:
                    yield Payload(name, archive.read(info))
    except (OSError, zipfile.BadZipFile) as exc:
        yield Rejection(str(path), None, Reason.PARSE_ERROR, f"{path}: broken zip archive: {exc}")


def _tar_members(path: Path, max_bytes: int) -> Iterator[Payload | Rejection]:
    """Members of a (compressed) tar archive, streamed in one sequential pass."""
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = f"{path}!{member.name}"
                handle = archive.extractfile(member)
                if member.size > max_bytes or handle is None:
                    yield too_large(name, member.size, max_bytes)
                else:
                    yield Payload(name, handle.read())
    except (OSError, tarfile.TarError, EOFError) as exc:
        yield Rejection(str(path), None, Reason.PARSE_ERROR, f"{path}: broken tar archive: {exc}")


# --- process (on the workers) ------------------------------------------------------------


def process_payloads(
    items: Sequence[Payload],
    limits: Limits,
    database: str | None,
    labels: dict[str, float] | None = None,
) -> list[Entry]:
    """Parse and validate a chunk of files; pure, so it runs on any worker.

    `labels` are values by file name (from a label table) set on the file's records.
    """
    out: list[Entry] = []
    with warnings.catch_warnings():  # readers' warnings are per file, not for the console
        warnings.simplefilter("ignore")
        for item in items:
            entries = process_payload(item, limits, database)
            value = (labels or {}).get(file_key(item.name))
            if value is not None:
                entries = [_labelled(entry, value) for entry in entries]
            out.extend(entries)
    return out


def _labelled(entry: Entry, value: float) -> Entry:
    """A record carrying its label table value; rejections pass unchanged."""
    if isinstance(entry, Rejection):
        return entry
    return replace(entry, properties={**entry.properties, SOURCE_PROPERTY: value})


def validate_parsed(items: Sequence[ParsedStructure], limits: Limits) -> list[Entry]:
    """Validation only, for readers that parse a whole dataset at once (OMDB-GAP1)."""
    return validate_all(items, limits)


# --- update targets ----------------------------------------------------------------------


def ingest_paths(
    db: Database,
    settings: Settings,
    paths: Sequence[str | Path],
    *,
    database: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    chunk_size: int = 64,
    workers: int | None = None,
    on_progress: Progress | None = None,
    on_total: Callable[[int | None], None] | None = None,
    label_table: LabelTable | None = None,
) -> IngestSummary:
    """Ingest files, folders and archives of structure files into the database.

    With a label table, each file's value becomes a label of its structures.
    """
    inputs = expand(paths)
    for folder, held in inputs.empty_folders.items():  # stderr through the CLI's log handler
        log.warning(empty_folder_warning(folder, held))
    if on_total is not None:
        on_total(count_inputs(inputs.files))
    parameters = {
        "paths": [str(p) for p in paths],
        "database": database,
        "limits": vars_of(limits),
        "chunk_size": chunk_size,
        "ignored_files": inputs.ignored,
        "empty_folders": inputs.empty_folders,
    }
    spec = None
    if label_table is not None:
        spec = label_table.spec
        parameters["label_table"] = {"rows": len(label_table.values), **vars(spec)}
    stream = payloads(inputs.files, limits.max_file_bytes)

    def submit(client: Client, chunk: list[Payload]) -> Future:
        values = label_table.for_names([p.name for p in chunk]) if label_table else None
        return client.submit(process_payloads, chunk, limits, database, values, pure=False)

    summary = run_batch(
        db, settings, parameters, database, stream, submit, chunk_size, workers, spec, on_progress
    )
    summary.ignored = inputs.ignored
    summary.empty_folders = inputs.empty_folders
    return summary


def ingest_parsed(
    db: Database,
    settings: Settings,
    entries: Iterable[ParsedStructure | Rejection],
    parameters: dict[str, Any],
    *,
    database: str | None,
    labels: LabelSpec | None,
    limits: Limits = DEFAULT_LIMITS,
    chunk_size: int = 256,
    workers: int | None = None,
    on_progress: Progress | None = None,
) -> IngestSummary:
    """Ingest already-parsed entries (a dataset layout read whole), validating on workers."""

    def submit(client: Client, chunk: list[ParsedStructure]) -> Future:
        return client.submit(validate_parsed, chunk, limits, pure=False)

    return run_batch(
        db,
        settings,
        {**parameters, "limits": vars_of(limits)},
        database,
        entries,
        submit,
        chunk_size,
        workers,
        labels,
        on_progress,
    )


def ingest_omdb_gap1(
    db: Database,
    settings: Settings,
    directory: str | Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
    on_progress: Progress | None = None,
    on_total: Callable[[int | None], None] | None = None,
) -> IngestSummary:
    """Load a folder in the OMDB-GAP1 layout, its band gaps stored as PBE labels."""
    try:
        entries = read_omdb_gap1(directory)
    except IngestError as exc:
        raise IngestInputError(f"ingest --format omdb-gap1: {exc.message}") from None
    if on_total is not None:
        on_total(len(entries))
    parameters = {"paths": [str(directory)], "format": "omdb-gap1", "database": "cod"}
    return ingest_parsed(
        db,
        settings,
        entries,
        parameters,
        database="cod",
        labels=OMDB_GAP1_LABELS,
        limits=limits,
        workers=workers,
        on_progress=on_progress,
    )


def run_batch(
    db: Database,
    settings: Settings,
    parameters: dict[str, Any],
    database: str | None,
    stream: Iterable[Any],
    submit: Callable[[Client, list[Any]], Future],
    chunk_size: int,
    workers: int | None,
    labels: LabelSpec | None,
    on_progress: Progress | None,
) -> IngestSummary:
    """The shared loop: a run record, a batch row, a bounded window of chunks on Dask.

    `submit` turns a chunk of inputs into a Dask future of entries; the readers above are the
    usual ones, and tests hand in their own.
    """
    with track_run(db, "ingest", parameters) as run:
        batch_id = _open_batch(db, run.id, database, parameters)
        summary = IngestSummary(run_id=run.id, batch_id=batch_id)
        try:
            with dask_client(settings, n_workers=workers) as client:
                window = window_for(client)
                _drive(db, client, stream, submit, chunk_size, window, summary, labels, on_progress)
        finally:
            run.results.update(summary.as_dict())
            _close_batch(db, batch_id)
    return summary


def _drive(
    db: Database,
    client: Client,
    stream: Iterable[Any],
    submit: Callable[[Client, list[Any]], Future],
    chunk_size: int,
    window: int,
    summary: IngestSummary,
    labels: LabelSpec | None,
    on_progress: Progress | None,
) -> None:
    """Chunks through the runner, bisected when they crash; each written as it finishes."""

    def work() -> Iterator[list[Any]]:
        for chunk in _chunks(stream, chunk_size):
            ready = [item for item in chunk if isinstance(item, Rejection)]
            if ready:  # refused before any parsing (oversized, unreadable): write directly
                _record(db, summary, ready, len(ready), labels, on_progress)
            rest = [item for item in chunk if not isinstance(item, Rejection)]
            if rest:
                yield rest

    with noting_lost_workers(client) as track:
        for done in run_window(
            lambda chunk: track(submit(client, chunk)), work(), window, bisect=True
        ):
            entries = (
                [_quarantined(done.item[0], done.result)]
                if isinstance(done.result, Crashed)
                else done.result
            )
            _record(db, summary, entries, _files_in(done.item), labels, on_progress)


def _quarantined(item: Payload | ParsedStructure, crash: Crashed) -> Rejection:
    """The one input whose processing still fails alone, refused with the cause."""
    name, entry, sha = (
        (item.name, None, sha256_bytes(item.data))
        if isinstance(item, Payload)
        else (str(item.path), item.entry, item.sha256)  # a ParsedStructure of a dataset reader
    )
    log.warning("quarantined %s: %s", name, crash.describe())
    return Rejection(
        name,
        entry,
        CRASHED,
        f"{name}: processing it killed the worker or failed outside the readers "
        f"({crash.describe()}); quarantined so the batch could go on",
        sha,
    )


def _files_in(work: Sequence[Any]) -> int:
    """Payloads are files; parsed entries of one dataset count as one input each."""
    return len(work)


def _record(
    db: Database,
    summary: IngestSummary,
    entries: Sequence[Entry],
    files: int,
    labels: LabelSpec | None,
    on_progress: Progress | None,
) -> None:
    counts = write_chunk(db, summary.batch_id, entries, labels, files=files)
    summary.files += files
    summary.counts.add(counts)
    if on_progress is not None:
        on_progress(summary)


def _chunks(stream: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Fixed-size lists from a stream, without reading ahead more than one chunk."""
    chunk: list[Any] = []
    for item in stream:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _open_batch(db: Database, run_id: int, database: str | None, parameters: dict[str, Any]) -> int:
    """The batch row exists (committed) before any chunk is written."""
    with db.session() as session:
        batch = IngestBatch(
            run_id=run_id, source_database=database, paths=parameters.get("paths", [])
        )
        session.add(batch)
        session.flush()
        return batch.id


def _close_batch(db: Database, batch_id: int) -> None:
    with db.session() as session:
        session.execute(
            update(IngestBatch).where(IngestBatch.id == batch_id).values(finished_at=func.now())
        )


def vars_of(limits: Limits) -> dict[str, Any]:
    """A dataclass's fields as JSON-ready values, for the run record."""
    return {name: getattr(limits, name) for name in limits.__dataclass_fields__}


def reject_reasons(db: Database, batch_id: int) -> list[tuple[str, int, str]]:
    """Why a batch's inputs were refused: reason, count and one example message."""
    query = (
        select(IngestReject.reason, func.count(), func.min(IngestReject.message))
        .where(IngestReject.batch_id == batch_id)
        .group_by(IngestReject.reason)
        .order_by(func.count().desc(), IngestReject.reason)
    )
    with db.session() as session:
        return [(str(r), int(n), str(m)) for r, n, m in session.execute(query)]
