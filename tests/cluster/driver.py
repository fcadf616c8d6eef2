"""The client of the multi-host test: the whole workflow, run in the client's namespace.

`python -m tests.cluster.driver PHASE RESULT.json` runs against the database, scheduler and
store the environment names (CRYSTALDB_DATABASE_URL, CRYSTALDB_DASK_SCHEDULER,
CRYSTALDB_STORE_URL, AWS_*), writes what it found as JSON, and is imported by the test for the
one-host run of the same inputs (`workflow` on a local cluster and a local store).

Phases: `workflow` (ingest, graphs, kernel, KRR, predict, export), `kill` (a second kernel and
a second prediction, each losing a worker part-way: the test kills it on the progress this
driver writes to PROGRESS).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from crystaldb.core.soap import SoapHypers
from crystaldb.formats.labels import read_label_table
from crystaldb.jobs.graphs import build_graphs
from crystaldb.jobs.ingest import ingest_paths
from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import train_krr
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import Settings, load_settings
from crystaldb.platform.store import open_array_uri
from crystaldb.query.selection import select_structures
from crystaldb.release.create import create_release
from crystaldb.release.export import export_release
from crystaldb.release.load import load_release
from crystaldb.schema import Model, Prediction, Release, Run, Source, migrate

LABEL = "band_gap:OptB88vdW"
RELEASE = "netns"
HYPERS = SoapHypers(cutoff=4.0, n_max=4, l_max=3)
RECIPE = "radius:4"


def _names(db: Database, ids: list[int]) -> list[str]:
    """Each structure's input file name (ids differ between runs; file names do not)."""
    with db.session() as session:
        rows = session.execute(
            select(Source.structure_id, func.min(Source.path))
            .where(Source.structure_id.in_(ids))
            .group_by(Source.structure_id)
        ).all()
    by_id = {sid: Path(path).name for sid, path in rows}
    return [by_id[i] for i in ids]


def _predictions(db: Database, run_id: int) -> dict[str, Any]:
    """A prediction run's values by file name, its row count and its run record."""
    with db.session() as session:
        rows = session.execute(
            select(Prediction.structure_id, Prediction.value).where(Prediction.run_id == run_id)
        ).all()
        run = session.get_one(Run, run_id)
        record = {"status": run.status, "results": dict(run.results), "device": run.device}
    names = _names(db, [sid for sid, _ in rows])
    return {
        "rows": len(rows),
        "values": dict(zip(names, (float(v) for _, v in rows), strict=True)),
        "run": record,
    }


def _kernel(db: Database, summary: Any, ids: list[int]) -> dict[str, Any]:
    """A kernel's matrix by file name (rows sorted by name) and its run record."""
    matrix = np.asarray(open_array_uri(summary.array_uri, "kernel")[:])
    names = _names(db, ids)
    order = np.argsort(names)
    with db.session() as session:
        run = session.get_one(Run, summary.run_id)
        record = {"status": run.status, "results": dict(run.results)}
    return {
        "names": sorted(names),
        "uri": summary.array_uri,
        "tiles_total": summary.tiles_total,
        "tiles_computed": summary.tiles_computed,
        "matrix": matrix[np.ix_(order, order)].tolist(),
        "run": record,
    }


def _export(db: Database, out: Path, inputs: Path) -> dict[str, str]:
    """The release exported as extended XYZ: each file's sha256, with the input folder made
    neutral and structure ids replaced by file names (ingestion numbers structures in the order
    its chunks finish, which differs between runs); of the manifest, all but the database it
    names (whose server id is kept apart) and the file digests (the files are compared)."""
    with db.session() as session:
        release = session.scalars(select(Release).where(Release.name == RELEASE)).one()
        session.expunge(release)
    data = load_release(db, release)
    ids = [int(member.structure_id) for member in data.members]
    name_of = dict(zip(ids, _names(db, ids), strict=True))
    files = export_release(data, "extxyz", out)
    digests = {}
    for path in files:
        data_bytes = path.read_bytes().replace(str(inputs).encode(), b"INPUTS")
        if path.name == "manifest.json":
            manifest = json.loads(data_bytes)
            digests["database"] = manifest.pop("database")["system_identifier"]
            manifest.pop("files")
            splits = manifest["splits"].items()
            manifest["splits"] = {split: [name_of[i] for i in ids] for split, ids in splits}
            data_bytes = json.dumps(manifest, sort_keys=True).encode()
        else:
            data_bytes = re.sub(
                rb"structure_id=(\d+)",
                lambda m: b"structure_id=" + name_of[int(m.group(1))].encode(),
                data_bytes,
            )
        digests[path.name] = hashlib.sha256(data_bytes).hexdigest()
    return digests


def workflow(db: Database, settings: Settings, inputs: Path, out: Path) -> dict[str, Any]:
    """Ingest a labelled folder, then graphs, kernel, KRR, predictions and an export."""
    from crystaldb.jobs.predict import predict  # torch: only once it is needed

    migrate.upgrade(db)
    table = read_label_table(inputs / "id_prop.csv", LABEL, code="VASP")
    ingest = ingest_paths(db, settings, [inputs], label_table=table)
    create_release(db, RELEASE, "1.0", label=LABEL, split="ordered:40,10")
    members = select_structures(db, release=RELEASE)
    ids = list(members.structure_ids)
    graphs = build_graphs(db, settings, RECIPE, members)
    kernel = build_kernel(db, settings, ids, hypers=HYPERS, tile=32, description=RELEASE)
    model = train_krr(db, settings, kernel.kernel_id, RELEASE, folds=3)
    run_id, written = predict(db, settings, model.model_id, members, batch_size=8)
    return {
        "ingest": ingest.as_dict(),
        "graphs": graphs.as_dict(),
        "kernel": _kernel(db, kernel, ids),
        "model": {"id": model.model_id, "metrics": model.metrics, "lambda": model.regularisation},
        "predict": {"written": written, **_predictions(db, run_id)},
        "export": _export(db, out, inputs),
    }


def _progress(path: Path, stage: str, done: int) -> None:
    """Tell the test how far a job is (it kills a worker on it)."""
    path.write_text(f"{stage} {done}\n")


def kill_phase(db: Database, settings: Settings, progress: Path, go: Path) -> dict[str, Any]:
    """A kernel of every structure (15 tiles) and a second prediction, each losing a worker."""
    from crystaldb.jobs.predict import predict

    members = select_structures(db, release=RELEASE)
    ids = list(select_structures(db).structure_ids)
    kernel = build_kernel(
        db,
        settings,
        ids,
        hypers=HYPERS,
        tile=16,
        description="everything",
        on_progress=lambda stage, done, _: _progress(progress, stage, done),
    )
    result: dict[str, Any] = {"kernel": _kernel(db, kernel, ids)}
    _progress(progress, "kernel-done", 0)
    while not go.exists():  # the test starts a replacement CPU worker meanwhile
        time.sleep(0.1)
    with db.session() as session:
        model_id = int(session.scalars(select(func.max(Model.id))).one())
    _wait_for_workers(settings, int(go.read_text()))
    run_id, written = predict(
        db,
        settings,
        model_id,
        members,
        batch_size=2,
        on_progress=lambda stage, done, _: _progress(progress, stage, done),
    )
    result["predict"] = {"written": written, **_predictions(db, run_id)}
    return result


def _wait_for_workers(settings: Settings, count: int) -> None:
    """Until the scheduler knows `count` workers."""
    from distributed import Client

    with Client(settings.dask_scheduler, timeout=30) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            if len(workers) >= count:
                return
            time.sleep(0.2)
    raise TimeoutError(f"no {count} workers at {settings.dask_scheduler}")


def worker_view(inputs: str) -> dict[str, Any]:
    """On a worker: what it sees of the client's input folder, and its own home."""
    return {
        "sees_inputs": os.path.exists(os.path.join(inputs, "id_prop.csv")),
        "home": os.environ.get("HOME"),
        "data_dir": os.environ.get("CRYSTALDB_DATA_DIR"),
    }


def _prepare(settings: Settings, inputs: Path, workers: int) -> dict[str, Any]:
    """Wait for the workers and the bucket; what each worker sees of the client's files."""
    import s3fs
    from distributed import Client

    bucket = str(settings.store_url).removeprefix("s3://").split("/", 1)[0]
    deadline = time.monotonic() + 60
    while True:  # the object store's server may still be starting
        try:
            s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    with Client(settings.dask_scheduler, timeout=30) as client:
        client.wait_for_workers(workers, timeout=60)
        return dict(client.run(worker_view, str(inputs)))


def main(argv: list[str]) -> None:
    """`driver workflow RESULT INPUTS OUT` or `driver kill RESULT PROGRESS GO`."""
    phase, result = argv[0], Path(argv[1])
    settings = load_settings()
    db = connect(settings)
    try:
        if phase == "workflow":
            inputs, out = Path(argv[2]), Path(argv[3])
            views = _prepare(settings, inputs, workers=2)
            found = {"workers": views, **workflow(db, settings, inputs, out)}
        else:
            found = kill_phase(db, settings, Path(argv[2]), Path(argv[3]))
    finally:
        db.dispose()
    result.write_text(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1:])
