"""`crystaldb label`: labels the platform computes itself (GFN1-xTB gaps), and their tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from crystaldb.cli.common import (
    Tally,
    console,
    current_database,
    default_of,
    selection,
    stage_progress,
    step,
    tally_progress,
)
from crystaldb.cli.predict import ensemble_members
from crystaldb.core.acquisition import AcquisitionHypers
from crystaldb.core.xtb import METHODS, XtbHypers
from crystaldb.jobs.xtb import (
    DEFAULT_TIMEOUT_S,
    SHIPPED_LABELS,
    LabelSummary,
    acquire,
    export_labels,
    failure_reasons,
    label_xtb,
    load_labels,
)
from crystaldb.platform.settings import load_settings
from crystaldb.workflows.acquisition import AcquisitionCurve, acquisition_curve

app = typer.Typer(
    help="Computed labels: GFN1-xTB band gaps with tblite on Dask, and their CSV tables.",
    no_args_is_help=True,
)


def label_tally(summary: LabelSummary, seconds: float) -> Tally:
    """Structures done, labelled and failed, and the time per structure."""
    return Tally(
        done=summary.done,
        todo=summary.todo,
        outcome=f"[green]{summary.labelled} labelled[/green] [red]{summary.failed} failed[/red]",
        rate=f"{seconds / summary.done:,.1f} s/structure" if summary.done else "",
    )


@app.command("xtb")
def label_xtb_command(
    release: str | None = typer.Option(None, "--release", help="NAME[:VERSION]: its members."),
    where: str | None = typer.Option(
        None, "--where", help='Structures matching a filter, e.g. "nsites <= 200".'
    ),
    everything: bool = typer.Option(False, "--all", help="Every structure in the database."),
    method: str = typer.Option(
        default_of(XtbHypers, "method"), "--method", help=f"One of {', '.join(METHODS)}."
    ),
    temperature: float = typer.Option(
        default_of(XtbHypers, "electronic_temperature"),
        "--temperature",
        help="Electronic temperature (kelvin) of the Fermi smearing.",
    ),
    accuracy: float = typer.Option(
        default_of(XtbHypers, "accuracy"), "--accuracy", help="tblite's SCF accuracy."
    ),
    max_iterations: int = typer.Option(
        default_of(XtbHypers, "max_iterations"), "--max-iterations", help="SCF cycles at most."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Local Dask worker processes [default: settings]."
    ),
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT_S, "--timeout", help="Seconds per structure before it is killed."
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="Label at most N structures in this run (smallest first)."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Try again the structures an earlier run failed on."
    ),
    acquire_k: int | None = typer.Option(
        None,
        "--acquire",
        help="K: label only the K unlabelled structures with the largest --ensemble spread.",
    ),
    ensemble: str | None = typer.Option(
        None, "--ensemble", help="ID,ID,...: the models whose spread --acquire ranks by."
    ),
) -> None:
    """Band gaps of the selected structures that have none of this setting; resumable."""
    if not timeout > 0:
        raise typer.BadParameter(
            f"must be a positive number of seconds (got {timeout:g})", param_hint="--timeout"
        )
    if limit is not None and limit < 0:
        raise typer.BadParameter(f"must be 0 or more (got {limit})", param_hint="--limit")
    hypers = XtbHypers(
        method=method,
        electronic_temperature=temperature,
        accuracy=accuracy,
        max_iterations=max_iterations,
    )
    if (acquire_k is None) != (ensemble is None):
        raise typer.BadParameter(
            "give --acquire K and --ensemble ID,ID,... together", param_hint="--acquire"
        )
    settings = load_settings()
    db = current_database(settings)
    chosen = selection(db, release, where, everything, "the structures to label")
    acquisition = None
    if acquire_k is not None and ensemble is not None:
        with step(f"ranking by the spread of models {ensemble}"):
            acquisition, chosen = acquire(
                db,
                settings,
                ensemble_members(ensemble),
                chosen,
                acquire_k,
                hypers,
                workers=workers,
                retry_failed=retry_failed,
            )
        console.print(
            f"acquired {len(acquisition.chosen)} of {acquisition.candidates} unlabelled "
            f"structures (ensemble model {acquisition.model_id}, predict run "
            f"{acquisition.predict_run_id}); spreads "
            + ", ".join(f"{v:.3f}" for v in acquisition.spreads[:10])
            + (" ..." if len(acquisition.spreads) > 10 else "")
            + " eV",
            soft_wrap=True,
        )
    with tally_progress(f"label {method}", label_tally) as on_progress:
        summary = label_xtb(
            db,
            settings,
            chosen,
            hypers,
            workers=workers,
            timeout=timeout,
            limit=limit,
            retry_failed=retry_failed,
            acquisition=acquisition,
            on_progress=on_progress,
        )
    console.print(
        f"{method} band gaps (run {summary.run_id}): {summary.selected} structures selected, "
        f"{summary.labelled} labelled, {summary.failed} failed, {summary.already} already "
        "labelled"
        + (
            f", {summary.failed_before} skipped (failed in an earlier run; --retry-failed "
            "tries them again)"
            if summary.failed_before
            else ""
        ),
        soft_wrap=True,
    )
    if summary.failures:
        table = Table("reason", "structures", title="failed in this run", title_justify="left")
        for reason, count in summary.failures.most_common():
            table.add_row(reason, str(count))
        console.print(table)
        for message in summary.errors[:10]:
            console.print(f"  [red]failed[/red] {message}", highlight=False, soft_wrap=True)
    recorded = failure_reasons(db, hypers)
    if recorded and summary.failed_before:
        table = Table(
            "reason",
            "structures",
            "example",
            title="all recorded failures of this setting",
            title_justify="left",
        )
        for reason, count, example in recorded:
            table.add_row(reason, str(count), example)
        console.print(table)


@app.command("export")
def label_export(
    output: Path = typer.Argument(..., help="The CSV file to write."),
    method: str = typer.Option(
        default_of(XtbHypers, "method"), "--method", help="Whose labels (the functional)."
    ),
) -> None:
    """Write the tblite band gaps of a method as a table keyed by each structure's source."""
    db = current_database(load_settings())
    rows = export_labels(db, output, method)
    console.print(f"{rows} {method} band gaps written to {output}")


@app.command("load")
def label_load(
    table: Path = typer.Argument(
        SHIPPED_LABELS,
        help="A table written by `crystaldb label export` [default: the shipped one].",
        show_default=False,
    ),
) -> None:
    """Attach a computed-label table to the ingested structures with the same source ids."""
    db = current_database(load_settings())
    summary = load_labels(db, table)
    console.print(
        f"{table.name}: {summary.rows} rows, {summary.attached} labels attached, "
        f"{summary.already} already there, {summary.not_found} structures not ingested"
        + (f" (e.g. {', '.join(summary.missing[:5])})" if summary.missing else "")
    )


def _hyper(name: str, flag: str, help_text: str) -> Any:
    """An option of `label curve` whose default is AcquisitionHypers' own."""
    return typer.Option(default_of(AcquisitionHypers, name), flag, help=help_text)


@app.command("curve")
def label_curve(
    release: str = typer.Option(
        ..., "--release", help="NAME[:VERSION] with train and test splits."
    ),
    kernel: int | None = typer.Option(
        None,
        "--kernel",
        help="A square kernel over its members; by default the newest default-SOAP one.",
    ),
    start: int = _hyper("start", "--start", "Random train structures to begin."),
    step_size: int = _hyper("step", "--step", "Structures acquired per round."),
    rounds: int = _hyper("rounds", "--rounds", "Rounds of acquisition."),
    committee: int = _hyper("committee", "--committee", "Bootstrap KRR models."),
    seeds: int = _hyper("seeds", "--seeds", "Repeats from other starts."),
    regularisation: float | None = typer.Option(
        None,
        "--regularisation",
        help="KRR's lambda; by default chosen by CV on the train split.",
    ),
) -> None:
    """Test MAE against labelled structures: acquisition by committee spread against random."""
    hypers = AcquisitionHypers(start, step_size, rounds, committee, regularisation, seeds)
    settings = load_settings()
    db = current_database(settings)
    with stage_progress() as update:
        done = acquisition_curve(
            db, settings, release, kernel, hypers, lambda d, t: update("seeds", d, t)
        )
    console.print(curve_table(done))
    console.print(f"  plot: {done.plot_uri}\n  stored with run {done.run_id}")


def curve_table(done: AcquisitionCurve) -> Table:
    """Mean test MAE ± sd over the seeds of both strategies at every size."""
    table = Table(
        "labelled structures",
        "random MAE (eV)",
        "spread MAE (eV)",
        title=f"{done.release}: kernel {done.kernel_id}, {done.n_pool} train / {done.n_test}"
        f" test, lambda {done.curves.regularisation:g}",
        title_justify="left",
    )
    random, spread = (done.curves.curves[s].points() for s in ("random", "spread"))
    for (n, r_mean, r_sd), (_, s_mean, s_sd) in zip(random, spread, strict=True):
        table.add_row(str(n), f"{r_mean:.3f} ± {r_sd:.3f}", f"{s_mean:.3f} ± {s_sd:.3f}")
    return table
