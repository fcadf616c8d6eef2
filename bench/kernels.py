"""Kernel speed: tile GFLOP/s, an N x N kernel end to end to Zarr, and KRR peak memory.

    python bench/kernels.py [--n 12500] [--krr-n 10000] [--cv-n 4000] [--landmarks M]
                            [--server URL]
                            [--tile 2048] [--repeat 3] [--no-omdb-tile] [--skip-build]

All with the paper's SOAP setting (`SoapHypers()`: r_c = 4 A, n_max = 8, l_max = 6), on
real organic crystals (bench/soap.py `organic_records`: the molecular crystals and the COD
CIFs with C and H) cycled to a mean of 82 atoms (bench/common.py `cycled`). Two sets:

- **CHNO**: the 31 of them made of H, C, N and O only: 40 species triples, so a dense
  N x D descriptor matrix (D = 40 x 448 = 17,920) fits in memory for the baselines;
- **OMDB-like**: all 83 (36 elements): 1,339 triples, D = 599,872, most of them rare
  (1.5% of the dense products are non-zero), closer to OMDB-GAP1's 65 elements.

a. Tile: `linear_kernel(a, b)` on a tile x tile off-diagonal tile (two different row
   orders) and a diagonal one (`a is b`, BLAS syrk) vs a NumPy matmul of the same dense
   shape (tile x D times D x tile, D = the common triples x 448: the columns linear_kernel
   multiplies), GFLOP/s counted as 2 * rows * cols * D for both. Where the dense operands
   would not fit (OMDB-like: 2 x 9.8 GB) NumPy is timed at D = --cap-columns and its rate
   used. Beside it, an ablation (not crystaldb): the same groups of 16 triples, each
   multiplied over every row, zeros included (crystaldb before 2026-12-01).
b. End to end: N structures (CHNO, each copy rattled by 0.02 A so all differ) stored in a
   fresh database with the ingest writer, then `build_kernel(db, settings, ids)` (local Dask
   cluster of 2 workers: descriptors into Zarr, tiles into a Zarr v3 array, checksum),
   vs the NumPy-in-memory time (the same stored descriptors as one dense N x D matrix, read
   untimed; X @ X.T, normalise, clip) plus a plain `zarr` write of the result with the same
   chunks. The descriptor stage is compared with bare featomic on a sample of the same
   structures (its rate scaled to all atoms).
c. KRR peak memory: `krr.fit` on the first --krr-n rows of that Zarr kernel (read as
   `train_krr` reads it), and `cross_validate` with 10 folds on the first --cv-n, each
   against the size of the N x N training kernel (8 N^2 bytes): the peak RSS above the RSS
   before the call (VmHWM reset through /proc/self/clear_refs) and tracemalloc's peak (NumPy
   registers its buffers), in two separate runs. Then Nystrom: `nystrom_fit` and
   `cross_validate(nystrom=...)` on the same rows against --landmarks of them (default a
   quarter), each against the N x m rectangle it reads (8 N m bytes).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import shutil
import statistics
import tempfile
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import zarr
from common import cycled, drop_database, fresh_database  # bench/common.py
from soap import cell_of, frames_of, organic_records  # bench/soap.py

from crystaldb.core.kernels import KEYS_PER_GROUP, key_codes, linear_kernel
from crystaldb.core.krr import cross_validate, fit, nystrom_fit
from crystaldb.core.records import StructureRecord
from crystaldb.core.soap import AverageSpectra, SoapHypers, average_spectra
from crystaldb.jobs.kernels import build_kernel, read_spectra
from crystaldb.jobs.load import write_chunk
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import load_settings
from crystaldb.platform.store import ArtifactStore, open_array_uri
from crystaldb.schema import DescriptorSet, IngestBatch, Structure, migrate
from crystaldb.schema.runs import track_run

CHNO = {"H", "C", "N", "O"}
GB = 1e9
GRID = tuple(10.0**k for k in range(-5, 3))  # 8 values like DEFAULT_GRID; rattled copies
# are near-duplicates, so K + 1e-8 I need not be numerically positive definite


# --- descriptors in memory ------------------------------------------------------------------


def take(spectra: AverageSpectra, rows: np.ndarray) -> AverageSpectra:
    """The given rows of a block set, in that order (rows may repeat)."""
    counts = np.diff(spectra.indptr)[rows]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    index = np.repeat(spectra.indptr[rows] - indptr[:-1], counts) + np.arange(indptr[-1])
    return AverageSpectra(
        indptr=indptr,
        keys=spectra.keys[index],
        values=spectra.values[index],
        norms=spectra.norms[rows],
    )


def every_row_linear_kernel(a: AverageSpectra, b: AverageSpectra) -> np.ndarray:
    """Ablation, not crystaldb: linear_kernel's groups of triples, each over every row (zeros
    included), as crystaldb did before it skipped the rows that lack a group's triples."""
    common = np.intersect1d(key_codes(a.keys), key_codes(b.keys))
    kernel = np.zeros((a.num_structures, b.num_structures))
    for start in range(0, len(common), KEYS_PER_GROUP):
        group = common[start : start + KEYS_PER_GROUP]
        left = densify(a, group)
        kernel += left @ (left if a is b else densify(b, group)).T
    return kernel


def densify(spectra: AverageSpectra, group: np.ndarray) -> np.ndarray:
    """Every row x (group triples x width), zeros where a row lacks a triple."""
    n, width = spectra.num_structures, spectra.values.shape[1]
    codes = key_codes(spectra.keys)
    where = np.searchsorted(group, codes)
    hit = where < len(group)
    hit[hit] = group[where[hit]] == codes[hit]
    rows = np.repeat(np.arange(n), np.diff(spectra.indptr))
    dense = np.zeros((n, len(group), width))
    dense[rows[hit], where[hit]] = spectra.values[hit]
    return dense.reshape(n, len(group) * width)


def useful_fraction(a: AverageSpectra, b: AverageSpectra) -> float:
    """Share of the dense tile x D x tile products whose both factors can be non-zero."""
    count_a = Counter(key_codes(a.keys).tolist())
    count_b = Counter(key_codes(b.keys).tolist())
    common = set(count_a) & set(count_b)
    useful = sum(count_a[c] * count_b[c] for c in common)
    return useful / (a.num_structures * b.num_structures * len(common))


# --- a. tile --------------------------------------------------------------------------------


def median_time(run: Callable[[], Any], repeat: int) -> float:
    """Median wall time of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def numpy_times(left: np.ndarray, right: np.ndarray, repeat: int) -> tuple[float, float]:
    """Median seconds of left @ right.T (gemm) and left @ left.T (syrk)."""
    return (
        median_time(lambda: left @ right.T, repeat),
        median_time(lambda: left @ left.T, repeat),
    )


def tile_bench(
    name: str, records: list[StructureRecord], tile: int, repeat: int, cap_columns: int
) -> dict[str, Any]:
    """linear_kernel vs NumPy on one off-diagonal and one diagonal tile of cycled records."""
    hypers = SoapHypers()
    start = time.perf_counter()
    distinct = average_spectra([cell_of(i, r) for i, r in enumerate(records)], hypers)
    position = {id(r): i for i, r in enumerate(records)}
    order = np.array([position[id(r)] for r in cycled(records, 2 * tile)])
    a, b = take(distinct, order[:tile]), take(distinct, order[tile:])
    common = np.intersect1d(key_codes(a.keys), key_codes(b.keys))
    depth = len(common) * hypers.block_width
    flops = 2.0 * tile * tile * depth
    print(
        f"{name}: {len(records)} distinct crystals, spectra in {time.perf_counter() - start:.1f} s;"
        f" tile {tile} x {tile}, {len(common)} common triples, D = {depth:,}"
    )
    result: dict[str, Any] = {"name": name, "D": depth, "flops": flops, "repeat": repeat}
    result["useful"] = useful_fraction(a, b)
    columns = min(depth, cap_columns)
    if columns == depth:
        left, right = densify(a, common), densify(b, common)
        check = linear_kernel(a, b)
        result["max_diff"] = float(np.abs(check - left @ right.T).max())
        del check
    else:
        rng = np.random.default_rng(0)
        left, right = rng.random((tile, columns)), rng.random((tile, columns))
    scale = depth / columns  # NumPy's time at the full depth, from its rate at `columns`
    gemm, syrk = numpy_times(left, right, repeat)
    result["numpy"], result["numpy_syrk"] = gemm * scale, syrk * scale
    result["numpy_columns"] = columns
    del left, right
    gc.collect()
    result["crystaldb"] = median_time(lambda: linear_kernel(a, b), repeat)
    result["crystaldb_diag"] = median_time(lambda: linear_kernel(a, a), repeat)
    result["every_row"] = median_time(lambda: every_row_linear_kernel(a, b), repeat)
    return result


def print_tiles(results: list[dict[str, Any]]) -> None:
    """The tile table."""
    print()
    print("a. kernel tile (GFLOP/s = 2 * rows * cols * D / s, dense-equivalent)")
    print(f"{'set':<12}{'tile':<34}{'seconds':>9}{'GFLOP/s':>9}{'x NumPy':>9}")
    for r in results:
        rows = [
            ("NumPy A @ B.T", r["numpy"], r["numpy"]),
            ("crystaldb linear_kernel(a, b)", r["crystaldb"], r["numpy"]),
            ("NumPy A @ A.T (syrk)", r["numpy_syrk"], r["numpy_syrk"]),
            ("crystaldb linear_kernel(a, a)", r["crystaldb_diag"], r["numpy_syrk"]),
            ("ablation: every row per group (a, b)", r["every_row"], r["numpy"]),
        ]
        for label, seconds, base in rows:
            rate = r["flops"] / seconds / GB
            print(f"{r['name']:<12}{label:<34}{seconds:9.2f}{rate:9.1f}{base / seconds:9.2f}")
        note = f"NumPy timed at D = {r['numpy_columns']:,} and scaled"
        if r["numpy_columns"] == r["D"]:
            note = f"NumPy on the same dense operands; max |difference| {r['max_diff']:.1e}"
        print(
            f"{'':<12}D = {r['D']:,}; {100 * r['useful']:.1f}% of the dense products non-zero; "
            f"median of {r['repeat']}; {note}"
        )


# --- b. end to end --------------------------------------------------------------------------


def rattled(records: list[StructureRecord], n: int, seed: int = 0) -> list[StructureRecord]:
    """n cycled records, each copy moved by N(0, 0.02 A) per coordinate, each its own row."""
    rng = np.random.default_rng(seed)
    out = []
    for i, record in enumerate(cycled(records, n)):
        lattice = np.asarray(record.lattice, dtype=np.float64)
        frac = np.asarray(record.frac_coords, dtype=np.float64)
        frac = frac + rng.normal(0.0, 0.02, frac.shape) @ np.linalg.inv(lattice)
        out.append(
            replace(
                record,
                frac_coords=(frac % 1.0).tolist(),
                fingerprint=f"bench-kernel-{i}",
                path="bench/kernels",
                entry=i,
                sha256="0" * 64,
                external_ids={},
                properties={},
            )
        )
    return out


def store_records(db: Database, records: list[StructureRecord]) -> list[int]:
    """Write the records with the ingest writer; their ids in order."""
    from sqlalchemy import select

    with track_run(db, "bench") as run, db.session() as session:
        batch = IngestBatch(run_id=run.id)
        session.add(batch)
        session.flush()
        batch_id = batch.id
    for start in range(0, len(records), 2000):
        write_chunk(db, batch_id, records[start : start + 2000])
    with db.session() as session:
        return list(session.scalars(select(Structure.id).order_by(Structure.id)))


def end_to_end(
    db: Database, settings: Any, ids: list[int], tile: int, records: list[StructureRecord]
) -> dict[str, Any]:
    """build_kernel timed by stage, then the NumPy-in-memory baseline and a plain Zarr write."""
    stamps: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stamps.setdefault(f"first {stage}", time.perf_counter())
        if done == total:
            stamps[f"last {stage}"] = time.perf_counter()

    start = time.perf_counter()
    summary = build_kernel(db, settings, ids, tile=tile, workers=2, on_progress=progress)
    end = time.perf_counter()
    out: dict[str, Any] = {
        "total": end - start,
        "descriptors": stamps["last descriptors"] - start,
        "kernel": end - stamps["last descriptors"],
        "tiles": summary.tiles_computed,
        "atoms": sum(r.nsites for r in records),
    }
    with db.session() as session:
        descriptors_uri = session.get_one(DescriptorSet, summary.descriptor_set_id).array_uri
    spectra = read_spectra(descriptors_uri, np.arange(len(ids)), "descriptors")
    codes = np.unique(key_codes(spectra.keys))
    x = densify(spectra, codes)  # untimed: the baseline starts from dense descriptors
    out["D"] = x.shape[1]
    out["dense_gb"] = x.nbytes / GB
    norms = spectra.norms
    del spectra
    gc.collect()
    start = time.perf_counter()
    kernel = x @ x.T
    inverse = 1.0 / norms
    kernel *= inverse[:, None]
    kernel *= inverse[None, :]
    np.clip(kernel, 0.0, 1.0, out=kernel)
    out["numpy"] = time.perf_counter() - start
    del x
    gc.collect()
    path = Path(settings.data_dir) / "baseline.zarr"
    start = time.perf_counter()
    array = zarr.create_array(
        store=str(path),
        shape=kernel.shape,
        chunks=(tile, tile),
        dtype="float64",
        fill_value=np.nan,
        zarr_format=3,
    )
    array[:] = kernel
    out["zarr_write"] = time.perf_counter() - start
    built = open_array_uri(summary.array_uri, f"kernel {summary.kernel_id}")
    out["max_diff"] = max(
        float(np.abs(built[s : s + tile] - kernel[s : s + tile]).max())
        for s in range(0, len(ids), tile)
    )
    out["kernel_id"] = summary.kernel_id
    del kernel
    shutil.rmtree(path, ignore_errors=True)
    gc.collect()
    # the descriptor baseline: bare featomic on a sample of the same structures
    from featomic import SoapPowerSpectrum

    sample = [cell_of(i, r) for i, r in enumerate(records[: min(len(records), 400)])]
    frames = frames_of(sample)
    calculator = SoapPowerSpectrum(**SoapHypers().featomic())
    calculator.compute(frames[:2])
    start = time.perf_counter()
    calculator.compute(frames)
    out["bare_rate"] = sum(c.num_sites for c in sample) / (time.perf_counter() - start)
    return out


def print_build(n: int, r: dict[str, Any]) -> None:
    """The end-to-end table."""
    baseline = r["numpy"] + r["zarr_write"]
    bare_descriptors = r["atoms"] / r["bare_rate"]
    print()
    print(f"b. N = {n:,} kernel to Zarr (CHNO, {r['atoms']:,} atoms, D = {r['D']:,})")
    print(f"{'step':<58}{'seconds':>9}{'x baseline':>12}")
    rows = [
        ("NumPy in memory: X @ X.T, normalise, clip", r["numpy"]),
        ("plain zarr write, same chunks", r["zarr_write"]),
        ("baseline: NumPy + zarr write", baseline),
        (f"build_kernel, kernel stage ({r['tiles']} tiles, checksum)", r["kernel"]),
        ("build_kernel, descriptor stage (cluster start included)", r["descriptors"]),
        ("bare featomic, same atoms (rate from 400 structures)", bare_descriptors),
        ("build_kernel end to end", r["total"]),
    ]
    for label, seconds in rows:
        print(f"{label:<58}{seconds:9.1f}{seconds / baseline:12.2f}")
    print(
        f"kernel stage / baseline {r['kernel'] / baseline:.2f} (goal <= 1.5); end to end / "
        f"(bare featomic + baseline) {r['total'] / (bare_descriptors + baseline):.2f}; "
        f"descriptor stage {r['atoms'] / r['descriptors']:.0f} atoms/s vs bare "
        f"{r['bare_rate']:.0f}; dense X {r['dense_gb']:.2f} GB; max |Zarr - NumPy| "
        f"{r['max_diff']:.1e}"
    )


# --- c. KRR memory --------------------------------------------------------------------------


def _status(field: str) -> int:
    """A /proc/self/status figure in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_rss(run: Callable[[], Any]) -> tuple[float, int]:
    """(seconds, peak RSS above the RSS before the call): VmHWM reset before, read after."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return seconds, _status("VmHWM") - before


def peak_traced(run: Callable[[], Any]) -> int:
    """tracemalloc's peak above what was traced before the call."""
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - before


def krr_memory(
    settings: Any, kernel_id: int, n: int, krr_n: int, cv_n: int, landmarks: int | None
) -> list[dict]:
    """fit and 10-fold cross_validate on leading blocks of the built kernel, exact and Nystrom."""
    store = ArtifactStore(settings.store_location)
    matrix = store.open_array(f"kernels/{kernel_id}/matrix")

    def read(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.asarray(matrix.oindex[rows, cols])  # as train_krr reads it

    y = np.random.default_rng(0).gamma(4.0, 0.76, n)
    fit_n, folds_n = min(krr_n, n), min(cv_n, n)
    m = landmarks or fit_n // 4
    spread = np.random.default_rng(1).choice(fit_n, size=min(m, fit_n), replace=False)
    chosen = np.sort(spread)  # the landmarks: rows of the fit's block, their own columns
    out = []
    for label, size, columns, run in (
        ("fit", fit_n, fit_n, lambda t: fit(read, t, y[t], 1e-3)),
        (
            "cross_validate, 10 folds x 8",
            folds_n,
            folds_n,
            lambda t: cross_validate(read, t, y[t], GRID),
        ),
        (
            f"nystrom_fit, m = {len(chosen):,}",
            fit_n,
            len(chosen),
            lambda t: nystrom_fit(read, t, y[t], chosen, chosen, 1e-3),
        ),
        (
            "cross_validate (Nystrom), 10 x 8",
            fit_n,
            len(chosen),
            lambda t: cross_validate(read, t, y[t], GRID, nystrom=(chosen, chosen)),
        ),
    ):
        train = np.arange(size)
        seconds, rss = peak_rss(lambda train=train, run=run: run(train))
        traced = peak_traced(lambda train=train, run=run: run(train))
        out.append(
            {
                "label": label,
                "n": size,
                "kernel": 8.0 * size * columns,
                "seconds": seconds,
                "rss": rss,
                "traced": traced,
            }
        )
    return out


def print_krr(rows: list[dict]) -> None:
    """The KRR memory table."""
    print()
    print("c. KRR peak memory above the start, against the kernel it reads (goal <= 1.2x):")
    print("   K = 8 N^2 bytes for exact KRR, the N x m rectangle (8 N m) for Nystrom")
    print(
        f"{'call':<32}{'N':>7}{'K GB':>7}{'seconds':>9}{'peak RSS GB':>13}{'x K':>6}"
        f"{'traced GB':>11}{'x K':>6}"
    )
    for r in rows:
        size = r["kernel"]
        print(
            f"{r['label']:<32}{r['n']:>7,}{size / GB:7.2f}{r['seconds']:9.1f}"
            f"{r['rss'] / GB:13.2f}{r['rss'] / size:6.2f}{r['traced'] / GB:11.2f}"
            f"{r['traced'] / size:6.2f}"
        )


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    """Tiles first (in this process), then the database, the build, and KRR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12_500, help="structures of the kernel")
    parser.add_argument("--krr-n", type=int, default=10_000, help="training size of the fit")
    parser.add_argument("--cv-n", type=int, default=4_000, help="training size of the CV")
    parser.add_argument("--landmarks", type=int, default=None, help="Nystrom m (krr-n / 4)")
    parser.add_argument("--tile", type=int, default=2048, help="tile and chunk size")
    parser.add_argument("--repeat", type=int, default=3, help="runs per CHNO tile timing")
    parser.add_argument("--cap-columns", type=int, default=65_536, help="NumPy D cap (memory)")
    parser.add_argument("--no-omdb-tile", action="store_true", help="skip the 36-element tile")
    parser.add_argument("--skip-tile", action="store_true", help="skip part a")
    parser.add_argument("--skip-build", action="store_true", help="skip parts b and c")
    parser.add_argument("--server", default=None, help="PostgreSQL URL (default: embedded)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import dask
    import featomic

    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"{os.cpu_count()} CPUs  Python {platform.python_version()}  numpy {np.__version__}  "
        f"scipy {scipy.__version__}  zarr {zarr.__version__}  dask {dask.__version__}  "
        f"featomic {featomic.__version__}"
    )
    organic = organic_records()
    chno = [r for r in organic if set(r.elements) <= CHNO]
    if not args.skip_tile:
        tiles = [tile_bench("CHNO", chno, args.tile, args.repeat, args.cap_columns)]
        if not args.no_omdb_tile:
            tiles.append(tile_bench("OMDB-like", organic, args.tile, 1, args.cap_columns))
        print_tiles(tiles)
    if args.skip_build:
        return
    scratch = Path(tempfile.mkdtemp(prefix="crystaldb-bench-kernels-"))
    url = fresh_database(args.server, scratch / "data")
    try:
        settings = load_settings(database_url=url, data_dir=scratch / "data", dask_workers=2)
        db = connect(settings)
        migrate.upgrade(db)
        records = rattled(chno, args.n)
        start = time.perf_counter()
        ids = store_records(db, records)
        print(f"stored {len(ids):,} structures in {time.perf_counter() - start:.1f} s (untimed)")
        build = end_to_end(db, settings, ids, args.tile, records)
        print_build(args.n, build)
        print_krr(
            krr_memory(settings, build["kernel_id"], args.n, args.krr_n, args.cv_n, args.landmarks)
        )
        db.dispose()
    finally:
        drop_database(url)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
