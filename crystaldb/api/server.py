"""Serve the API with uvicorn."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn

from crystaldb.api.app import create_app
from crystaldb.platform.database import Database


def serve(db: Database, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run until Ctrl-C or SIGTERM; GraphiQL is at http://host:port/graphql.

    uvicorn shuts down gracefully and then re-raises the signal it caught. SIGTERM's default
    action would end the process without running its exit handlers, and those stop the
    embedded PostgreSQL, so SIGTERM is made an interrupt here, like Ctrl-C.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvicorn.run(create_app(db), host=host, port=port, log_level="info")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
