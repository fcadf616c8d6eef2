"""`crystaldb predict` and `crystaldb models`: use the trained models and list them."""

from __future__ import annotations

import typer
from rich.table import Table

from crystaldb.cli.common import console, current_database, selection, stage_progress
from crystaldb.jobs.models import list_models
from crystaldb.platform.settings import load_settings

# jobs.predict's PREDICT_BATCH: that module loads torch, which would slow every command, so
# it is restated here and tests/cli/test_defaults.py holds the two equal.
BATCH_SIZE = 64


def predict_command(
    model: int | None = typer.Option(
        None, "--model", help="The model's id (see `crystaldb models`): krr, schnet, cgcnn, mpnn."
    ),
    ensemble: str | None = typer.Option(
        None, "--ensemble", help="ID,ID,...: the mean of these models, their spread stored."
    ),
    release: str | None = typer.Option(None, "--release", help="NAME[:VERSION]: its members."),
    where: str | None = typer.Option(
        None, "--where", help=("Structures matching a filter (the fields: `crystaldb filters`).")
    ),
    everything: bool = typer.Option(False, "--all", help="Every structure in the database."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask workers."),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", min=1, help="Structures per task."),
) -> None:
    """Predict band gaps on Dask workers (GPU ones where declared) and store them with their run."""
    from crystaldb.jobs.predict import predict, predict_ensemble  # torch: only when predicting

    if (model is None) == (ensemble is None):
        raise typer.BadParameter("give --model ID or --ensemble ID,ID,...", param_hint="--model")
    members = ensemble_members(ensemble) if ensemble is not None else []
    settings = load_settings()
    db = current_database(settings)
    chosen = selection(db, release, where, everything, "the structures to predict")
    with stage_progress() as update:
        if model is not None:
            run_id, written = predict(
                db, settings, model, chosen, workers, batch_size, on_progress=update
            )
        else:
            summary = predict_ensemble(
                db, settings, members, chosen, workers, batch_size, on_progress=update
            )
            run_id, written, model = summary.run_id, summary.written, summary.model_id
    console.print(f"{written} predictions by model {model} stored by run {run_id}")


def ensemble_members(ensemble: str) -> list[int]:
    """The model ids of --ensemble ID,ID,..., refused with an example when not integers."""
    try:
        return [int(part) for part in ensemble.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{ensemble!r}: model ids separated by commas, e.g. 1,4", param_hint="--ensemble"
        ) from None


def models_command() -> None:
    """Every trained model: architecture, release, test metrics."""
    table = Table("id", "name", "architecture", "release", "test MAE (eV)", "RMSE", "created")
    for model, release_label in list_models(current_database()):
        test = model.metrics.get("test", {})
        table.add_row(
            str(model.id),
            model.name,
            model.architecture,
            release_label or "-",
            f"{test['mae']:.3f}" if test else "-",
            f"{test['rmse']:.3f}" if test else "-",
            f"{model.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)
