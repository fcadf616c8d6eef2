"""The one way jobs run work on Dask: a bounded window of tasks, results as they finish.

Every job (ingest, graphs, descriptors, kernel tiles, prediction) streams its items through
`run_window`: at most `window` tasks are in flight, so the client never holds more than a few
batches of inputs or results, whatever the collection's size (a 260,000-structure screening
runs in the memory of a few batches). Items are produced lazily, when a slot frees.

With `bisect=True` an item is a list (a chunk) and a task that fails, because its worker
died in native code (KilledWorker) or the task raised, is split in two and both halves are
retried first. A single element that fails is run again by itself once the tasks in flight
have finished, since every task a dying worker held fails with it, innocent or not; if it
fails alone it is handed back as `Crashed`: a crash costs the job one element, never the run.
Ingest and graphs use that; kernels and prediction need every structure, so there a failure
stops the job with its cause.
Progress is the caller's: it is told each result as it lands.

On a real cluster the scheduler itself moves the tasks of a worker that dies to the others
(up to `distributed.scheduler.allowed-failures` times), so a job may finish without seeing
the death at all; `bounded_map` (descriptors, kernel tiles, prediction) then asks the
scheduler's event log which workers left unexpectedly while holding the job's tasks and
records them on the job's run (`results["lost_workers"]`: each worker's address and how many
of the job's tasks it held), whether the job finished or failed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from crystaldb.platform.cluster import worker_count
from crystaldb.schema.runs import current_run

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crashed:
    """The task of a one-element chunk failed even alone: the element to refuse, and why."""

    error: BaseException

    def describe(self) -> str:
        """The cause as a message names it: the exception's type and text."""
        return f"{type(self.error).__name__}: {self.error}"


@dataclass(frozen=True)
class Done(Generic[T]):
    """One finished task: the item it was given (a part, after bisection) and its result.

    `index` is the position of the original item in the input stream (halves keep their
    parent's), so callers that need input order can restore it.
    """

    index: int
    item: T
    result: Any  # the task's return value, or Crashed


def run_window(
    submit: Callable[[T], Future],
    items: Iterable[T],
    window: int,
    *,
    bisect: bool = False,
) -> Iterator[Done[T]]:
    """submit(item) for each item, at most `window` in flight; each result as it finishes."""
    from distributed import as_completed

    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    source = enumerate(items)
    retry: deque[tuple[int, T]] = deque()  # halves of failed chunks go before new items
    suspects: deque[tuple[int, T]] = deque()  # single elements that failed once
    in_flight: dict[Future, tuple[int, T, bool]] = {}  # item, and whether it ran alone
    queue = as_completed()

    def feed() -> None:
        if any(alone for _, _, alone in in_flight.values()):
            return  # a suspect runs by itself: nothing joins it
        if suspects:  # wait for the others to finish, then try the suspect alone
            if not in_flight:
                index, item = suspects.popleft()
                submitted(index, item, alone=True)
            return
        while len(in_flight) < window:
            if retry:
                index, item = retry.popleft()
            else:
                nxt = next(source, None)
                if nxt is None:
                    return
                index, item = nxt
            submitted(index, item, alone=False)

    def submitted(index: int, item: T, alone: bool) -> None:
        future = submit(item)
        in_flight[future] = (index, item, alone)
        queue.add(future)

    feed()
    for future in queue:
        index, item, alone = in_flight.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # the worker died (KilledWorker) or the task itself failed
            if not bisect:
                raise
            chunk: list[Any] = item  # type: ignore[assignment]  # bisect: items are lists
            if len(chunk) > 1:
                half = len(chunk) // 2
                retry.extendleft([(index, chunk[half:]), (index, chunk[:half])])  # type: ignore[list-item]
            elif not alone:  # it may only have shared the dying worker with the culprit
                suspects.append((index, item))
            else:
                yield Done(index, item, Crashed(exc))
            feed()
            continue
        yield Done(index, item, result)
        feed()


def _record_lost_workers(client: Client, keys: set[Any]) -> None:
    """Note on the current run each worker that left unexpectedly holding some of `keys`."""
    run = current_run()
    if run is None or not keys:
        return

    # Filtered on the scheduler: its whole event log may hold objects that do not serialise.
    # Nested, so cloudpickle ships it by value: the scheduler need not have crystaldb.
    def lost_on_scheduler(keys: set[Any], dask_scheduler: Any = None) -> dict[str, int]:
        held: dict[str, int] = {}
        for _, event in dask_scheduler.get_events("all"):
            if not isinstance(event, dict) or event.get("action") != "remove-worker":
                continue
            if event.get("expected"):  # retired or closed on purpose, not died
                continue
            tasks = set(event.get("processing-tasks", ())) | set(
                event.get("lost-computed-tasks", ())
            )
            if tasks & keys:
                worker = str(event["worker"])
                held[worker] = held.get(worker, 0) + len(tasks & keys)
        return held

    try:
        held = client.run_on_scheduler(lost_on_scheduler, keys)
    except Exception as exc:  # a scheduler gone too: the job's own error says more
        log.warning("could not ask the scheduler which workers died: %s", exc)
        return
    if not held:
        return
    known = {entry["worker"]: entry for entry in run.results.get("lost_workers", [])}
    for worker, tasks in held.items():  # a job may run several windows (descriptors, tiles)
        entry = known.setdefault(worker, {"worker": worker, "tasks": 0})
        entry["tasks"] += tasks
        log.warning("worker %s died holding %d tasks of run %d", worker, tasks, run.id)
    run.results["lost_workers"] = sorted(known.values(), key=lambda e: e["worker"])


def bounded_map(
    client: Client,
    func: Callable[..., Any],
    items: Iterable[Any],
    window: int,
    *args: Any,
    resources: dict[str, float] | None = None,
) -> Iterator[tuple[int, Any]]:
    """func(item, *args) on the workers through `run_window`; (index, result) as each is done.

    `resources` (e.g. {"GPU": 1}) sends each task only to workers that declare them.
    """

    keys: set[Any] = set()  # every task submitted, to find the workers that died holding one

    def submit(item: Any) -> Future:
        future = client.submit(func, item, *args, pure=False, resources=resources)
        keys.add(future.key)
        return future

    try:
        for done in run_window(submit, items, window):
            yield done.index, done.result
    except GeneratorExit:  # the caller stopped reading: nothing more to ask the scheduler
        raise
    except BaseException:
        _record_lost_workers(client, keys)
        raise
    _record_lost_workers(client, keys)


def window_for(client: Client, per_worker: int = 2) -> int:
    """Tasks in flight for a cluster: two per worker keep each busy while results land."""
    return per_worker * worker_count(client)
