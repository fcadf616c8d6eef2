"""What the CLI tests share: a fresh database per test, and long-running commands as children."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import DatabaseFactory


def fresh_env(databases: DatabaseFactory, tmp_path: Path) -> dict[str, str]:
    """Settings for a child process: a new empty database and a private data directory."""
    url = databases.create().render_as_string(hide_password=False)
    return {"CRYSTALDB_DATABASE_URL": url, "CRYSTALDB_DATA_DIR": str(tmp_path)}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(args: list[str], env: dict[str, str], capture: bool) -> subprocess.Popen[str]:
    """A long-running crystaldb command (demo, serve) as a child process."""
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "crystaldb", *args], env=env, stdout=output, stderr=output, text=True
    )


def wait_for_health(port: int, process: subprocess.Popen[str], seconds: float) -> dict[str, str]:
    """Poll /health until the server answers (or the process dies, or time runs out)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return dict(httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json())
        except httpx.TransportError:
            assert process.poll() is None, "the server process exited"
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
