"""Ingest speed: crystaldb end to end vs the bare parser loop vs a naive one-file-one-INSERT loader.

    python bench/ingest.py [--files N] [--naive N] [--workers W]

Reads the real CIFs in ../shared/data (COD and CURATED-COFs), each file offered twice (the
second copy differs by a comment line, so it is parsed in full and deduplicated), into a fresh
database on CRYSTALDB_DATABASE_URL's server (or the embedded one). All three runs happen in this
process, so their ratios compare like with like. Memory: the client's peak RSS before and after
the end-to-end run (streaming keeps it flat whatever the collection's size).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import psycopg
from common import drop_database, fresh_database  # bench/common.py
from pymatgen.io.cif import CifParser
from sqlalchemy import text

from crystaldb.formats.cif import parse_cif_text
from crystaldb.jobs.ingest import ingest_paths
from crystaldb.platform.database import connect
from crystaldb.platform.settings import load_settings
from crystaldb.schema import Structure, migrate

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def real_cifs() -> list[Path]:
    """Every real CIF in the shared data, COD first."""
    return sorted((DATA / "cod").glob("*.cif")) + sorted((DATA / "cofs" / "cifs").glob("*.cif"))


def stage(files: list[Path], folder: Path, copies: int) -> list[Path]:
    """Copy the inputs, `copies` times each with distinct bytes, into one folder."""
    staged = []
    for copy in range(copies):
        for path in files:
            target = folder / f"{path.stem}-{copy}.cif"
            target.write_text(f"# bench copy {copy}\n" + path.read_text(errors="replace"))
            staged.append(target)
    return staged


def bare_parser(files: list[Path]) -> float:
    """The ceiling: crystaldb's CIF reader (gemmi, symmetry expansion) in a plain loop."""
    start = time.perf_counter()
    for path in files:
        parse_cif_text(path.read_text(errors="replace"), str(path))
    return len(files) / (time.perf_counter() - start)


def naive(files: list[Path], url: str) -> float:
    """The baseline: pymatgen CifParser one file at a time, one INSERT (and commit) each."""
    conninfo = url.replace("postgresql+psycopg", "postgresql")
    start = time.perf_counter()
    with psycopg.connect(conninfo) as conn:
        for index, path in enumerate(files):
            try:
                structure = CifParser(str(path)).parse_structures(primitive=False)[0]
                comp = structure.composition
                elements = sorted(el.symbol for el in comp.elements)
                row = (
                    structure.lattice.matrix.tolist(),
                    structure.frac_coords.tolist(),
                    [site.species.elements[0].Z for site in structure],
                    comp.reduced_formula,
                    comp.hill_formula.replace(" ", ""),
                    comp.anonymized_formula,
                    elements,
                    len(elements),
                    len(structure),
                    structure.volume,
                    float(structure.density),
                    f"naive-{index}-{uuid.uuid4().hex}",
                )
            except Exception:  # the naive loader skips what pymatgen cannot read
                continue
            conn.execute(
                "INSERT INTO structures (lattice, frac_coords, atomic_numbers, reduced_formula,"
                " hill_formula, anonymous_formula, elements, nelements, nsites, volume, density,"
                " fingerprint) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                row,
            )
            conn.commit()
    return len(files) / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="times each real file is offered")
    parser.add_argument("--naive", type=int, default=150, help="files for the naive baseline")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", default=None, help="PostgreSQL URL (default: embedded)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    scratch = Path(tempfile.mkdtemp(prefix="crystaldb-bench-"))
    try:
        (scratch / "in").mkdir()
        files = stage(real_cifs(), scratch / "in", args.copies)
        url = fresh_database(args.server, scratch / "data")
        settings = load_settings(database_url=url, data_dir=scratch / "data")
        db = connect(settings)
        migrate.upgrade(db)
        print(
            f"{len(files)} real CIF inputs ({len(real_cifs())} files x {args.copies}), "
            f"{args.workers} workers, server {db.server_version()}",
            flush=True,
        )

        ceiling = bare_parser(files)
        print(f"bare parser loop (1 core):        {ceiling:8.1f} files/s", flush=True)

        rss_before = peak_rss_mb()
        start = time.perf_counter()
        summary = ingest_paths(db, settings, [scratch / "in"], chunk_size=64, workers=args.workers)
        elapsed = time.perf_counter() - start
        end_to_end = summary.files / elapsed
        c = summary.counts
        print(
            f"crystaldb end to end ({args.workers} workers): {end_to_end:8.1f} files/s "
            f"({end_to_end / args.workers:.1f} per core; {c.stored} stored, "
            f"{c.duplicates} duplicates, {c.rejected} rejected, {elapsed:.1f} s "
            "including cluster start)",
            flush=True,
        )

        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {Structure.__tablename__} CASCADE"))
        sample = files[:: max(1, len(files) // args.naive)][: args.naive]  # COD and COFs alike
        baseline = naive(sample, url)
        print(
            f"naive pymatgen + INSERT (1 core):  {baseline:8.1f} files/s "
            f"({len(sample)} inputs, evenly spaced)",
            flush=True,
        )

        print()
        print(
            f"end to end per core / naive:        {end_to_end / args.workers / baseline:6.1f}x"
            "   (goal >= 5x)"
        )
        print(
            f"bare parser / end to end per core:  {ceiling / (end_to_end / args.workers):6.2f}x"
            "   (goal <= 2x)"
        )
        print(
            f"client peak RSS: {rss_before:.0f} MB before, {peak_rss_mb():.0f} MB after "
            "the end-to-end run"
        )
        db.dispose()
        drop_database(url)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
