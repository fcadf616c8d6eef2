"""`crystaldb train krr`, and how a trained model's results are printed."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from crystaldb.cli.common import console, current_database, default_of, stage_progress
from crystaldb.jobs.krr import TrainSummary, train_krr
from crystaldb.platform.settings import load_settings

app = typer.Typer(help="Train models on a release's training split.", no_args_is_help=True)


@app.command("krr")
def train_krr_command(
    kernel: int = typer.Option(
        ...,
        "--kernel",
        help="A square kernel over the release (exact KRR), or a rectangle against landmarks"
        " of its train split (`kernel build --landmarks M`: Nyström KRR).",
    ),
    release: str = typer.Option(..., "--release", help="NAME[:VERSION] with a train split."),
    folds: int = typer.Option(
        default_of(train_krr, "folds"), "--folds", min=2, help="Cross-validation folds."
    ),
    seed: int = typer.Option(
        default_of(train_krr, "seed"), "--seed", help="Seed of the fold assignment."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name (default: from the run)."),
) -> None:
    """Kernel ridge regression: regularisation by k-fold CV, Cholesky fit, test metrics."""
    settings = load_settings()
    db = current_database(settings)
    with stage_progress() as update:
        summary = train_krr(
            db, settings, kernel, release, folds=folds, seed=seed, name=name, on_progress=update
        )
    print_krr(summary, folds)


def print_krr(summary: TrainSummary, folds: int) -> None:
    """The CV table, the method, the test metrics beside the median baseline, the curve."""
    table = Table("regularisation", f"{folds}-fold CV MAE (eV)")
    for value, mae in summary.cv_mae.items():
        mark = " [green]<- chosen[/green]" if value == summary.regularisation else ""
        table.add_row(f"{value:g}", f"{mae:.3f}{mark}")
    console.print(table)
    nystrom = summary.nystrom
    if nystrom:
        seed = "" if nystrom["seed"] is None else f" (seed {nystrom['seed']})"
        added = f", jitter {nystrom['jitter']:.2g} on the diagonal" if nystrom["jitter"] else ""
        console.print(f"Nyström KRR over {nystrom['landmarks']} landmarks{seed}{added}")
    for value, jitter in summary.cv_jitter.items():
        if jitter:
            console.print(f"  CV at {value:g}: jitter up to {jitter:.2g} added to the diagonal")
    print_test_result(summary.model_id, summary.name, summary.metrics, summary.baseline_mae)
    if summary.metrics:
        curve = ", ".join(f"{p['train']}: {p['test_mae']:.3f}" for p in summary.learning_curve)
        console.print(f"learning curve (training structures: test MAE in eV): {curve}")
        console.print(f"  plot: {summary.plot_uri}")


def print_test_result(model_id: int, name: str, test: dict[str, Any], baseline_mae: float) -> None:
    """A trained model's test MAE and RMSE with intervals, beside the median baseline."""
    if not test:
        console.print(f"model {model_id} ({name}): no test split to score")
        return
    console.print(
        f"model {model_id} ({name}): test MAE {test['mae']:.3f} eV "
        f"[{test['mae_ci95'][0]:.3f}, {test['mae_ci95'][1]:.3f}], RMSE {test['rmse']:.3f} eV "
        f"on {test['n']} structures; predicting the training median: {baseline_mae:.3f} eV"
    )
