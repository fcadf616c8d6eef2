"""`crystaldb train schnet|cgcnn|mpnn`: the graph networks, one bar over the epochs."""

from __future__ import annotations

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from crystaldb.cli.common import console, current_database
from crystaldb.cli.train import print_test_result
from crystaldb.core.network_hypers import (
    CGCNNHypers,
    EdgeMPNNHypers,
    SchNetHypers,
    TrainingConfig,
)
from crystaldb.platform.settings import load_settings

_CONFIG, _SCHNET, _CGCNN, _MPNN = TrainingConfig(), SchNetHypers(), CGCNNHypers(), EdgeMPNNHypers()
EPOCHS, SEED = _CONFIG.epochs, _CONFIG.seed
SUMMARIES = {
    "schnet": f"SchNet (cutoff {_SCHNET.cutoff:g} A, F = {_SCHNET.features}, "
    f"T = {_SCHNET.interactions}) on the {_SCHNET.recipe} graphs; resumes if interrupted.",
    "cgcnn": f"CGCNN ({_CGCNN.neighbours} nearest neighbours within {_CGCNN.max_radius:g} A, "
    f"{_CGCNN.convolutions} convolutions) on the knn:{_CGCNN.neighbours} graphs.",
    "mpnn": f"The edge-update message-passing network (T = {_MPNN.interactions}) on the "
    f"{_MPNN.recipe} graphs.",
}


def train_network(
    architecture: str, release: str, epochs: int, seed: int, name: str | None
) -> None:
    """`crystaldb train schnet|cgcnn|mpnn`: one bar over the epochs, with the latest losses."""
    from crystaldb.jobs.networks import EpochLog, train_nn  # torch: only when training

    settings = load_settings()
    db = current_database(settings)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]epochs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[losses]}"),
        console=console,
    )
    with progress:
        task = progress.add_task("epochs", total=epochs, losses="")

        def on_epoch(log: EpochLog) -> None:
            """Advance the bar and show the epoch's losses and learning rate."""
            validation = (
                f" validation MAE {log.validation_mae:.3f} eV"
                if log.validation_mae is not None
                else ""
            )
            losses = f"train loss {log.train_loss:.4f}{validation} lr {log.learning_rate:.2g}"
            progress.update(task, completed=log.epoch, losses=losses)

        summary = train_nn(
            db, settings, architecture, release, epochs, seed, name, on_epoch=on_epoch
        )
        progress.update(task, total=summary.epochs, completed=summary.epochs)  # early stop: full
    resumed = f", resumed after epoch {summary.resumed_from}" if summary.resumed_from else ""
    console.print(
        f"{summary.epochs} epochs on {summary.device} ({summary.stopped}{resumed}); "
        f"weights {summary.weights_uri}"
    )
    print_test_result(summary.model_id, summary.name, summary.metrics, summary.baseline_mae)


def network_command(app: typer.Typer, architecture: str, summary: str) -> None:
    """Register `train ARCHITECTURE`: the same options for every graph network."""

    def command(
        release: str = typer.Option(..., "--release", help="NAME[:VERSION] with a train split."),
        epochs: int = typer.Option(
            EPOCHS, "--epochs", min=1, help="Most epochs (early stop before)."
        ),
        seed: int = typer.Option(
            SEED, "--seed", help="Seed of weights, validation set and shuffles."
        ),
        name: str | None = typer.Option(None, "--name", help="Model name (default: from the run)."),
    ) -> None:
        # no docstring: `summary` below becomes the command's help
        train_network(architecture, release, epochs, seed, name)

    command.__doc__ = summary
    app.command(architecture)(command)


def register(app: typer.Typer) -> None:
    """Add the three graph networks to the `train` group, after krr."""
    for architecture, summary in SUMMARIES.items():
        network_command(app, architecture, summary)
