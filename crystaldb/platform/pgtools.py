"""PostgreSQL's client programs (psql, pg_dump, pg_restore) that match the server in use.

pg_dump refuses a server newer than itself and pg_restore cannot read the archives of a
newer pg_dump, so `crystaldb db dump` and `restore` run the programs of the server's own
major version: CRYSTALDB_PG_BINDIR when set, else Debian's /usr/lib/postgresql/N/bin, the
embedded server's (pgserver ships its programs beside the server), then PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from crystaldb.core.errors import CrystaldbError
from crystaldb.platform.database import Database

DEBIAN_BINDIR = "/usr/lib/postgresql/{major}/bin"


class ClientProgramError(CrystaldbError):
    """psql, pg_dump or pg_restore is missing, or is not of the server's major version."""


@dataclass(frozen=True)
class ClientProgram:
    """One client program: where it is and the PostgreSQL version it belongs to."""

    path: Path
    version: str
    major: int


def server_major(db: Database) -> int:
    """The server's major version (15 for 15.20), from server_version_num."""
    with db.engine.connect() as conn:
        return int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000


def find_program(
    name: str, major: int, bindir: Path | None = None, exact: bool = True
) -> ClientProgram:
    """The first `name` of PostgreSQL `major` among the candidates; a clear error otherwise.

    With `exact=False` (psql, which talks to any recent server) any found program does when
    none of the server's version is there.
    """
    found = [p for p in map(_inspect, _candidates(name, major, bindir)) if p is not None]
    for program in found:
        if program.major == major:
            return program
    where = f"CRYSTALDB_PG_BINDIR={bindir}" if bindir else _searched(name, major)
    install = (
        f"install PostgreSQL {major}'s client programs (Debian: apt-get install"
        f" postgresql-client-{major}) or point CRYSTALDB_PG_BINDIR at their folder"
    )
    if not found:
        raise ClientProgramError(f"{name} not found ({where}): {install}")
    if not exact:
        return found[0]
    other = found[0]
    raise ClientProgramError(
        f"{name} at {other.path} is PostgreSQL {other.version}, but the server runs PostgreSQL"
        f" {major}: {name} must be of the server's major version; {install}"
    )


def _candidates(name: str, major: int, bindir: Path | None) -> list[Path]:
    """Where to look, in order, without duplicates."""
    if bindir is not None:
        return [bindir / name]
    paths = [Path(DEBIAN_BINDIR.format(major=major)) / name, _embedded_bindir() / name]
    on_path = shutil.which(name)
    if on_path:
        paths.append(Path(on_path))
    unique: list[Path] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def _searched(name: str, major: int) -> str:
    """The places looked at, for the message."""
    return "looked in " + ", ".join(
        [DEBIAN_BINDIR.format(major=major), str(_embedded_bindir()), "PATH"]
    )


def _embedded_bindir() -> Path:
    """pgserver's own programs, of the embedded server's version."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return Path("/nonexistent")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _inspect(path: Path) -> ClientProgram | None:
    """Run `path --version`; None when it is not there or not a PostgreSQL program."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        return None
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)(\.\d+)?", out)
    if match is None:
        return None
    return ClientProgram(path, match.group(1) + (match.group(2) or ""), int(match.group(1)))


def libpq_url(url: URL, show_password: bool = False) -> str:
    """The URL as libpq (psql, pg_dump) reads it: postgresql://user@host:port/db?host=..."""
    return url.set(drivername="postgresql").render_as_string(hide_password=not show_password)


def libpq_args(url: URL) -> tuple[str, dict[str, str]]:
    """A conninfo without the password, and an environment carrying it in PGPASSWORD.

    The password stays out of the command line, where any user of the machine can read it.
    """
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return libpq_url(url.set(password=None), show_password=False), env
