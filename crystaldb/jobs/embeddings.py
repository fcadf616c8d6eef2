"""Embedding a stored square kernel in 2D, stored with its run, so the web map opens at once;
and a stored embedding loaded back as a `KernelMap` with what to colour it by.

Kernel PCA (one eigendecomposition) runs here; t-SNE on the kernel-induced distance (a
thousand gradient steps) runs as a Dask task on a worker of the configured cluster.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from crystaldb.core.embedding import TSNE_DEFAULTS, check_perplexity, kernel_pca, kernel_tsne
from crystaldb.formats.chemiscope import NAN, KernelMap, MapColumn
from crystaldb.jobs.kernels import KernelError, complete_kernel
from crystaldb.platform.cluster import dask_client
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import open_array_uri
from crystaldb.schema import (
    Calculation,
    KernelEmbedding,
    KernelMatrix,
    Label,
    Model,
    Prediction,
    ReleaseMember,
    Structure,
)
from crystaldb.schema.runs import track_run

METHODS = ("kpca", "tsne")
MAX_ROWS = 20_000  # the whole square is read into memory: 20,000 rows are 3.2 GB
GAP = "band_gap"


@dataclass(frozen=True)
class EmbeddingSummary:
    """What `crystaldb kernel embed` reports."""

    embedding_id: int
    kernel_id: int
    method: str
    points: int
    run_id: int
    parameters: dict[str, Any]


def _square_kernel(db: Database, kernel_id: int) -> KernelMatrix:
    """A complete square kernel, or an error saying which --kernel to give instead."""
    with db.session() as session:
        kernel = complete_kernel(session, kernel_id)
        if kernel.row_ids != kernel.col_ids:
            raise KernelError(
                f"--kernel {kernel_id} is a {kernel.shape[0]} x {kernel.shape[1]} rectangle"
                " (Nyström or prediction columns); a map needs a square kernel: give --kernel"
                " a square one (`crystaldb kernel list`, or `kernel build --release NAME`)"
            )
        if len(kernel.row_ids) > MAX_ROWS:
            raise KernelError(
                f"--kernel {kernel_id} has {len(kernel.row_ids):,} rows, more than the"
                f" {MAX_ROWS:,} a map reads into memory: give --kernel a smaller square one"
            )
        session.expunge(kernel)
        return kernel


def tsne_task(array_uri: str, what: str, perplexity: float, seed: int) -> tuple[np.ndarray, str]:
    """On a Dask worker: the kernel read from its store, its t-SNE map, and the scikit-learn
    version that computed it (the worker's, which may differ from the client's)."""
    import sklearn

    matrix = np.asarray(open_array_uri(array_uri, what)[:])
    return kernel_tsne(matrix, perplexity=perplexity, seed=seed), str(sklearn.__version__)


def embed_kernel(
    db: Database,
    kernel_id: int,
    method: str = "kpca",
    settings: Settings | None = None,
    perplexity: float = TSNE_DEFAULTS["perplexity"],
    seed: int = 0,
    workers: int | None = None,
) -> EmbeddingSummary:
    """Embed the kernel's rows in 2D by `method` and store the points with their run.

    kpca: kernel PCA, here. tsne: t-SNE on d(i, j) = sqrt(K_ii + K_jj - 2 K_ij) with this
    perplexity and seed, as a task on the cluster of `settings` (needed then).
    """
    if method not in METHODS:
        raise KernelError(f"--method: one of {', '.join(METHODS)} (got {method!r})")
    kernel = _square_kernel(db, kernel_id)
    parameters: dict[str, Any] = {"kernel_id": kernel_id, "method": method, "components": 2}
    if method == "tsne":
        if settings is None:
            raise TypeError("t-SNE runs on the Dask cluster: pass the settings")
        check_perplexity(perplexity, len(kernel.row_ids))
        parameters |= {
            "perplexity": perplexity,
            "seed": seed,
            "distance": "sqrt(K_ii + K_jj - 2 K_ij)",
            **{k: v for k, v in TSNE_DEFAULTS.items() if k != "perplexity"},
        }
    stored = dict(parameters)
    with track_run(db, "embedding", parameters) as run:
        what = f"kernel {kernel_id}"
        if method == "kpca":
            points = kernel_pca(np.asarray(open_array_uri(kernel.array_uri, what)[:]), 2)
        else:
            assert settings is not None
            with dask_client(settings, n_workers=workers or 1) as client:
                future = client.submit(
                    tsne_task, kernel.array_uri, what, perplexity, seed, pure=False
                )
                points, version = future.result()
            stored["library"] = f"scikit-learn {version}"
        with db.session() as session:
            row = KernelEmbedding(
                kernel_id=kernel_id,
                method=method,
                parameters=stored,
                structure_ids=list(kernel.row_ids),
                x=points[:, 0].tolist(),
                y=points[:, 1].tolist(),
                run_id=run.id,
            )
            session.add(row)
            session.flush()
            embedding_id = row.id
        extra = {"library": stored["library"]} if "library" in stored else {}
        run.results.update(embedding_id=embedding_id, points=len(points), **extra)
    return EmbeddingSummary(embedding_id, kernel_id, method, len(points), run.id, stored)


def list_embeddings(db: Database) -> list[KernelEmbedding]:
    """Every stored embedding, newest first (points included)."""
    with db.session() as session:
        found = list(session.scalars(select(KernelEmbedding).order_by(KernelEmbedding.id.desc())))
        session.expunge_all()
    return found


def find_embedding(db: Database, embedding_id: int) -> KernelEmbedding | None:
    """One stored embedding, or None."""
    with db.session() as session:
        found = session.get(KernelEmbedding, embedding_id)
        if found is not None:
            session.expunge(found)
        return found


def covering_embedding(db: Database, structure_ids: list[int]) -> KernelEmbedding | None:
    """The newest embedding whose points include every one of `structure_ids`, or None."""
    wanted = set(structure_ids)
    for embedding in list_embeddings(db):
        if wanted <= set(embedding.structure_ids):
            return embedding
    return None


def load_map(db: Database, embedding: KernelEmbedding) -> KernelMap:
    """A stored embedding with its structures' formulas and sizes and the colour choices:
    each DFT functional's band gap, each model's prediction, the spread of the models'
    predictions and each model's error on its release's test split (NaN where unknown)."""
    ids = [int(s) for s in embedding.structure_ids]
    with db.session() as session:
        sites = {
            sid: (formula, nsites)
            for sid, formula, nsites in session.execute(
                select(Structure.id, Structure.reduced_formula, Structure.nsites).where(
                    Structure.id.in_(ids)
                )
            )
        }
        columns = _gap_columns(session, ids)
        columns |= _model_columns(session, ids)
    return KernelMap(
        embedding_id=embedding.id,
        kernel_id=embedding.kernel_id,
        method=embedding.method,
        parameters=dict(embedding.parameters),
        run_id=embedding.run_id,
        structure_ids=tuple(ids),
        points=np.column_stack([embedding.x, embedding.y]).astype(np.float64),
        formulas=tuple(sites[s][0] for s in ids),
        sizes=tuple(int(sites[s][1]) for s in ids),
        columns=columns,
    )


def _gap_columns(session: Any, ids: list[int]) -> dict[str, MapColumn]:
    """'band gap: FUNCTIONAL' for each functional, the smallest label of each structure (as
    the API sorts), most labelled functional first."""
    gaps: dict[str, dict[int, float]] = defaultdict(dict)
    rows = session.execute(
        select(Label.structure_id, Calculation.functional, Label.value)
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(Label.property == GAP, Label.structure_id.in_(ids))
    )
    for sid, functional, value in rows:
        mine = gaps[functional]
        mine[sid] = min(value, mine.get(sid, value))
    order = sorted(gaps, key=lambda f: (-len(gaps[f]), f))
    return {
        f"band gap: {f}": MapColumn(
            tuple(gaps[f].get(s, NAN) for s in ids),
            f"DFT band gap ({f}); the smallest where a structure has several",
            "eV",
        )
        for f in order
    }


def _model_columns(session: Any, ids: list[int]) -> dict[str, MapColumn]:
    """Each model's newest prediction, the models' spread, and each model's error
    (prediction - frozen label) on its release's test split."""
    predicted: dict[int, dict[int, float]] = defaultdict(dict)
    rows = session.execute(
        select(Prediction.model_id, Prediction.structure_id, Prediction.value)
        .where(Prediction.property == GAP, Prediction.structure_id.in_(ids))
        .order_by(Prediction.id)
    )
    for model_id, sid, value in rows:
        predicted[model_id][sid] = value  # the newest run's value wins
    if not predicted:
        return {}
    models = sorted(
        session.scalars(select(Model).where(Model.id.in_(list(predicted)))), key=lambda m: m.name
    )
    columns = {
        f"prediction: {m.name}": MapColumn(
            tuple(predicted[m.id].get(s, NAN) for s in ids),
            f"band gap predicted by model {m.name} ({m.architecture}, id {m.id})",
            "eV",
        )
        for m in models
    }
    singles = [m for m in models if m.architecture != "ensemble"]
    if len(singles) > 1:
        columns["ensemble spread"] = MapColumn(
            tuple(_spread([predicted[m.id].get(s) for m in singles]) for s in ids),
            "population standard deviation of the predictions of "
            + ", ".join(m.name for m in singles)
            + " (where two or more predicted)",
            "eV",
        )
    for model in models:
        errors = _test_errors(session, model, predicted[model.id])
        if errors:
            columns[f"test error: {model.name}"] = MapColumn(
                tuple(errors.get(s, NAN) for s in ids),
                f"prediction of {model.name} minus the DFT label, on the test split of its"
                " release (elsewhere unknown)",
                "eV",
            )
    return columns


def _spread(values: list[float | None]) -> float:
    """Population standard deviation of the known values; NaN under two."""
    known = [v for v in values if v is not None]
    return float(np.std(known)) if len(known) > 1 else NAN


def _test_errors(session: Any, model: Model, predicted: dict[int, float]) -> dict[int, float]:
    """prediction - frozen label for the model's release's test members it predicted."""
    if model.release_id is None:
        return {}
    rows = session.execute(
        select(ReleaseMember.structure_id, Label.value)
        .join(Label, Label.id == ReleaseMember.label_id)
        .where(ReleaseMember.release_id == model.release_id, ReleaseMember.split == "test")
    )
    return {sid: predicted[sid] - label for sid, label in rows if sid in predicted}
