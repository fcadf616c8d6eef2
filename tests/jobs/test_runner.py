"""The one runner every job uses, on a local cluster of real worker processes.

A task that kills its worker (os._exit, as a segfault in native code would) costs one element
when chunks are bisected, and stops the job with its cause when they are not; the window
bounds what the client holds however long the stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, Future
from distributed.scheduler import KilledWorker

from crystaldb.jobs import runner
from crystaldb.jobs.runner import Crashed, bounded_map, run_window, window_for
from crystaldb.platform.cluster import dask_client
from crystaldb.platform.database import Database
from crystaldb.platform.settings import load_settings
from crystaldb.schema import Run
from crystaldb.schema.runs import track_run

pytestmark = pytest.mark.slow

POISON = 13
REPO = Path(__file__).resolve().parents[2]


def squares_or_die(chunk: list[int]) -> list[int]:
    """Squares; the worker process dies outright on the poison value."""
    if POISON in chunk:
        os._exit(1)
    return [n * n for n in chunk]


def fails_on_poison(n: int) -> int:
    """An ordinary exception, raised by the task itself."""
    if n == POISON:
        raise ValueError(f"cannot take {n}")
    return n + 1


def plus_one(n: int) -> int:
    """The simplest task."""
    return n + 1


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    settings = load_settings(data_dir=tmp_path_factory.mktemp("runner"), dask_workers=2)
    with dask_client(settings) as running:
        yield running


def test_a_chunk_that_kills_its_worker_is_bisected_down_to_the_one_element(
    client: Client,
) -> None:
    chunks = [list(range(start, start + 8)) for start in range(0, 32, 8)]  # 13 in the second

    def submit(chunk: list[int]) -> Future:
        return client.submit(squares_or_die, chunk, pure=False)

    done = list(run_window(submit, chunks, window=2, bisect=True))
    crashed = [d for d in done if isinstance(d.result, Crashed)]
    assert [d.item for d in crashed] == [[POISON]]
    assert crashed[0].index == 1  # halves keep the position of the chunk they came from
    assert "KilledWorker" in crashed[0].result.describe()
    squares = sorted(n for d in done if not isinstance(d.result, Crashed) for n in d.result)
    assert squares == sorted(n * n for n in range(32) if n != POISON)  # nothing lost or doubled


def test_elements_that_only_shared_the_dying_worker_are_not_quarantined(
    client: Client,
) -> None:
    """Every task a dying worker held fails with it; only the one failing alone is refused."""
    chunks = [[n] for n in range(16)]  # one element each, four in flight on two workers

    def submit(chunk: list[int]) -> Future:
        return client.submit(squares_or_die, chunk, pure=False)

    for _ in range(3):  # which innocents share the dying worker varies from run to run
        done = list(run_window(submit, chunks, window=4, bisect=True))
        assert [d.item for d in done if isinstance(d.result, Crashed)] == [[POISON]]
        assert sorted(d.item[0] for d in done if not isinstance(d.result, Crashed)) == [
            n for n in range(16) if n != POISON
        ]


def dies_twice_on_seven(chunk: list[int], tally: str) -> list[int]:
    """Its worker dies the first two times 7 runs (killed from outside, say), then it works."""
    if 7 in chunk:
        runs = Path(tally)
        count = int(runs.read_text()) if runs.exists() else 0
        runs.write_text(str(count + 1))
        if count < 2:
            os._exit(1)
    return chunk


def test_an_element_whose_worker_died_once_alone_gets_a_second_solo_run(
    client: Client, tmp_path: Path
) -> None:
    """Killed in company, then alone once: the second solo run succeeds, nothing is refused."""
    tally = tmp_path / "runs-of-seven"

    def submit(chunk: list[int]) -> Future:
        return client.submit(dies_twice_on_seven, chunk, str(tally), pure=False)

    done = list(run_window(submit, [[n] for n in range(10)], window=2, bisect=True))
    assert not [d.item for d in done if isinstance(d.result, Crashed)]
    assert sorted(d.result[0] for d in done) == list(range(10))
    assert tally.read_text() == "3"  # in company, alone, alone again


def test_an_element_that_raises_alone_is_refused_after_one_solo_run(
    client: Client, tmp_path: Path
) -> None:
    """Its own exception is no accident of a worker: one solo run confirms it."""
    calls = tmp_path / "calls"

    def submit(chunk: list[int]) -> Future:
        return client.submit(counts_and_fails_on_poison, chunk, str(calls), pure=False)

    done = list(run_window(submit, [[n] for n in range(16)], window=4, bisect=True))
    crashed = [d for d in done if isinstance(d.result, Crashed)]
    assert [d.item for d in crashed] == [[POISON]]
    assert crashed[0].result.describe() == f"ValueError: cannot take {POISON}"
    assert calls.read_text().count(f"{POISON}\n") == 2  # in company, then alone once


def counts_and_fails_on_poison(chunk: list[int], calls: str) -> list[int]:
    """Notes each call of the poison, which then raises an ordinary exception."""
    if POISON in chunk:
        with open(calls, "a") as out:
            out.write(f"{POISON}\n")
    return [fails_on_poison(n) for n in chunk]


def test_without_bisection_a_failure_stops_the_job_with_its_cause(client: Client) -> None:
    with pytest.raises(ValueError, match="cannot take 13"):
        list(bounded_map(client, fails_on_poison, range(20), 3))


def test_the_window_bounds_what_is_in_flight_and_every_index_comes_back(
    client: Client,
) -> None:
    pulled = 0

    def stream() -> Iterator[int]:
        nonlocal pulled
        for n in range(50):
            pulled += 1
            yield n

    window = window_for(client)  # a nanny racing a second death may not restart its worker
    assert window == 2 * len(client.scheduler_info(n_workers=-1)["workers"])  # two per worker
    seen = []
    for index, result in bounded_map(client, plus_one, stream(), window):
        assert pulled - len(seen) <= window  # never more than `window` taken and not returned
        assert result == index + 1
        seen.append(index)
    assert sorted(seen) == list(range(50))


def test_a_window_below_one_is_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="window must be at least 1, not 0"):
        list(run_window(lambda n: client.submit(abs, n), [1], 0))


def dies_on_poison(n: int) -> int:
    """The worker process dies outright on the poison value."""
    if n == POISON:
        os._exit(1)
    return n


def test_a_worker_that_died_on_a_job_is_named_on_its_run(client: Client, db: Database) -> None:
    """The run record says which worker died holding the job's tasks, and how many."""
    with pytest.raises(KilledWorker), track_run(db, "test-runner") as run:
        list(bounded_map(client, dies_on_poison, range(16), 2))
    with db.session() as session:
        row = session.get_one(Run, run.id)
        assert row.status == "failed" and "KilledWorker" in (row.error or "")
        lost = row.results["lost_workers"]
    assert len(lost) == 1 and lost[0]["worker"].startswith("tcp://127.0.0.1:")
    assert lost[0]["tasks"] >= 1

    with track_run(db, "test-runner") as calm:
        list(bounded_map(client, plus_one, range(8), 2))
    with db.session() as session:
        assert "lost_workers" not in session.get_one(Run, calm.id).results


def slow_where(n: int) -> tuple[int, str]:
    """n + 1 after a pause, and the name of the worker that computed it."""
    import time

    from distributed import get_worker

    time.sleep(0.3)
    return n + 1, get_worker().name


def _await_worker(client: Client, name: str, timeout: float = 60) -> str:
    """The address of the worker of that name, once it has joined the scheduler."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        for address, worker in workers.items():
            if worker.get("name") == name:
                return str(address)
        time.sleep(0.2)
    raise TimeoutError(f"worker {name} did not join within {timeout} s")


def test_when_the_last_gpu_worker_dies_the_job_finishes_on_the_others(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks asking for GPU=1 go to the CPU workers once none declares it, noted on the run.

    The scheduler keeps Dask's default of retrying a dead worker's tasks elsewhere (as a real
    cluster's does; local clusters fail them at once), which, with the resource a hard
    constraint, would leave them waiting forever.
    """
    import dask
    from distributed import LocalCluster

    monkeypatch.setattr(runner, "STALL_POLL_S", 0.5)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 3}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
            local_directory=str(tmp_path),
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        worker = subprocess.Popen(  # a real worker process, the only one with the resource
            [str(Path(sys.executable).parent / "dask"), "worker", cluster.scheduler_address,
             "--name", "gpu", "--nthreads", "1", "--no-nanny", "--resources", "GPU=1",
             "--local-directory", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},  # where it finds this module's task
        )  # fmt: skip
        try:
            address = _await_worker(client, "gpu")
            results: dict[int, tuple[int, str]] = {}
            with track_run(db, "test-runner") as run:
                for index, result in bounded_map(
                    client, slow_where, range(12), 2, resources={"GPU": 1.0}
                ):
                    results[index] = result
                    if len(results) == 2:
                        os.killpg(worker.pid, signal.SIGKILL)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert {i: value for i, (value, _) in results.items()} == {i: i + 1 for i in range(12)}
    where = [results[i][1] for i in range(12)]
    assert where[:2] == ["gpu", "gpu"] and "gpu" not in where[4:]
    with db.session() as session:
        recorded = session.get_one(Run, run.id).results
    assert recorded["fallback"] == {
        "resources": {"GPU": 1.0},
        "reason": "no worker declaring GPU=1 was left",
    }
    assert [entry["worker"] for entry in recorded["lost_workers"]] == [address]
