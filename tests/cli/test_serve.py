"""`crystaldb serve`: the API over real HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.cli.helpers import free_port, fresh_env, spawn, wait_for_health
from tests.conftest import DatabaseFactory, run_cli

pytestmark = pytest.mark.slow  # whole CLI sessions in child processes


def test_serve_answers_health_and_graphql_over_http(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRYSTALDB_")},
        **fresh_env(databases, tmp_path),
    }
    assert run_cli("db", "upgrade", env=env).returncode == 0
    port = free_port()
    server = spawn(["serve", "--port", str(port)], env, capture=False)
    try:
        assert wait_for_health(port, server, 60) == {"status": "ok", "database": "ok"}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ structures(filter: {nsites: {gte: 1}}) { totalCount } }"},
            timeout=10,
        ).json()
        assert answer == {"data": {"structures": {"totalCount": 0}}}
    finally:
        server.terminate()
        server.wait(timeout=30)
