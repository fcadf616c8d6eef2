"""`crystaldb compare`: the OMDB-GAP1 paper's model comparison on a release, as one table."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from crystaldb.cli.common import console, current_database, default_of, stage_progress
from crystaldb.platform.settings import load_settings
from crystaldb.workflows.compare import Comparison, compare_models  # torch-free until it runs


def _default(name: str) -> Any:
    """The comparison's own default for one of its options."""
    return default_of(compare_models, name)


def compare(
    release: str = typer.Option(
        ..., "--release", help="NAME[:VERSION] with train and test splits."
    ),
    epochs: int = typer.Option(
        _default("epochs"), "--epochs", help="Epochs of each network (SchNet, CGCNN, MPNN)."
    ),
    folds: int = typer.Option(_default("folds"), "--folds", min=2, help="KRR CV folds."),
    seed: int = typer.Option(
        _default("seed"), "--seed", help="Seed of folds, subsets, networks and bootstrap."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask workers."),
) -> None:
    """SOAP-KRR, MBTR-KRR, SchNet, CGCNN, MPNN and the SOAP-KRR + SchNet average on one split."""
    settings = load_settings()
    db = current_database(settings)
    with stage_progress() as update:
        done = compare_models(
            db,
            settings,
            release,
            epochs=epochs,
            folds=folds,
            seed=seed,
            workers=workers,
            on_progress=update,
        )
    console.print(comparison_table(done))
    console.print(ensemble_line(done))
    curves = "; ".join(
        f"{s.name}: " + ", ".join(f"{n} {mae:.3f}" for n, mae in s.curve)
        for s in done.scores
        if s.curve
    )
    console.print(f"learning curves (training structures, test MAE in eV): {curves}")
    console.print(f"  plot: {done.plot_uri}\n  stored with run {done.run_id}")


def comparison_table(done: Comparison) -> Table:
    """The paper's table: each model's test MAE and RMSE with intervals, then the baseline."""
    table = Table(
        f"{done.release}: {done.n_train} train / {done.n_test} test",
        "model",
        "test MAE (eV) [95% CI]",
        "test RMSE (eV) [95% CI]",
        escape("MAE - baseline [paired 95% CI]"),  # not a rich style tag
        "training (s)",
    )
    for score in done.scores:
        m = score.metrics
        table.add_row(
            score.name,
            "-" if score.model_id is None else str(score.model_id),
            f"{m['mae']:.3f} [{m['mae_ci95'][0]:.3f}, {m['mae_ci95'][1]:.3f}]",
            f"{m['rmse']:.3f} [{m['rmse_ci95'][0]:.3f}, {m['rmse_ci95'][1]:.3f}]",
            _difference(score.vs_baseline),
            f"{score.seconds:.1f}",
        )
    b = done.baseline
    table.add_row(
        "training median (baseline)",
        "-",
        f"{b['mae']:.3f} [{b['mae_ci95'][0]:.3f}, {b['mae_ci95'][1]:.3f}]",
        f"{b['rmse']:.3f} [{b['rmse_ci95'][0]:.3f}, {b['rmse_ci95'][1]:.3f}]",
        "-",
        "-",
    )
    return table


def ensemble_line(done: Comparison) -> Text:
    """The average against each of its members, as plain text (brackets are not markup)."""
    versus = "; ".join(
        f"{member} {_difference(d)}" for member, d in done.ensemble_vs_members.items()
    )
    return Text(f"average - member, test MAE in eV [paired 95% CI]: {versus}")


def _difference(d: dict[str, Any]) -> str:
    """A paired MAE difference as the table prints it: negative is better."""
    return f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
