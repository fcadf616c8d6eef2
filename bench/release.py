"""Release export speed: crystaldb's omdb-gap1 export vs ase.io.write of the same structures.

    python bench/release.py [--members 12500] [--repeat 3]

Builds an OMDB-GAP1-sized ReleaseData (12,500 members, about 82 atoms per cell on average)
by cycling the real structures of ../shared/data (the molecular crystals of
molecular_crystals.xyz and the COD CIFs that validate), then times, in this process:

- building the list of ase.Atoms from the members (what the exporter does first);
- the baseline: ``ase.io.write`` of that list to one extended XYZ file;
- ``export_release(data, "omdb-gap1", out)``: structures.xyz (the same ase.io.write), band
  gaps, COD ids, README, three figures, manifest with sha256 of every file, atomic rename.

- with --database (the default): the same release stored in a fresh PostgreSQL database
  (through the ingest writer, labels and COD ids included, then ``create_release`` with
  ``ordered:10000,2500``), and ``load_release`` + ``export_release``: the database read
  included, as ``crystaldb release export`` runs it.

Each timing is the best of --repeat rounds, the steps interleaved in each round (the
machine's load drifts).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import ase
import ase.io
import matplotlib
import numpy as np
import pyarrow
from ase import Atoms
from common import cycled, drop_database, fresh_database  # bench/common.py

import crystaldb
from crystaldb.core.records import LabelSpec, StructureRecord
from crystaldb.core.release_data import Member, ReleaseData
from crystaldb.formats.extxyz import atoms_of
from crystaldb.formats.payload import process_file
from crystaldb.jobs.load import write_chunk
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import load_settings
from crystaldb.query.selection import find_release
from crystaldb.release.create import create_release
from crystaldb.release.export import export_release
from crystaldb.release.load import load_release
from crystaldb.schema import IngestBatch, Release, migrate
from crystaldb.schema.runs import track_run

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def real_records() -> list[StructureRecord]:
    """Every valid structure of the molecular crystals and the COD CIFs, in file order."""
    paths = [DATA / "molecular-crystals" / "molecular_crystals.xyz"]
    paths += sorted((DATA / "cod").glob("*.cif"))
    records = []
    for path in paths:
        records += [r for r in process_file(path) if isinstance(r, StructureRecord)]
    return records


def build_release(n: int) -> ReleaseData:
    """An OMDB-GAP1-shaped release: first 80% train, the rest test, made-up gaps and COD ids."""
    rng = np.random.default_rng(0)
    gaps = rng.gamma(4.0, 0.76, n)  # mean about 3.0 eV like OMDB-GAP1's 3.047
    gaps[rng.choice(n, 36, replace=False)] = 0.0  # and its 36 exact zeros
    n_train = n * 4 // 5
    members = tuple(
        Member(
            position=i,
            structure_id=i + 1,
            split="train" if i < n_train else "test",
            lattice=np.asarray(r.lattice, dtype=np.float64),
            frac_coords=np.asarray(r.frac_coords, dtype=np.float64),
            atomic_numbers=np.asarray(r.atomic_numbers, dtype=np.int64),
            reduced_formula=r.reduced_formula,
            elements=tuple(r.elements),
            spacegroup_number=r.spacegroup_number,
            spacegroup_symbol=r.spacegroup_symbol,
            external_ids={"cod": r.external_ids.get("cod", str(4000000 + i % 1000000))},
            label=float(gaps[i]),
        )
        for i, r in enumerate(cycled(real_records(), n))
    )
    return ReleaseData(
        name="omdb-gap1-bench",
        version="1.0",
        query=None,
        split_spec=f"ordered:{n_train},{n - n_train}",
        label_property="band_gap",
        label_unit="eV",
        label_method={"functional": "PBE", "code": "VASP", "parameters": {"encut": 520}},
        members=members,
        database_identity={"database": "bench", "server_version": "-", "system_identifier": "-"},
        crystaldb_version=crystaldb.__version__,
    )


def export_from_data(data: ReleaseData, fmt: str, out: Path) -> list[Path]:
    """The export alone, from data already in memory."""
    return export_release(data, fmt, out)


def store(data: ReleaseData, records: list[StructureRecord], db: Database) -> Release:
    """Write the members through the ingest writer and freeze them as a release."""
    spec = LabelSpec("band_gap", "band_gap", "eV", "PBE", "VASP")
    with track_run(db, "bench") as run, db.session() as session:
        batch = IngestBatch(run_id=run.id)
        session.add(batch)
        session.flush()
        batch_id = batch.id
    rows = [
        replace(
            record,
            fingerprint=f"bench-{i}",
            path="bench/structures.xyz",
            entry=i,
            sha256="0" * 64,
            external_ids={"cod": str(5000000 + i)},  # cycled copies need their own ids
            properties={"band_gap": float(member.label or 0.0)},
        )
        for i, (record, member) in enumerate(zip(records, data.members, strict=True))
    ]
    for start in range(0, len(rows), 2000):
        write_chunk(db, batch_id, rows[start : start + 2000], spec)
    n = len(rows)
    split = f"ordered:{n * 4 // 5},{n - n * 4 // 5}"
    create_release(db, data.name, data.version, label="band_gap:PBE", split=split)
    return find_release(db, data.name, data.version)


def export_from_database(db: Database, release: Release, fmt: str, out: Path) -> list[Path]:
    """What `crystaldb release export` does: read the release, then export it."""
    return export_release(load_release(db, release), fmt, out)


def best_of(repeat: int, runs: dict[str, Callable[[int], object]]) -> dict[str, float]:
    """Fastest wall time of each run over `repeat` rounds, the runs interleaved in each round."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for attempt in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run(attempt)
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def main() -> None:
    """Build the release once, then time the three steps."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=12_500, help="release size")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best is shown)")
    parser.add_argument("--server", default=None, help="PostgreSQL URL (default: embedded)")
    parser.add_argument("--no-database", action="store_true", help="skip the database read")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"{os.cpu_count()} CPUs  Python {platform.python_version()}  ase {ase.__version__}  "
        f"matplotlib {matplotlib.__version__}  pyarrow {pyarrow.__version__}"
    )
    records = list(cycled(real_records(), args.members))
    data = build_release(args.members)
    sites = [len(m.atomic_numbers) for m in data.members]
    print(
        f"release: {len(sites)} members, {sum(sites):,} atoms, mean {np.mean(sites):.1f} per cell"
    )
    scratch = Path(tempfile.mkdtemp(prefix="crystaldb-bench-release-"))
    url: str | None = None
    try:
        atoms = _atoms(data)
        runs: dict[str, Callable[[int], object]] = {
            "build": lambda _: _atoms(data),
            "baseline": lambda i: ase.io.write(
                scratch / f"baseline-{i}.xyz", atoms, format="extxyz"
            ),
            "export": lambda i: export_from_data(data, "omdb-gap1", scratch / f"export-{i}"),
        }
        if not args.no_database:
            url = fresh_database(args.server, scratch / "data")
            settings = load_settings(database_url=url, data_dir=scratch / "data")
            db = connect(settings)
            migrate.upgrade(db)
            start = time.perf_counter()
            release = store(data, records, db)
            print(
                f"stored the release in PostgreSQL {db.server_version()} "
                f"({time.perf_counter() - start:.1f} s, not timed below)"
            )
            runs["read"] = lambda _: load_release(db, release)
            runs["db"] = lambda i: export_from_database(
                db, release, "omdb-gap1", scratch / f"db-{i}"
            )
        best = best_of(args.repeat, runs)
        build, baseline, exported = best["build"], best["baseline"], best["export"]
        size = (scratch / "export-0" / "structures.xyz").stat().st_size
        if "db" in best:
            same = (scratch / "db-0" / "structures.xyz").read_bytes() == (
                scratch / "export-0" / "structures.xyz"
            ).read_bytes()
            print(f"structures.xyz from the database identical to the in-memory export: {same}")
    finally:
        if url:
            db.dispose()
            drop_database(url)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'step':<44}{'seconds':>9}{'x baseline':>12}")
    print(f"{'build the ase.Atoms list':<44}{build:9.2f}{build / baseline:12.2f}")
    print(f"{'baseline: ase.io.write extxyz':<44}{baseline:9.2f}{1.0:12.2f}")
    print(f"{'export_release omdb-gap1':<44}{exported:9.2f}{exported / baseline:12.2f}")
    if "db" in best:
        read, total = best["read"], best["db"]
        print(f"{'load_release (database read)':<44}{read:9.2f}{read / baseline:12.2f}")
        print(f"{'database read + export (goal <= 1.5x)':<44}{total:9.2f}{total / baseline:12.2f}")
    print(f"structures.xyz: {size / 1e6:.1f} MB")


def _atoms(data: ReleaseData) -> list[Atoms]:
    """The members as ase.Atoms, as the exporter builds them."""
    return [atoms_of(m) for m in data.members]


if __name__ == "__main__":
    main()
