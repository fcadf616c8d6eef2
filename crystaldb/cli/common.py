"""What every command shares: the consoles, defaults read from the library, progress, steps."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from crystaldb.core.soap import SoapHypers
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import Settings, load_settings
from crystaldb.query.selection import Selection, select_structures
from crystaldb.schema import migrate

console = Console()
err_console = Console(stderr=True)

StageProgress = Callable[[str, int, int], None]
S = TypeVar("S")  # a job's running summary


def default_of(owner: Callable[..., Any], name: str) -> Any:
    """The default a dataclass field or function parameter declares, so options never restate it."""
    default = inspect.signature(owner).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{owner.__qualname__}.{name} has no default")
    return default


def database(settings: Settings) -> Database:
    """Connect, telling the user when the embedded server is being started."""
    if settings.database is None:
        with console.status("Starting the embedded PostgreSQL..."):
            return connect(settings)
    return connect(settings)


def current_database(settings: Settings | None = None) -> Database:
    """Connect and refuse to go on unless the schema is up to date (most commands need that)."""
    db = database(settings or load_settings())
    migrate.require_current(db)
    return db


@contextmanager
def step(message: str) -> Iterator[None]:
    """A spinner while a step runs, then a tick with its duration."""
    start = time.perf_counter()
    with console.status(f"{message}..."):
        yield
    console.print(f"[green]✓[/green] {message} ({time.perf_counter() - start:.1f} s)")


@contextmanager
def stage_progress() -> Iterator[StageProgress]:
    """One bar per stage of a job (descriptors, tiles, folds, ...), created as stages start."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, Any] = {}
    with progress:

        def update(stage: str, done: int, total: int) -> None:
            """Move the stage's bar, adding it the first time the stage reports."""
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


def selection(
    db: Database, release: str | None, where: str | None, everything: bool, what: str
) -> Selection:
    """Exactly one of --release, --where, --all."""
    if sum((release is not None, where is not None, everything)) != 1:
        raise typer.BadParameter(f"give one of --release, --where or --all for {what}")
    return select_structures(db, release=release, where=where)


def soap_label(hypers: SoapHypers) -> str:
    """The SOAP hyperparameters as the kernel lines print them: r_c 4 A, n 8, l 6."""
    return f"r_c {hypers.cutoff:g} A, n {hypers.n_max}, l {hypers.l_max}"


@dataclass(frozen=True)
class Tally:
    """What a counted job's bar shows after each step."""

    done: int
    todo: int | None  # None: the length is not known yet, or unchanged
    outcome: str  # what became of the items so far
    rate: str


class TallyBar(Generic[S]):
    """The callback a counted job (ingest, graphs, label) reports its running summary to."""

    def __init__(self, progress: Progress, tally: Callable[[S, float], Tally]) -> None:
        self._progress, self._tally = progress, tally
        self._task = progress.add_task("", total=None, outcome="", rate="")
        self._start = time.perf_counter()

    def __call__(self, summary: S) -> None:
        """Show the running totals of the summary."""
        shown = self._tally(summary, time.perf_counter() - self._start)
        if shown.todo is not None:
            self._progress.update(self._task, total=shown.todo)
        self._progress.update(
            self._task, completed=shown.done, outcome=shown.outcome, rate=shown.rate
        )

    def set_total(self, total: int | None) -> None:
        """Give the bar its length once the inputs are counted."""
        self._progress.update(self._task, total=total)


@contextmanager
def tally_progress(label: str, tally: Callable[[S, float], Tally]) -> Iterator[TallyBar[S]]:
    """One bar with a count, an outcome and a rate, from `tally(summary, seconds so far)`."""
    progress = _outcome_progress(label)
    with progress:
        yield TallyBar(progress, tally)


def _outcome_progress(label: str) -> Progress:
    """A bar with a count, what became of the items so far, and the rate."""
    return Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[outcome]}"),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
