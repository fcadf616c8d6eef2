"""The Dask client: a local cluster of worker processes by default, a real scheduler by address."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from crystaldb.core.errors import ClusterUnavailable
from crystaldb.platform.settings import Settings

if TYPE_CHECKING:  # distributed takes half a second to import: only jobs pay for it
    from distributed import Client
    from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

SCHEDULER_TIMEOUT_S = 10
PROBE_TIMEOUT_S = 30
PROBE_PREFIX = "probes"  # store keys of `crystaldb status`'s checks, removed after each
SLURM_JOB_NAME = "crystaldb-worker"


@contextmanager
def dask_client(settings: Settings, n_workers: int | None = None) -> Iterator[Client]:
    """Yield a client for the configured cluster; a local one lives only inside the block."""
    import dask
    from distributed import Client, LocalCluster

    if settings.cluster_kind == "address" and settings.dask_scheduler:
        client = _remote(settings.dask_scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    if settings.cluster_kind == "slurm":
        with _slurm_client(settings, n_workers) as client:
            yield client
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


def slurm_job_options(settings: Settings) -> dict[str, Any]:
    """dask-jobqueue's SLURM job options from the settings (CRYSTALDB_SLURM_*)."""
    resources = settings.slurm_worker_resources
    return {
        "queue": settings.slurm_queue,
        "account": settings.slurm_account,
        "cores": settings.slurm_cores,
        "processes": settings.slurm_processes,
        "memory": settings.slurm_memory,
        "walltime": settings.slurm_walltime,
        "job_extra_directives": list(settings.slurm_job_extra_directives),
        "job_script_prologue": list(settings.slurm_job_script_prologue),
        "worker_extra_args": ["--resources", resources] if resources else [],
        "interface": settings.slurm_interface,
        "python": settings.slurm_python or sys.executable,
        "job_name": SLURM_JOB_NAME,
    }


def slurm_job_script(settings: Settings, scheduler_address: str | None = None) -> str:
    """The batch script each SLURM worker job runs (sbatch submits it; `#SBATCH` lines first).

    With an address, the script of a worker job joining that scheduler; without one, exactly
    what `dask_client` would submit: a SLURMCluster is made (its scheduler listening here)
    and asked for its script, and closed without submitting anything.
    """
    from dask_jobqueue.slurm import SLURMJob

    if scheduler_address:
        job = SLURMJob(
            scheduler=scheduler_address,
            name=f"{SLURM_JOB_NAME}-$SLURM_JOB_ID",
            **slurm_job_options(settings),
        )
        return str(job.job_script())
    with _slurm_cluster(settings) as cluster:
        return str(cluster.job_script())


@contextmanager
def _slurm_cluster(settings: Settings) -> Iterator[Any]:
    """A dask-jobqueue SLURMCluster: its scheduler runs in this process, workers as jobs."""
    from dask_jobqueue import SLURMCluster

    try:
        cluster = SLURMCluster(dashboard_address=None, **slurm_job_options(settings))
    except (OSError, ValueError) as exc:  # a bad interface name, an unparsable memory size
        raise ClusterUnavailable(
            f"cannot start the SLURM cluster (CRYSTALDB_SLURM_*): {exc}"
        ) from None
    try:
        yield cluster
    finally:
        cluster.close()


@contextmanager
def _slurm_client(settings: Settings, n_workers: int | None) -> Iterator[Client]:
    """Submit the worker jobs, wait for the first to join, cancel them all when done."""
    from distributed import Client

    with _slurm_cluster(settings) as cluster:
        if n_workers:
            cluster.scale(n=n_workers)
        else:
            cluster.scale(jobs=settings.slurm_jobs)
        log.info("submitted SLURM worker jobs; waiting for the first to join")
        with Client(cluster) as client:
            try:
                client.wait_for_workers(1, timeout=settings.slurm_start_timeout)
            except TimeoutError:
                raise ClusterUnavailable(
                    f"no SLURM worker job joined within {settings.slurm_start_timeout:g} s"
                    " (CRYSTALDB_SLURM_START_TIMEOUT): `squeue --me` shows why they wait"
                ) from None
            yield client


def describe_cluster(
    settings: Settings, probe: bool = False, database: URL | None = None
) -> dict[str, Any]:
    """What `crystaldb status` shows: a running scheduler is asked about its workers.

    A local cluster is started only with `probe` (it lives for the command); a SLURM one
    is never started here (that would submit jobs): its settings are shown instead. Each
    worker checks the store and `database` (default: CRYSTALDB_DATABASE_URL).
    """
    database = database or settings.database
    kind = settings.cluster_kind
    if kind == "slurm":
        return {
            "kind": "slurm",
            "queue": settings.slurm_queue,
            "account": settings.slurm_account,
            "jobs": settings.slurm_jobs,
            "cores": settings.slurm_cores,
            "processes": settings.slurm_processes,
            "memory": settings.slurm_memory,
            "walltime": settings.slurm_walltime,
            "state": "worker jobs submitted per crystaldb job (dask-jobqueue)",
        }
    if kind == "local" and not probe:
        return {
            "kind": "local",
            "workers": settings.dask_workers,
            "threads_per_worker": settings.dask_threads_per_worker,
            "state": "started on demand",
        }
    if kind == "local":
        with dask_client(settings) as client:
            described = _describe_workers(client, settings, database)
        return {"kind": "local", **described, "state": "started for this check, then stopped"}
    assert settings.dask_scheduler is not None
    try:
        client = _remote(settings.dask_scheduler)
    except ClusterUnavailable as exc:
        return {"kind": "remote", "address": settings.dask_scheduler, "state": str(exc)}
    with client:
        described = _describe_workers(client, settings, database)
    return {"kind": "remote", **described, "state": "reachable"}


def _describe_workers(client: Client, settings: Settings, database: URL | None) -> dict[str, Any]:
    """The scheduler's address and each worker's threads, memory, resources and reach."""
    info = client.scheduler_info(n_workers=-1)
    workers = []
    for address, worker in sorted(info.get("workers", {}).items()):
        workers.append(
            {
                "address": address,
                "name": str(worker.get("name", address)),
                "host": worker.get("host"),
                "threads": worker.get("nthreads"),
                "memory_limit": worker.get("memory_limit"),
                "resources": dict(worker.get("resources") or {}),
            }
        )
    probes = probe_workers(
        client, settings.store_location, database, [w["address"] for w in workers]
    )
    for worker in workers:
        worker.update(probes[worker["address"]])
    return {
        "address": info.get("address"),
        "workers": len(workers),
        "threads": sum(w["threads"] or 0 for w in workers),
        "gpu_workers": sum(1 for w in workers if w["resources"].get("GPU")),
        "worker_details": workers,
    }


def probe_workers(
    client: Client, store_url: str, database: URL | None, addresses: list[str]
) -> dict[str, Any]:
    """Run one small task on each worker: can it see this client's store, and the database?

    The client writes a probe key; each worker must read back those very bytes (a worker
    that writes to a folder of its own host, not the shared store, fails here), then write,
    read and remove a key of its own, and open a connection to the database. The client's
    key is removed at the end.
    """
    from distributed import wait

    from crystaldb.platform.store import ArtifactStore

    token = uuid.uuid4().hex[:12]
    client_key = f"{PROBE_PREFIX}/{token}/client"
    secret = uuid.uuid4().hex.encode()
    database_url = _conninfo(database) if database is not None else None
    results: dict[str, Any] = {}
    try:
        store = ArtifactStore(store_url)
        store.put_bytes(client_key, secret)
    except Exception as exc:  # an unreachable store: every worker's check would fail alike
        error = f"the client cannot write to the store: {exc}"
        return {a: {"store": error, "database": "not checked"} for a in addresses}
    try:
        futures = {
            address: client.submit(
                probe_worker,
                store_url,
                client_key,
                secret,
                database_url,
                workers=[address],
                allow_other_workers=False,
                pure=False,
                key=f"crystaldb-probe-{token}-{index}",
            )
            for index, address in enumerate(addresses)
        }
        with suppress(TimeoutError):  # raised when some are still pending: named below
            wait(list(futures.values()), timeout=PROBE_TIMEOUT_S)
        late = {f for f in futures.values() if f.status == "pending"}
        for address, future in futures.items():
            if future in late:
                busy = f"no answer within {PROBE_TIMEOUT_S} s (busy, or not running tasks)"
                results[address] = {"store": busy, "database": busy}
                future.cancel()
                continue
            try:
                results[address] = future.result()
            except Exception as exc:  # the worker died or could not run the task
                failed = f"the probe task failed: {type(exc).__name__}: {exc}"
                results[address] = {"store": failed, "database": failed}
    finally:
        _remove_probes(store, client_key.rsplit("/", 1)[0])
    return results


def _remove_probes(store: Any, folder: str) -> None:
    """Remove this check's keys, and on a local store the folders they leave behind."""
    if store.exists(folder):
        store.fs.rm(store.uri(folder), recursive=True)
    if store.is_local and store.exists(PROBE_PREFIX) and not store.fs.ls(store.uri(PROBE_PREFIX)):
        store.fs.rmdir(store.uri(PROBE_PREFIX))


def probe_worker(
    store_url: str, client_key: str, secret: bytes, database_url: str | None
) -> dict[str, str]:
    """On a worker: "ok" or what went wrong, for the store and for the database."""
    return {
        "store": _probe_store(store_url, client_key, secret),
        "database": _probe_database(database_url),
    }


def _probe_store(store_url: str, client_key: str, secret: bytes) -> str:
    """Read the client's key, then write, read back and remove a key of this worker's own."""
    from crystaldb.platform.store import ArtifactStore

    try:
        store = ArtifactStore(store_url)
        if not store.exists(client_key):
            where = "a folder on this worker's host" if store.is_local else store_url
            return (
                f"cannot see the client's probe at {store.uri(client_key)}: {where} is not the"
                " store the client uses (set CRYSTALDB_STORE_URL to a shared mount or an"
                " object store)"
            )
        if store.get_bytes(client_key) != secret:
            return f"{store.uri(client_key)} holds other bytes than the client wrote"
        own = client_key.rsplit("/", 1)[0] + f"/worker-{uuid.uuid4().hex[:8]}"
        payload = uuid.uuid4().hex.encode()
        store.put_bytes(own, payload)
        try:
            if store.get_bytes(own) != payload:
                return f"{store.uri(own)}: read back other bytes than written"
        finally:
            store.remove(own)
    except Exception as exc:  # any failure is the answer: it is shown, not raised
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _probe_database(conninfo: str | None) -> str:
    """Open one connection to the database and ask it for its version."""
    if conninfo is None:
        return "not checked (no database URL given)"
    import psycopg

    try:
        with psycopg.connect(conninfo, connect_timeout=5, application_name="crystaldb-probe") as c:
            row = c.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        text = " ".join(str(exc).split())
        return f"cannot connect: {text}"
    return f"ok (PostgreSQL {row[0] if row else '?'})"


def _conninfo(url: URL) -> str:
    """A SQLAlchemy URL as the libpq URL psycopg takes on the workers."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


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
