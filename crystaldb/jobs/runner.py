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
A worker that dies under an element running alone gets it one more solo run first, so that a
death from outside (the kernel's OOM killer, a preempted node) does not cost an innocent.
Ingest and graphs use that; kernels and prediction need every structure, so there a failure
stops the job with its cause.
Progress is the caller's: it is told each result as it lands.

On a real cluster the scheduler itself moves the tasks of a worker that dies to the others
(up to `distributed.scheduler.allowed-failures` times), so a job may finish without seeing
the death at all; every job (through `noting_lost_workers`, which `bounded_map` uses) then
asks the scheduler's event log which workers left unexpectedly while holding the job's tasks
and records them on the job's run (`results["lost_workers"]`: each worker's address and how many
of the job's tasks it held), whether the job finished or failed.

Dask resources are hard constraints: a task that asks for `GPU=1` waits, forever, for a
worker that declares it. When the last such worker dies mid-job, `bounded_map` notices (no
worker with the resources for two polls in a row while workers without them remain), warns,
notes `results["fallback"]` on the run, and submits what was in flight and what is left
without the resources: prediction gives the same numbers on a CPU worker, later rather than
never.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from crystaldb.platform.cluster import worker_count
from crystaldb.schema.runs import current_run

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")

log = logging.getLogger(__name__)
STALL_POLL_S = 5.0  # how often a job with resources checks that a worker still has them


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
    stalled: Callable[[], bool] | None = None,
    poll_s: float = 5.0,
) -> Iterator[Done[T]]:
    """submit(item) for each item, at most `window` in flight; each result as it finishes.

    With `stalled`, asked every `poll_s` seconds that nothing finishes: when it answers True
    (it has changed what `submit` asks for), every task in flight is cancelled and submitted
    again.
    """
    from distributed import as_completed, wait

    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    source = enumerate(items)
    retry: deque[tuple[int, T]] = deque()  # halves of failed chunks go before new items
    suspects: deque[tuple[int, T, int]] = deque()  # single elements that failed, solo runs
    in_flight: dict[Future, tuple[int, T, int]] = {}  # item, and its solo runs so far
    queue = as_completed()

    def feed() -> None:
        if any(solo for _, _, solo in in_flight.values()):
            return  # a suspect runs by itself: nothing joins it
        if suspects:  # wait for the others to finish, then try the suspect alone
            if not in_flight:
                index, item, solo = suspects.popleft()
                submitted(index, item, solo + 1)
            return
        while len(in_flight) < window:
            if retry:
                index, item = retry.popleft()
            else:
                nxt = next(source, None)
                if nxt is None:
                    return
                index, item = nxt
            submitted(index, item, 0)

    def submitted(index: int, item: T, solo: int) -> None:
        future = submit(item)
        in_flight[future] = (index, item, solo)
        if stalled is None:  # polled through `wait` otherwise: the queue would keep it alive
            queue.add(future)

    def resubmit_if_stalled() -> None:
        if stalled is not None and stalled():
            for future, (index, item, solo) in list(in_flight.items()):
                del in_flight[future]
                future.cancel()
                submitted(index, item, solo)

    def finished() -> Iterator[Future]:
        """The futures as they finish; with `stalled`, polled so a stall can be seen."""
        if stalled is None:
            yield from queue
            return
        while in_flight:
            try:
                done = wait(list(in_flight), timeout=poll_s, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                resubmit_if_stalled()
                continue
            yield from (f for f in done if f in in_flight)

    feed()
    for future in finished():
        index, item, solo = in_flight.pop(future)
        try:
            result = _result(future, poll_s if stalled else None)
        except _Pending:  # done on a worker that died before handing it over: recomputed
            in_flight[future] = (index, item, solo)
            resubmit_if_stalled()
            continue
        except Exception as exc:  # the worker died (KilledWorker) or the task itself failed
            if not bisect:
                raise
            chunk: list[Any] = item  # type: ignore[assignment]  # bisect: items are lists
            if len(chunk) > 1:
                half = len(chunk) // 2
                retry.extendleft([(index, chunk[half:]), (index, chunk[:half])])  # type: ignore[list-item]
            elif solo < _solo_runs(exc):  # it may only have shared the dying worker
                suspects.append((index, item, solo))
            else:
                yield Done(index, item, Crashed(exc))
            feed()
            continue
        yield Done(index, item, result)
        feed()


def _solo_runs(error: BaseException) -> int:
    """How many times a failing element runs alone before it is refused as `Crashed`."""
    from distributed.scheduler import KilledWorker

    return 2 if isinstance(error, KilledWorker) else 1  # its own exception: once is enough


class _Pending(Exception):
    """A finished task's result did not arrive within a poll (its holder died meanwhile)."""


def _result(future: Future, timeout: float | None) -> Any:
    """The task's result; with a timeout, `_Pending` if it does not come in time."""
    if timeout is None:
        return future.result()
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        if future.status == "error":  # the task itself raised TimeoutError
            raise
        raise _Pending from None


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


@contextmanager
def noting_lost_workers(client: Client) -> Iterator[Callable[[Future], Future]]:
    """A `track(future)` for every task the block submits; dead holders noted on its run."""
    keys: set[Any] = set()  # every task submitted, to find the workers that died holding one

    def track(future: Future) -> Future:
        keys.add(future.key)
        return future

    try:
        yield track
    except GeneratorExit:  # the caller stopped reading: nothing more to ask the scheduler
        raise
    except BaseException:
        _record_lost_workers(client, keys)
        raise
    _record_lost_workers(client, keys)


def bounded_map(
    client: Client,
    func: Callable[..., Any],
    items: Iterable[Any],
    window: int,
    *args: Any,
    resources: dict[str, float] | None = None,
) -> Iterator[tuple[int, Any]]:
    """func(item, *args) on the workers through `run_window`; (index, result) as each is done.

    `resources` (e.g. {"GPU": 1}) sends each task only to workers that declare them, while
    one is left (see the module's docstring).
    """
    asked = {"resources": resources}
    stall = _ResourceWatch(client, resources) if resources else None

    def stalled() -> bool:
        if stall is None or asked["resources"] is None or not stall.gone():
            return False
        asked["resources"] = None
        _record_fallback(stall)
        return True

    with noting_lost_workers(client) as track:

        def submit(item: Any) -> Future:
            return track(client.submit(func, item, *args, pure=False, resources=asked["resources"]))

        for done in run_window(
            submit, items, window, stalled=stalled if stall else None, poll_s=STALL_POLL_S
        ):
            yield done.index, done.result


class _ResourceWatch:
    """Whether the workers declaring some resources have all gone, and others remain."""

    def __init__(self, client: Client, resources: dict[str, float]) -> None:
        self.client = client
        self.resources = resources
        self.misses = 0  # polls in a row without such a worker (a nanny restart takes one)
        self.since = 0.0

    def _provided(self) -> tuple[int, int]:
        """Workers that declare the resources, and workers in all."""
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {}).values()
        able = sum(
            all(w.get("resources", {}).get(k, 0) >= v for k, v in self.resources.items())
            for w in workers
        )
        return able, len(workers)

    def gone(self) -> bool:
        """True on the second poll in a row with none left but other workers up."""
        able, total = self._provided()
        if able or not total:  # none at all: wait for workers to join, as Dask would
            self.misses = 0
            return False
        self.misses += 1
        if self.misses == 1:
            self.since = time.monotonic()
        return self.misses >= 2


def _record_fallback(watch: _ResourceWatch) -> None:
    """Warn, and note on the current run, that tasks no longer ask for the resources."""
    wanted = ", ".join(f"{k}={v:g}" for k, v in watch.resources.items())
    log.warning(
        "no worker declares %s any more (for %.0f s): the rest of the job runs on the"
        " workers left, without it",
        wanted,
        time.monotonic() - watch.since,
    )
    run = current_run()
    if run is not None:
        run.results["fallback"] = {
            "resources": dict(watch.resources),
            "reason": f"no worker declaring {wanted} was left",
        }


def window_for(client: Client, per_worker: int = 2) -> int:
    """Tasks in flight for a cluster: two per worker keep each busy while results land."""
    return per_worker * worker_count(client)
