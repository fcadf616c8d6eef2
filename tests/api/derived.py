"""Models, predictions and quotient graphs for the API test database, computed for real.

The models are least-squares fits of the stored PBE gaps (train members of the test release)
on simple structure columns, recorded with their training runs, metrics and release; their
predictions are those fits applied to the stored structures. The quotient graphs are radius
graphs from matscipy's neighbour list on the stored cells.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np
from ase import Atoms
from matscipy.neighbours import neighbour_list
from sqlalchemy import select

from crystaldb.platform.database import Database
from crystaldb.schema import (
    Calculation,
    GraphRecipe,
    Label,
    Model,
    Prediction,
    QuotientGraph,
    Release,
    ReleaseMember,
    Structure,
)
from crystaldb.schema.runs import track_run

# name -> structure columns the model is a linear function of
MODELS = {"linear-density": ("density",), "linear-density-nsites": ("density", "nsites")}
GRAPH_RECIPE = "radius:3.0"
EMPTY_RECIPE = "radius:2.0"  # a recipe with no graph computed for any structure
GRAPH_STRUCTURES = 6  # the smallest cells get a graph


def _features(rows: list[Any], columns: tuple[str, ...]) -> np.ndarray:
    """The design matrix: the columns and a constant."""
    return np.array([[float(getattr(r, c)) for c in columns] + [1.0] for r in rows])


def _predict(rows: list[Any], columns: tuple[str, ...], coef: np.ndarray) -> np.ndarray:
    """The fit's band gaps, clipped at 0 (a gap is never negative)."""
    return np.clip(_features(rows, columns) @ coef, 0.0, None)


def _metrics(errors: dict[str, np.ndarray]) -> dict[str, float]:
    """MAE and RMSE per split, in eV."""
    metrics = {}
    for split, e in errors.items():
        metrics[f"mae_{split}"] = float(np.abs(e).mean())
        metrics[f"rmse_{split}"] = float(np.sqrt((e**2).mean()))
    return metrics


def add_models(db: Database, release: tuple[str, str]) -> None:
    """Fit each model on the release's train members, then predict with it.

    The first model predicts every structure, the second every other one (with its test
    RMSE as the uncertainty).
    """
    with db.session() as session:
        columns_ = (Structure.id, Structure.density, Structure.nsites)
        structures = list(session.execute(select(*columns_).order_by(Structure.id)))
        gaps = dict(
            session.execute(
                select(Label.structure_id, Label.value)
                .join(Calculation, Calculation.id == Label.calculation_id)
                .where(Label.property == "band_gap", Calculation.functional == "PBE")
                .order_by(Label.id)
            ).all()
        )
        release_id, members = _members(session, release)
    by_id = {r.id: r for r in structures}
    splits = {
        split: [by_id[s] for s, side in members if side == split and s in gaps]
        for split in ("train", "test")
    }
    with track_run(db, "api-test-predict") as predict_run:
        for index, (name, columns) in enumerate(MODELS.items()):
            with track_run(db, "api-test-train", {"model": name}) as train_run:
                train = splits["train"]
                target = np.array([gaps[r.id] for r in train])
                coef = np.linalg.lstsq(_features(train, columns), target, rcond=None)[0]
                metrics = _metrics(
                    {
                        split: _predict(rows, columns, coef) - np.array([gaps[r.id] for r in rows])
                        for split, rows in splits.items()
                    }
                )
                with db.session() as session:
                    model = Model(
                        name=name,
                        architecture="linear",
                        hyperparameters={"features": list(columns), "clip_min": 0.0},
                        release_id=release_id,
                        split={split: len(rows) for split, rows in splits.items()},
                        metrics=metrics,
                        library_versions={"numpy": version("numpy")},
                        device="cpu",
                        run_id=train_run.id,
                    )
                    session.add(model)
                    session.flush()
                    train_run.results["model_id"] = model.id
                    predicted = structures if index == 0 else structures[::2]
                    values = _predict(predicted, columns, coef)
                    session.add_all(
                        Prediction(
                            structure_id=r.id,
                            model_id=model.id,
                            run_id=predict_run.id,
                            value=round(float(v), 4),
                            uncertainty=metrics["rmse_test"] if index else None,
                        )
                        for r, v in zip(predicted, values, strict=True)
                    )


def _members(session: Any, release: tuple[str, str]) -> tuple[int, list[tuple[int, str]]]:
    """The release's id and its (structure id, split) pairs."""
    release_id = session.scalar(
        select(Release.id).where(Release.name == release[0], Release.version == release[1])
    )
    members = session.execute(
        select(ReleaseMember.structure_id, ReleaseMember.split).where(
            ReleaseMember.release_id == release_id
        )
    ).all()
    return release_id, [tuple(m) for m in members]


def radius_graph(cell: Any, cutoff: float) -> dict[str, Any]:
    """The quotient graph's columns: matscipy's neighbour list, in (i, j, image) order."""
    atoms = Atoms(numbers=cell.atomic_numbers, cell=cell.lattice, pbc=True)
    atoms.set_scaled_positions(cell.frac_coords)
    src, dst, length, image = neighbour_list("ijdS", atoms, cutoff)
    order = np.lexsort((image[:, 2], image[:, 1], image[:, 0], dst, src))
    return {
        "num_nodes": len(atoms),
        "num_edges": len(order),
        "edge_src": [int(x) for x in src[order]],
        "edge_dst": [int(x) for x in dst[order]],
        "edge_images": [int(x) for x in image[order].ravel()],
        "edge_lengths": [float(x) for x in length[order]],
    }


def add_graphs(db: Database) -> list[int]:
    """Radius graphs of the smallest cells under GRAPH_RECIPE; the ids that have one."""
    with db.session() as session:
        cells = list(
            session.execute(
                select(Structure.__table__)
                .order_by(Structure.nsites, Structure.id)
                .limit(GRAPH_STRUCTURES)
            )
        )
    cutoff = float(GRAPH_RECIPE.split(":")[1])
    with track_run(db, "api-test-graphs", {"recipe": GRAPH_RECIPE}) as run, db.session() as s:
        recipes = [
            GraphRecipe(
                name=name,
                method="radius",
                parameters={"radius": float(name.split(":")[1])},
                library="matscipy",
                library_version=version("matscipy"),
            )
            for name in (GRAPH_RECIPE, EMPTY_RECIPE)
        ]
        s.add_all(recipes)
        s.flush()
        s.add_all(
            QuotientGraph(
                structure_id=cell.id,
                recipe_id=recipes[0].id,
                run_id=run.id,
                **radius_graph(cell, cutoff),
            )
            for cell in cells
        )
    return [cell.id for cell in cells]
