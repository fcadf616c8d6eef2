"""Serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from crystaldb.api.app import create_app
from crystaldb.platform.database import Database


def serve(db: Database, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run until interrupted; GraphiQL is at http://host:port/graphql."""
    uvicorn.run(create_app(db), host=host, port=port, log_level="info")
