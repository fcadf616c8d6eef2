"""Serve the API with uvicorn: in this process, or in N worker processes on one port.

One process runs Python on one core at a time (the GIL), so `serve(db, workers=N)` with N > 1
hands the port to uvicorn's process manager: the parent binds it, spawns N workers that each
build the app with `app_from_environment` (their own Database, so their own connection pool),
restarts a worker that dies, and on Ctrl-C or SIGTERM stops them all. Nothing the workers
share lives in memory: API tokens are checked in the database on every request, and each
worker's caches hold only immutable things (parsed documents, compiled filters, weights).
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import ENV_PREFIX, Settings, load_settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

FACTORY = "crystaldb.api.server:app_from_environment"
DATABASE_URL_ENV = f"{ENV_PREFIX}DATABASE_URL"
# A new worker imports crystaldb (2-3 s, more on a busy machine) before it answers the
# supervisor's first health ping, and loads the API (6-8 s) before a SIGHUP restart counts it
# ready: uvicorn's 5 s would respawn it in a loop. A hung worker is found within this time.
WORKER_HEALTHCHECK_S = 30


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as taskset or a container sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def describe(workers: int) -> str:
    """Who serves the API, for the line printed at start."""
    return "1 process" if workers == 1 else f"{workers} worker processes"


def app_from_environment() -> Starlette:
    """One worker's app, built by uvicorn in each worker: its own Database and pool.

    The settings come from the environment the worker inherited, where `serve` put the URL
    of the database it checked (for the embedded server: the running one, which the parent
    started and stops, so a worker never starts or stops PostgreSQL itself).
    """
    settings = load_settings()
    return _create_app(connect(settings), settings)


def _create_app(db: Database, settings: Settings | None = None) -> Starlette:
    """The API, imported only where requests are served: its imports (the schema, torch,
    pymatgen) take 360 MB and seconds, which the supervisor of the workers does without."""
    from crystaldb.api.app import create_app

    return create_app(db, settings)


def serve(db: Database, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run until Ctrl-C or SIGTERM; GraphiQL is at http://host:port/graphql.

    uvicorn shuts down gracefully and then re-raises the signal it caught. SIGTERM's default
    action would end the process without running its exit handlers, and those stop the
    embedded PostgreSQL, so SIGTERM is made an interrupt here, like Ctrl-C. With workers,
    uvicorn's supervisor takes both signals over, stops the workers and returns: the exit
    handlers run then too, after every worker has gone.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if workers == 1:
            uvicorn.run(_create_app(db), host=host, port=port, log_level="info")
        else:
            _serve_workers(db, host, port, workers)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_workers(db: Database, host: str, port: int, workers: int) -> None:
    """uvicorn's process manager over the app factory, on the database this process checked."""
    os.environ[DATABASE_URL_ENV] = db.url.render_as_string(hide_password=False)
    db.dispose()  # the parent serves no request: its pooled connections would sit idle
    uvicorn.run(
        FACTORY,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: an exception unwinds, so the exit handlers run."""
    raise KeyboardInterrupt
