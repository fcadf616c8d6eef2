"""The Dask client: a local cluster of worker processes by default, a real scheduler by address."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from crystaldb.core.errors import ClusterUnavailable
from crystaldb.platform.settings import Settings

if TYPE_CHECKING:  # distributed takes half a second to import: only jobs pay for it
    from distributed import Client

log = logging.getLogger(__name__)

SCHEDULER_TIMEOUT_S = 10


@contextmanager
def dask_client(settings: Settings, n_workers: int | None = None) -> Iterator[Client]:
    """Yield a client for the configured cluster; a local one lives only inside the block."""
    import dask
    from distributed import Client, LocalCluster

    if settings.dask_scheduler:
        client = _remote(settings.dask_scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    scratch = settings.data_dir / "dask"
    scratch.mkdir(parents=True, exist_ok=True)
    workers = n_workers or settings.dask_workers
    log.info("starting a local Dask cluster with %d worker processes", workers)
    # Workers that ran several featomic tasks sometimes outlive the nanny's 4 s grace at
    # shutdown and are killed then, after every result is in: that warning is not news.
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    # A task whose worker dies fails at once (KilledWorker) instead of killing two more
    # workers: jobs isolate the culprit themselves (see jobs.runner).
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=settings.dask_threads_per_worker,
            processes=True,
            dashboard_address=None,
            local_directory=str(scratch),
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _remote(address: str) -> Client:
    """Connect to a running scheduler, failing fast with the address in the message."""
    from distributed import Client

    try:
        return Client(address, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailable(
            f"cannot reach the Dask scheduler at {address} (CRYSTALDB_DASK_SCHEDULER): {exc}"
        ) from None


def describe_cluster(settings: Settings) -> dict[str, Any]:
    """What `crystaldb status` shows: a remote cluster is asked, a local one is not started."""
    if not settings.dask_scheduler:
        return {
            "kind": "local",
            "workers": settings.dask_workers,
            "threads_per_worker": settings.dask_threads_per_worker,
            "state": "started on demand",
        }
    try:
        with _remote(settings.dask_scheduler) as client:
            info = client.scheduler_info()
    except ClusterUnavailable as exc:
        return {"kind": "remote", "address": settings.dask_scheduler, "state": str(exc)}
    workers = info.get("workers", {})
    return {
        "kind": "remote",
        "address": settings.dask_scheduler,
        "workers": len(workers),
        "gpu_workers": sum(1 for w in workers.values() if w.get("resources", {}).get("GPU")),
        "state": "reachable",
    }


def worker_count(client: Client) -> int:
    """Workers the scheduler knows now (at least 1, for window sizes)."""
    return max(1, len(client.scheduler_info()["workers"]))


def worker_threads() -> int | None:
    """The calling Dask worker's thread count; None outside a worker."""
    from distributed import get_worker

    try:
        return int(get_worker().state.nthreads)
    except ValueError:  # not running on a worker
        return None
