"""Descriptor sets and kernel matrices on Dask: metadata rows in PostgreSQL, numbers in Zarr.

Builder-style, like ingestion: the client selects structures and ships cells to the workers in
bounded batches; workers compute (pure functions of `soap` and `kernels`) and, for kernels,
write their own tile straight into the Zarr array. The square kernel of N structures is cut
into tiles of `tile` x `tile` (one Zarr chunk each); each off-diagonal tile is computed once
and written twice (as itself and transposed). A one-byte-per-tile `done` array records
finished tiles, so an interrupted build resumes where it stopped. For the Nyström
approximation the columns are m landmarks drawn (seeded) from a release's labelled train
split (`landmarks`); the kernel row records their count, seed and release.

The descriptor is SOAP (featomic's average spectra) or MBTR (DScribe): both are species-keyed
blocks in the same layout and give the same normalised linear kernel (`core/descriptors.py`
says what differs: the descriptor set's kind and library, the kernel's name).

Layout in the artifact store:
  descriptors/<id>/{indptr,keys,values,norms}   SOAP spectra or MBTR blocks, CSR by structure
  kernels/<id>/matrix                           the kernel, chunked tile x tile
  kernels/<id>/done                             (row tiles, column tiles) uint8

New arrays are written through the store configured now; existing ones are read (and a
kernel resumed) at the URIs their rows recorded: the descriptor set's folder and the
kernel's matrix, with `done` beside it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from sqlalchemy import ARRAY, BigInteger, cast, select
from sqlalchemy.orm import Session

from crystaldb.core.descriptors import SOAP, Hypers, describe, kind_of
from crystaldb.core.errors import CrystaldbError
from crystaldb.core.kernels import average_kernel
from crystaldb.core.krr import RegressionError, draw_landmarks, exact_advice
from crystaldb.core.soap import AverageSpectra, SoapHypers, concatenate
from crystaldb.jobs.runner import bounded_map
from crystaldb.platform.cluster import dask_client, worker_count
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore, Keys, open_array_uri, uri_exists
from crystaldb.query.selection import batches, load_cells, release_labels, select_structures
from crystaldb.schema import DescriptorSet, KernelMatrix, Release
from crystaldb.schema.releases import ReleaseRef
from crystaldb.schema.runs import track_run

log = logging.getLogger(__name__)

DESCRIPTOR_KIND = SOAP.kind  # SOAP's; MBTR's names are in core/descriptors.py
KERNEL_KIND = SOAP.kernel
DESCRIPTOR_BATCH = 32  # structures per worker task: ~2,600 atoms of an OMDB-GAP1 crystal
DEFAULT_TILE = 2048

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class KernelError(CrystaldbError):
    """A kernel that cannot be built or used as asked, with what to do instead."""


def complete_kernel(session: Session, kernel_id: int) -> KernelMatrix:
    """The kernel `--kernel` names, refused with what to do when it is missing or unfinished."""
    kernel = session.get(KernelMatrix, kernel_id)
    if kernel is None:
        raise KernelError(f"--kernel: no kernel {kernel_id} (see `crystaldb kernel list`)")
    if kernel.status != "complete":
        raise KernelError(
            f"--kernel {kernel_id} is still {kernel.status}: re-run `crystaldb kernel build`"
            " with the same arguments to finish it"
        )
    return kernel


@dataclass(frozen=True)
class KernelSummary:
    """What `crystaldb kernel build` reports."""

    kernel_id: int
    descriptor_set_id: int
    shape: tuple[int, int]
    tiles_total: int
    tiles_computed: int  # this run; fewer than total when resuming or already complete
    run_id: int
    array_uri: str
    checksum: str


@dataclass(frozen=True)
class Landmarks:
    """The columns of a Nyström rectangle, and what the kernel row records of their choice."""

    ids: list[int]
    record: dict[str, Any]  # {"count": M, "seed": S, "release": "NAME:VERSION"}


def choose_landmarks(db: Database, release: str, count: int, seed: int = 0) -> Landmarks:
    """M structures drawn at random (seeded) from the release's labelled train split."""
    selection = select_structures(db, release=release)
    labels = release_labels(db, selection)
    train = [
        sid
        for sid, split, label in zip(
            selection.structure_ids, selection.splits or (), labels, strict=True
        )
        if split == "train" and not np.isnan(label)
    ]
    if not train:
        raise KernelError(
            f"--landmarks: {selection.description} has no labelled train split to draw"
            " landmarks from; create the release with --label and --split (e.g. ordered:N,M)"
        )
    with db.session() as session:
        release_row = session.get_one(Release, selection.release_id)
        name = str(ReleaseRef(release_row.name, release_row.version))
    try:
        chosen = draw_landmarks(len(train), count, seed, f"release {name}")
    except RegressionError as exc:
        raise KernelError(str(exc)) from None
    record = {"count": count, "seed": seed, "release": name}
    return Landmarks(ids=[train[i] for i in chosen], record=record)


# --- workers --------------------------------------------------------------------------------


def spectra_task(cells: list[Any], hypers: Hypers) -> AverageSpectra:
    """Worker: the descriptor blocks (average SOAP spectra, or MBTR) of one batch of cells."""
    return describe(cells, hypers)


def read_spectra(uri: str, rows: np.ndarray, what: str) -> AverageSpectra:
    """Rows of the descriptor set at `uri`, in the order asked, reading contiguous runs at once."""
    indptr_all = np.asarray(open_array_uri(f"{uri}/indptr", what)[:])
    keys_array = open_array_uri(f"{uri}/keys", what)
    values_array = open_array_uri(f"{uri}/values", what)
    norms_all = np.asarray(open_array_uri(f"{uri}/norms", what)[:])
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    parts = []
    for run in np.split(rows, breaks):
        first, last = int(run[0]), int(run[-1]) + 1
        lo, hi = int(indptr_all[first]), int(indptr_all[last])
        parts.append(
            AverageSpectra(
                indptr=indptr_all[first : last + 1] - lo,
                keys=np.asarray(keys_array[lo:hi]),
                values=np.asarray(values_array[lo:hi]),
                norms=norms_all[first:last],
            )
        )
    return concatenate(parts)


@dataclass(frozen=True)
class TileJob:
    """One tile for a worker: where to read its rows and columns, where to write it."""

    descriptor_uri: str
    matrix_uri: str
    kernel_id: int
    row_tile: int
    col_tile: int
    rows: np.ndarray  # descriptor-set rows of the tile's kernel rows
    cols: np.ndarray
    row_start: int
    col_start: int
    zeta: float
    mirror: bool  # symmetric kernel, off-diagonal tile: also write the transpose


def tile_task(job: TileJob) -> tuple[int, int, float]:
    """Worker: compute one tile, write it (and its mirror), then mark it done."""
    what = f"kernel {job.kernel_id}"
    left = read_spectra(job.descriptor_uri, job.rows, f"{what} descriptors")
    same = np.array_equal(job.rows, job.cols)
    right = left if same else read_spectra(job.descriptor_uri, job.cols, f"{what} descriptors")
    tile = average_kernel(left, right, job.zeta)
    matrix = open_array_uri(job.matrix_uri, what, mode="r+")
    r0, c0 = job.row_start, job.col_start
    matrix[r0 : r0 + tile.shape[0], c0 : c0 + tile.shape[1]] = tile
    done = open_array_uri(done_uri(job.matrix_uri), what, mode="r+")
    if job.mirror:
        matrix[c0 : c0 + tile.shape[1], r0 : r0 + tile.shape[0]] = tile.T
        done[job.col_tile, job.row_tile] = 1
    done[job.row_tile, job.col_tile] = 1  # last: a tile marked done is fully written
    return job.row_tile, job.col_tile, float(tile.sum())


# --- descriptors ----------------------------------------------------------------------------


def find_descriptor_set(db: Database, hypers: Hypers, ids: Sequence[int]) -> int | None:
    """A complete descriptor set with these hyperparameters covering every id, still reachable."""
    query = (
        select(DescriptorSet.id, DescriptorSet.array_uri)
        .where(
            DescriptorSet.kind == kind_of(hypers).kind,
            DescriptorSet.status == "complete",
            DescriptorSet.hyperparameters == hypers.record(),
            DescriptorSet.structure_ids.op("@>")(cast(list(ids), ARRAY(BigInteger))),
        )
        .order_by(DescriptorSet.id.desc())
    )
    with db.session() as session:
        found = session.execute(query).all()
    return next((set_id for set_id, uri in found if uri_exists(uri)), None)


def build_descriptors(
    db: Database,
    client: Any,
    store: ArtifactStore,
    hypers: Hypers,
    ids: Sequence[int],
    run_id: int,
    on_progress: Progress | None = None,
) -> int:
    """Compute and store the descriptors of `ids` (in that order) as a new descriptor set."""
    from importlib import metadata

    names = kind_of(hypers)
    with db.session() as session:
        row = DescriptorSet(
            kind=names.kind,
            hyperparameters=hypers.record(),
            library=names.library,
            library_version=metadata.version(names.library),
            structure_ids=list(ids),
            array_uri="",
            shape=[len(ids), 0],
            chunks=[0, 0],
            dtype="float64",
            run_id=run_id,
        )
        session.add(row)
        session.flush()
        set_id = row.id
    key = Keys.descriptors(set_id)
    width = hypers.block_width
    chunk_rows = max(1, (8 << 20) // (8 * width))  # ~8 MB chunks of block values
    values = store.create_array(f"{key}/values", (0, width), (chunk_rows, width))
    keys = store.create_array(f"{key}/keys", (0, 3), (chunk_rows, 3), dtype="int32")
    indptr, norms, written, total = [0], [], 0, len(ids)
    done: dict[int, AverageSpectra] = {}
    next_batch = 0
    work = (load_cells(db, batch) for batch in batches(ids, DESCRIPTOR_BATCH))
    window = 2 * worker_count(client)
    for index, spectra in bounded_map(client, spectra_task, work, window, hypers):
        done[index] = spectra
        while next_batch in done:  # append in structure order whatever finished first
            part = done.pop(next_batch)
            values.append(part.values, axis=0)
            keys.append(part.keys, axis=0)
            indptr.extend((part.indptr[1:] + indptr[-1]).tolist())
            norms.append(part.norms)
            written += part.num_structures
            next_batch += 1
            if on_progress:
                on_progress("descriptors", written, total)
    indptr_array = store.create_array(f"{key}/indptr", (len(indptr),), (len(indptr),), "int64")
    indptr_array[:] = np.asarray(indptr, dtype=np.int64)
    norms_array = store.create_array(f"{key}/norms", (total,), (max(1, total),))
    norms_array[:] = np.concatenate(norms) if norms else np.zeros(0)
    with db.session() as session:
        row = session.get_one(DescriptorSet, set_id)
        row.array_uri = store.uri(key)
        row.shape = [total, width]
        row.chunks = [chunk_rows, width]
        row.checksum = _checksum_blocks(store, key)
        row.status = "complete"
    return set_id


def _checksum_blocks(store: ArtifactStore, key: str) -> str:
    """sha256 over the descriptor arrays, read back in bounded slices."""
    digest = hashlib.sha256()
    for name in ("indptr", "norms", "keys", "values"):
        array = store.open_array(f"{key}/{name}")
        step = max(1, int(array.chunks[0]))
        for start in range(0, array.shape[0], step):
            digest.update(np.ascontiguousarray(array[start : start + step]).tobytes())
    return digest.hexdigest()


# --- kernels --------------------------------------------------------------------------------


def build_kernel(
    db: Database,
    settings: Settings,
    rows: Sequence[int],
    cols: Sequence[int] | None = None,
    hypers: Hypers | None = None,
    zeta: float = 1.0,
    tile: int = DEFAULT_TILE,
    workers: int | None = None,
    on_progress: Progress | None = None,
    description: str = "",
    landmarks: dict[str, Any] | None = None,
) -> KernelSummary:
    """The kernel between `rows` and `cols` (square over `rows` when cols is None).

    SOAP's average kernel by default; MBTR's cosine kernel when `hypers` are MbtrHypers.
    `landmarks` (count, seed, release) records that `cols` are a Nyström rectangle's landmarks.
    """
    hypers = hypers or SoapHypers()
    kernel_name = kind_of(hypers).kernel
    rows = list(rows)
    cols_list = rows if cols is None else list(cols)
    if not rows or not cols_list:
        raise KernelError(f"{description or 'the selection'} holds no structures")
    if zeta <= 0:
        raise KernelError(f"--zeta: must be positive (got {zeta})")
    if tile < 16:
        raise KernelError(f"--tile: at least 16 rows per tile (got {tile})")
    symmetric = cols is None or cols_list == rows
    advice = exact_advice(len(rows)) if symmetric else None
    if advice:
        log.warning("a square kernel of %s structures: %s", f"{len(rows):,}", advice)
    store = ArtifactStore(settings.store_location)
    hyper: dict[str, Any] = {"zeta": zeta, "normalised": True}
    if landmarks is not None:
        hyper["landmarks"] = landmarks
    parameters = {
        "descriptor": hypers.record(),
        "kernel": kernel_name,
        **hyper,
        "tile": tile,
        "shape": [len(rows), len(cols_list)],
        "selection": description,
    }
    with track_run(db, "kernel", parameters) as run:
        needed = list(dict.fromkeys(rows + cols_list))
        with dask_client(settings, n_workers=workers) as client:
            set_id = find_descriptor_set(db, hypers, needed)
            if set_id is None:
                set_id = build_descriptors(db, client, store, hypers, needed, run.id, on_progress)
            kernel_id, matrix_uri = _find_or_create_kernel(
                db, store, set_id, kernel_name, rows, cols_list, hyper, tile, run.id
            )
            jobs = _pending_tiles(db, set_id, kernel_id, matrix_uri, rows, cols_list, zeta, tile)
            total = _tile_count(len(rows), len(cols_list), tile, symmetric)
            computed = 0
            for _ in bounded_map(client, tile_task, iter(jobs), 2 * worker_count(client)):
                computed += 1
                if on_progress:
                    on_progress("tiles", total - len(jobs) + computed, total)
        checksum = _finish_kernel(db, kernel_id, matrix_uri)
        run.results.update(kernel_id=kernel_id, descriptor_set_id=set_id, tiles_computed=computed)
    return KernelSummary(
        kernel_id=kernel_id,
        descriptor_set_id=set_id,
        shape=(len(rows), len(cols_list)),
        tiles_total=total,
        tiles_computed=computed,
        run_id=run.id,
        array_uri=matrix_uri,
        checksum=checksum,
    )


def _tile_count(n_rows: int, n_cols: int, tile: int, symmetric: bool) -> int:
    """Tiles a build computes: the upper triangle with the diagonal when symmetric."""
    a, b = -(-n_rows // tile), -(-n_cols // tile)
    return a * (a + 1) // 2 if symmetric else a * b


def _find_or_create_kernel(
    db: Database,
    store: ArtifactStore,
    set_id: int,
    kernel_name: str,
    rows: list[int],
    cols: list[int],
    hyper: dict[str, Any],
    tile: int,
    run_id: int,
) -> tuple[int, str]:
    """The same kernel already started (to resume or reuse), or a new row and empty arrays.

    Returns its id and matrix URI; a kernel whose recorded URI cannot be reached is built anew.
    """
    with db.session() as session:
        existing = session.execute(
            select(KernelMatrix.id, KernelMatrix.array_uri)
            .where(
                KernelMatrix.descriptor_set_id == set_id,
                KernelMatrix.kernel == kernel_name,
                KernelMatrix.hyperparameters == hyper,
                KernelMatrix.chunks == [tile, tile],
                KernelMatrix.row_ids == rows,
                KernelMatrix.col_ids == cols,
            )
            .order_by(KernelMatrix.id.desc())
        ).first()
        if existing is not None and uri_exists(done_uri(existing.array_uri)):
            log.info("resuming kernel %d", existing.id)
            return existing.id, existing.array_uri
        row = KernelMatrix(
            descriptor_set_id=set_id,
            kernel=kernel_name,
            hyperparameters=hyper,
            row_ids=rows,
            col_ids=cols,
            array_uri="",
            shape=[len(rows), len(cols)],
            chunks=[tile, tile],
            dtype="float64",
            run_id=run_id,
        )
        session.add(row)
        session.flush()
        kernel_id = row.id
        key = Keys.kernel(kernel_id)
        row.array_uri = matrix_uri = store.uri(f"{key}/matrix")
    store.create_array(f"{key}/matrix", (len(rows), len(cols)), (tile, tile), compressed=False)
    grid = (-(-len(rows) // tile), -(-len(cols) // tile))
    store.create_array(f"{key}/done", grid, (1, 1), dtype="uint8")
    return kernel_id, matrix_uri


def done_uri(matrix_uri: str) -> str:
    """A kernel's tile-progress array, beside the matrix (the URI its row records)."""
    return f"{matrix_uri.rsplit('/', 1)[0]}/done"


def _pending_tiles(
    db: Database,
    set_id: int,
    kernel_id: int,
    matrix_uri: str,
    rows: list[int],
    cols: list[int],
    zeta: float,
    tile: int,
) -> list[TileJob]:
    """Tiles not yet marked done, each with the descriptor rows it reads."""
    with db.session() as session:
        descriptors = session.get_one(DescriptorSet, set_id)
        order, descriptor_uri = descriptors.structure_ids, descriptors.array_uri
    position = {sid: i for i, sid in enumerate(order)}
    row_pos = np.array([position[s] for s in rows], dtype=np.int64)
    col_pos = row_pos if cols is rows else np.array([position[s] for s in cols], dtype=np.int64)
    symmetric = cols == rows
    done = np.asarray(open_array_uri(done_uri(matrix_uri), f"kernel {kernel_id}")[:])
    jobs = []
    for i in range(done.shape[0]):
        for j in range(i if symmetric else 0, done.shape[1]):
            if done[i, j]:
                continue
            jobs.append(
                TileJob(
                    descriptor_uri=descriptor_uri,
                    matrix_uri=matrix_uri,
                    kernel_id=kernel_id,
                    row_tile=i,
                    col_tile=j,
                    rows=row_pos[i * tile : (i + 1) * tile],
                    cols=col_pos[j * tile : (j + 1) * tile],
                    row_start=i * tile,
                    col_start=j * tile,
                    zeta=zeta,
                    mirror=symmetric and i != j,
                )
            )
    return jobs


def _finish_kernel(db: Database, kernel_id: int, matrix_uri: str) -> str:
    """Check every tile is done, checksum the matrix, mark the row complete."""
    done = np.asarray(open_array_uri(done_uri(matrix_uri), f"kernel {kernel_id}")[:])
    if not done.all():
        raise KernelError(f"kernel {kernel_id}: {int((done == 0).sum())} tiles missing")
    checksum = matrix_checksum(open_array_uri(matrix_uri, f"kernel {kernel_id}"))
    with db.session() as session:
        row = session.get_one(KernelMatrix, kernel_id)
        row.checksum, row.status = checksum, "complete"
    return checksum


def matrix_checksum(matrix: zarr.Array) -> str:
    """sha256 of the matrix's float64 bytes in row order, read a row of tiles at a time."""
    digest = hashlib.sha256()
    step = int(matrix.chunks[0])
    for start in range(0, matrix.shape[0], step):
        digest.update(np.ascontiguousarray(matrix[start : start + step]).tobytes())
    return digest.hexdigest()


def list_kernels(db: Database) -> list[tuple[KernelMatrix, dict[str, Any]]]:
    """Every kernel with its descriptor hyperparameters, newest first."""
    with db.session() as session:
        rows = session.execute(
            select(KernelMatrix, DescriptorSet.hyperparameters)
            .join(DescriptorSet, DescriptorSet.id == KernelMatrix.descriptor_set_id)
            .order_by(KernelMatrix.id.desc())
        ).all()
        session.expunge_all()
    return [(kernel, dict(hypers)) for kernel, hypers in rows]
