"""`crystaldb db` and `crystaldb status` against real databases, good and bad."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from alembic.script import ScriptDirectory

from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import train_krr
from crystaldb.jobs.load import write_chunk
from crystaldb.query.selection import select_structures
from crystaldb.release.create import create_release
from crystaldb.schema.migrate import MIGRATIONS
from crystaldb.schema.tokens import create_token
from tests.cli.helpers import free_port, fresh_env, spawn, wait_for_health
from tests.conftest import DatabaseFactory, run_cli
from tests.jarvis import OPTB88, jarvis_records
from tests.jobs.test_kernels import SMALL
from tests.realdata import SAMPLE
from tests.sampledb import open_batch


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/test", "is not a PostgreSQL URL"),
        ("postgresql://postgres@127.0.0.1:{port}/crystaldb", "Connection refused"),
        ("postgresql://postgres@localhost", "names no database"),
    ],
)
def test_bad_database_url_is_one_clear_line_not_a_traceback(url: str, expected: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("status", env={"CRYSTALDB_DATABASE_URL": url.format(port=port)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "CRYSTALDB_DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_db_upgrade_then_status(databases: DatabaseFactory, tmp_path: Path) -> None:
    env = fresh_env(databases, tmp_path)
    pending = run_cli("db", "status", "--check", env=env)
    assert pending.returncode == 1
    assert "pending" in pending.stdout and "crystaldb db upgrade" in pending.stdout

    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert f"schema upgraded empty -> {head}" in upgraded.stdout
    again = run_cli("db", "upgrade", env=env)
    assert f"schema already at {head}" in again.stdout

    report = json.loads(run_cli("status", "--json", env=env).stdout)
    assert report["database"]["schema"] == report["database"]["schema_head"] == head
    assert report["database"]["embedded"] is False
    assert report["counts"]["structures"] == 0
    assert report["cluster"] == {
        "kind": "local",
        "workers": 2,
        "threads_per_worker": 1,
        "state": "started on demand",
    }
    assert report["store"]["url"] == str(tmp_path / "store")

    down = run_cli("db", "downgrade", "base", "--yes", env=env)
    assert down.returncode == 0 and "base (empty)" in down.stdout
    assert run_cli("db", "status", "--check", env=env).returncode == 1


def test_status_on_an_unmigrated_database_says_what_to_run(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = fresh_env(databases, tmp_path)
    result = run_cli("status", env=env)
    assert result.returncode == 0, result.stderr
    assert "run `crystaldb db upgrade`" in result.stdout


# --- psql, the URL, dump and restore ---


def test_db_url_libpq_and_psql_on_a_server(databases: DatabaseFactory, tmp_path: Path) -> None:
    env = fresh_env(databases, tmp_path)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    url = run_cli("db", "url", "--libpq", env=env)
    assert url.returncode == 0, url.stderr
    assert url.stdout.strip() == env["CRYSTALDB_DATABASE_URL"].replace("+psycopg", "")
    psql = run_cli("db", "psql", "-At", "-c", "SELECT count(*) FROM alembic_version", env=env)
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.strip() == "1"
    failing = run_cli("db", "shell", "-v", "ON_ERROR_STOP=1", "-c", "SELECT nope", env=env)
    assert failing.returncode != 0 and 'column "nope" does not exist' in failing.stderr


@pytest.mark.embedded
@pytest.mark.slow
def test_psql_starts_the_embedded_server_for_the_session_only(tmp_path: Path) -> None:
    from crystaldb.platform.embedded import embedded_url, running_embedded_url, stop_embedded

    env = {"CRYSTALDB_DATA_DIR": str(tmp_path)}
    stopped = run_cli("db", "url", env=env)
    assert stopped.returncode == 1 and "is not running" in stopped.stderr
    assert "crystaldb db psql" in stopped.stderr

    psql = run_cli("db", "psql", "-At", "-c", "SELECT current_database()", env=env)
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.strip() == "crystaldb"
    assert running_embedded_url(tmp_path) is None, "psql's session left the server running"

    embedded_url(tmp_path)  # this process holds the server now: `db url` finds it
    try:
        url = run_cli("db", "url", "--libpq", env=env)
        assert url.returncode == 0, url.stderr
        assert url.stdout.startswith("postgresql://postgres@/crystaldb?host=")
        from crystaldb.platform.pgtools import find_program

        psql_program = find_program("psql", 16, exact=False)
        direct = subprocess.run(
            [str(psql_program.path), url.stdout.strip(), "-Atc", "SELECT 40 + 2"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert direct.stdout.strip() == "42", direct.stderr
    finally:
        stop_embedded(tmp_path)


def test_pg_programs_of_another_major_version_are_refused(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = fresh_env(databases, tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    missing = run_cli(
        "db", "dump", str(tmp_path / "x.dump"), env={**env, "CRYSTALDB_PG_BINDIR": str(bindir)}
    )
    assert missing.returncode == 2
    assert f"pg_dump not found (CRYSTALDB_PG_BINDIR={bindir})" in missing.stderr
    assert "postgresql-client-" in missing.stderr
    other = _other_major_bindir(databases)
    if other is None:
        pytest.skip("no PostgreSQL client programs of a second major version on this machine")
    dump = tmp_path / "x.dump"
    wrong = run_cli("db", "dump", str(dump), env={**env, "CRYSTALDB_PG_BINDIR": str(other)})
    assert wrong.returncode == 2
    assert "must be of the server's major version" in wrong.stderr
    assert not dump.exists()


def _other_major_bindir(databases: DatabaseFactory) -> Path | None:
    """A folder with a pg_dump of another major version than the test server's: pgserver's
    (16) against Debian's server (15), or the other way round."""
    from crystaldb.platform.pgtools import _embedded_bindir, _inspect

    conninfo = databases.server.set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    major = int(row[0]) // 10000 if row else 0
    for folder in [_embedded_bindir(), *sorted(Path("/usr/lib/postgresql").glob("*/bin"))]:
        program = _inspect(folder / "pg_dump")
        if program is not None and program.major != major:
            return folder
    return None


QUERY = """
query($id: ID!) {
  structures(first: 1000) { edges { node { id reducedFormula nsites } } }
  similar(id: $id, k: 5) { structure { id } kernel distance }
  models { name architecture metrics weightsSha256 weightsUri }
}"""
PREDICT = """
mutation($cif: String!) {
  predictBandGap(cif: $cif) { reducedFormula mean predictions { value model { name } } }
}"""


def _answers(env: dict[str, str], token: str, first_id: int) -> dict[str, Any]:
    """What a served platform answers: structures, a kernel neighbourhood, models, a prediction."""
    port = free_port()
    server = spawn(["serve", "--port", str(port), "--workers", "1"], env, capture=False)
    try:
        wait_for_health(port, server, 120)
        url = f"http://127.0.0.1:{port}/graphql"
        operator = {"Authorization": f"Bearer {token}"}  # a token sees the weights' URIs
        query = httpx.post(
            url, json={"query": QUERY, "variables": {"id": first_id}}, headers=operator, timeout=60
        )
        cif = (SAMPLE / "cod" / "1000039.cif").read_text()
        predicted = httpx.post(
            url,
            json={"query": PREDICT, "variables": {"cif": cif}},
            headers=operator,
            timeout=120,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "errors" not in query.json(), query.json()
    assert "errors" not in predicted.json(), predicted.json()
    return {**query.json()["data"], **predicted.json()["data"]}


@pytest.mark.slow
def test_a_restored_platform_serves_the_same_answers(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    """Dump with the store, restore into a new database and store, remove the original
    store, and serve: the same structures, kernel neighbours, models and predictions."""
    settings, db = databases.migrated("crystaldb_dump", tmp_path / "original")
    write_chunk(db, open_batch(db), jarvis_records(), labels=OPTB88)
    create_release(db, "jv", "1", label="band_gap:OptB88vdW", split="ordered:40,10")
    ids = list(select_structures(db, release="jv").structure_ids)
    kernel = build_kernel(db, settings, ids, hypers=SMALL, tile=32, workers=1)
    train_krr(db, settings, kernel.kernel_id, "jv", folds=5, name="krr-jv")
    token = create_token(db, "backup-test")
    db.dispose()
    original = {
        "CRYSTALDB_DATABASE_URL": settings.database_url or "",
        "CRYSTALDB_DATA_DIR": str(tmp_path / "original"),
    }
    before = _answers(original, token, ids[0])

    dump = tmp_path / "platform.dump"
    dumped = run_cli("db", "dump", str(dump), "--with-store", env=original)
    assert dumped.returncode == 0, dumped.stderr
    assert "manifest: 3 artifacts" in dumped.stdout  # descriptors, kernel, KRR weights
    with tarfile.open(dump) as archive:
        manifest = json.load(archive.extractfile("crystaldb-dump.json"))  # type: ignore[arg-type]
        names = archive.getnames()
    tables = sorted(a["table"] for a in manifest["artifacts"])
    assert tables == ["descriptor_sets", "kernel_matrices", "models"]
    assert all(a["exists"] and a["key"] and a["checksum"] for a in manifest["artifacts"])
    model = next(a for a in manifest["artifacts"] if a["table"] == "models")
    assert f"store/{model['key']}" in names
    assert set(manifest["store"]["files"]) == {n.removeprefix("store/") for n in names[2:]}

    restored = {
        "CRYSTALDB_DATABASE_URL": databases.create().render_as_string(hide_password=False),
        "CRYSTALDB_DATA_DIR": str(tmp_path / "restored"),
    }
    result = run_cli("db", "restore", str(dump), env=restored)
    assert result.returncode == 0, result.stderr
    assert "3 artifact URIs moved from" in result.stdout
    assert "manifest: 3 artifacts, 3 reachable" in result.stdout
    shutil.rmtree(tmp_path / "original" / "store")  # the restored platform needs none of it

    after = _answers(restored, token, ids[0])
    (weights,) = [row.pop("weightsUri") for row in after["models"]]
    assert weights.startswith(str(tmp_path / "restored" / "store") + "/models/")
    assert [row.pop("weightsUri") for row in before["models"]] == [model["uri"]]
    assert after == before
    assert len(after["structures"]["edges"]) == len(ids) and len(after["similar"]) == 5

    again = run_cli("db", "restore", str(dump), env=restored)
    assert again.returncode == 2
    assert "is not empty" in again.stderr and "nothing was changed" in again.stderr


@pytest.mark.slow
def test_restore_names_a_missing_or_damaged_dump(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = fresh_env(databases, tmp_path)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    dump = tmp_path / "good.dump"
    assert run_cli("db", "dump", str(dump), env=env).returncode == 0
    target = {**env, "CRYSTALDB_DATABASE_URL": databases.create().render_as_string(False)}

    missing = run_cli("db", "restore", str(tmp_path / "none.dump"), env=target)
    assert missing.returncode == 2 and f"{tmp_path / 'none.dump'}: no such file" in missing.stderr

    data = dump.read_bytes()
    cut = tmp_path / "cut.dump"
    cut.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped.dump"
    middle = len(data) // 2
    flipped.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    text = tmp_path / "notes.dump"
    text.write_text("not a dump\n")
    for path, message in (
        (cut, "is damaged"),
        (flipped, "is damaged"),
        (text, "is not a crystaldb dump"),
    ):
        result = run_cli("db", "restore", str(path), env=target)
        assert result.returncode == 2, (path, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], result.stderr
    status = run_cli("db", "status", env=target)
    assert "empty (no migrations applied)" in status.stdout  # nothing was restored

    exists = run_cli("db", "dump", str(dump), env=env)
    assert exists.returncode == 2 and "--force" in exists.stderr
