"""Backups: the database through pg_dump, with the artifact store's manifest, in one file.

A dump is an uncompressed tar archive (pg_dump's custom format is compressed already):

- `crystaldb-dump.json`: the manifest: versions, the schema revision, the sha256 of the
  database dump, and every artifact the database points to (table, row, URI, key in the
  store, checksum) with whether it was there when dumped;
- `database.pgdump`: `pg_dump --format=custom` of the whole database;
- `store/...`: with `with_store`, every file of the artifact store, each sha256 listed in
  the manifest.

`restore` fills only a new, empty database (pg_restore in one transaction), puts the store's
files back into the configured store when the dump has them, and then points the rows at
them if the store moved. `tar xf FILE database.pgdump` gives a plain pg_restore archive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text

import crystaldb
from crystaldb.core.errors import CrystaldbError
from crystaldb.platform.database import Database
from crystaldb.platform.pgtools import find_program, libpq_args, server_major
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore, uri_exists
from crystaldb.schema import migrate

MANIFEST = "crystaldb-dump.json"
DATABASE = "database.pgdump"
STORE = "store"
FORMAT = "crystaldb-dump"
FORMAT_VERSION = 1
CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]


class BackupError(CrystaldbError):
    """A dump or restore that cannot go on; the message names the file or database."""


@dataclass
class Artifact:
    """One stored file or array a database row points to."""

    table: str
    id: int
    column: str
    uri: str
    key: str | None
    checksum: str | None
    checksum_column: str | None
    exists: bool


@dataclass
class DumpSummary:
    """What `crystaldb db dump` wrote."""

    path: Path
    bytes: int
    schema: str | None
    artifacts: int
    missing: list[str]
    store_files: int
    pg_dump: str


@dataclass
class RestoreSummary:
    """What `crystaldb db restore` did."""

    schema: str | None
    schema_head: str
    artifacts: int
    missing: list[str]
    store_files: int
    rewritten: int
    store_from: str
    store_to: str
    pg_restore: str
    skipped: list[str] = field(default_factory=list)


# --- the manifest of artifacts ---


def artifact_columns(db: Database) -> list[tuple[str, str, str | None]]:
    """(table, URI column, checksum column) for every column that records an artifact's URI.

    Found by name so that a table added later is covered: a column ending in `uri`, and its
    checksum in `checksum` or `<prefix>_sha256` of the same table.
    """
    query = text(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(str(table), []).append(str(column))
    found = []
    for table, columns in tables.items():
        if "id" not in columns:
            continue
        for column in columns:
            if not column.endswith("uri"):
                continue
            prefix = column.removesuffix("uri").removesuffix("_")
            checksum = next(
                (c for c in (f"{prefix}_sha256", "checksum") if c in columns and prefix), None
            )
            found.append((table, column, checksum))
    return found


def list_artifacts(db: Database, store_root: str) -> list[Artifact]:
    """Every artifact URI on a row, with its key under the store and whether it is there."""
    artifacts = []
    with db.engine.connect() as conn:
        for table, column, checksum in artifact_columns(db):
            digest = f', "{checksum}"' if checksum else ", NULL"
            rows = conn.execute(
                text(
                    f'SELECT id, "{column}"{digest} FROM "{table}"'
                    f' WHERE "{column}" IS NOT NULL ORDER BY id'
                )
            ).all()
            for row_id, uri, value in rows:
                prefix = store_root.rstrip("/") + "/"
                key = uri[len(prefix) :] if uri.startswith(prefix) else None
                artifacts.append(
                    Artifact(table, int(row_id), column, uri, key, value, checksum, uri_exists(uri))
                )
    return artifacts


# --- dump ---


def dump(
    db: Database,
    settings: Settings,
    path: Path,
    with_store: bool = False,
    on_progress: Progress | None = None,
) -> DumpSummary:
    """Write the database, the manifest and optionally the store's files to `path`.

    Written beside `path` and renamed at the end, so a failed dump leaves no partial file.
    """
    program = find_program("pg_dump", server_major(db), settings.pg_bindir)
    store = ArtifactStore(settings.store_location)
    state = migrate.status(db)
    artifacts = list_artifacts(db, store.root_uri)
    partial = path.with_name(path.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="crystaldb-dump-", dir=path.parent) as tmp:
        database = Path(tmp) / DATABASE
        conninfo, env = libpq_args(db.url)
        _run(
            [str(program.path), "--format=custom", f"--file={database}", conninfo],
            env,
            f"pg_dump of {db.safe_url}",
        )
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "crystaldb_version": crystaldb.__version__,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "database": {
                "url": db.safe_url,
                "server_version": db.server_version(),
                "schema": state.current,
            },
            "pg_dump": {"path": str(program.path), "version": program.version},
            "dump": {
                "file": DATABASE,
                "bytes": database.stat().st_size,
                "sha256": _sha256_file(database),
            },
            "store": {"url": store.root_uri, "included": with_store, "files": {}},
            "artifacts": [vars(a) for a in artifacts],
        }
        files = _store_files(store) if with_store else []
        try:
            with tarfile.open(partial, "w") as archive:
                staged = Path(tmp) / "store-files"
                staged.mkdir()
                for index, relative in enumerate(files):
                    local = staged / relative
                    local.parent.mkdir(parents=True, exist_ok=True)
                    store.fs.get(store.uri(relative), str(local))
                    manifest["store"]["files"][relative] = _sha256_file(local)
                    if on_progress:
                        on_progress("store files", index + 1, len(files))
                _add_bytes(archive, MANIFEST, json.dumps(manifest, indent=2).encode())
                archive.add(database, arcname=DATABASE)
                for relative in files:
                    archive.add(staged / relative, arcname=f"{STORE}/{relative}")
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    return DumpSummary(
        path=path,
        bytes=path.stat().st_size,
        schema=state.current,
        artifacts=len(artifacts),
        missing=[a.uri for a in artifacts if not a.exists],
        store_files=len(files),
        pg_dump=f"{program.path} ({program.version})",
    )


def _store_files(store: ArtifactStore) -> list[str]:
    """Every file under the store's root, as keys (relative paths), sorted."""
    if not store.fs.exists(store.root):
        return []
    root = store.root.rstrip("/") + "/"
    found = sorted(str(p) for p in store.fs.find(store.root))
    return [p[len(root) :] for p in found if p.startswith(root)]


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a member from memory."""
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    archive.addfile(info, io.BytesIO(data))


# --- restore ---


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a dump file, or an error naming the file and what is wrong with it."""
    if not path.exists():
        raise BackupError(f"{path}: no such file")
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    try:
        with tarfile.open(path, "r:") as archive:
            member = archive.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest = json.loads(member.read())
    except KeyError:
        raise BackupError(f"{path} is not a crystaldb dump: it has no {MANIFEST}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(
            f"{path} is not a crystaldb dump, or is damaged (not a readable tar archive:"
            f" {' '.join(str(exc).split())})"
        ) from None
    except ValueError as exc:
        raise BackupError(f"{path}: {MANIFEST} is damaged ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: {MANIFEST} is not a crystaldb dump manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{path}: dump format {manifest.get('format_version')} is not the"
            f" {FORMAT_VERSION} this crystaldb reads"
        )
    return manifest


def check_empty(db: Database) -> None:
    """Refuse a database that holds any table, view or sequence of its own."""
    query = text(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
        " ORDER BY 1"
    )
    with db.engine.connect() as conn:
        names = [str(n) for n in conn.execute(query).scalars()]
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise BackupError(
            f"{db.safe_url} is not empty ({len(names)} tables and other relations: {shown}):"
            " `crystaldb db restore` fills only a new, empty database (createdb NAME, then"
            " point CRYSTALDB_DATABASE_URL at it); nothing was changed"
        )


def restore(
    db: Database, settings: Settings, path: Path, on_progress: Progress | None = None
) -> RestoreSummary:
    """Restore a dump into the (empty) database in use, and its store files if it has them."""
    manifest = read_manifest(path)
    check_empty(db)
    program = find_program("pg_restore", server_major(db), settings.pg_bindir)
    store = ArtifactStore(settings.store_location)
    with tempfile.TemporaryDirectory(prefix="crystaldb-restore-") as tmp:
        database = Path(tmp) / DATABASE
        with _open_archive(path) as archive:
            _extract(archive, path, DATABASE, database)
            expected = manifest["dump"]["sha256"]
            if _sha256_file(database) != expected:
                raise BackupError(
                    f"{path} is damaged: its {DATABASE} does not have the sha256 the manifest"
                    f" records ({expected[:12]}...); nothing was changed"
                )
            files: dict[str, str] = manifest["store"].get("files", {})
            staged = Path(tmp) / "store-files"
            for relative, digest in files.items():  # all checked before anything is written
                local = staged / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                _extract(archive, path, f"{STORE}/{relative}", local)
                if _sha256_file(local) != digest:
                    raise BackupError(
                        f"{path} is damaged: {STORE}/{relative} does not have the sha256 the"
                        " manifest records; nothing was changed"
                    )
        conninfo, env = libpq_args(db.url)
        _run(
            [
                str(program.path),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--dbname={conninfo}",
                str(database),
            ],
            env,
            f"pg_restore of {path} into {db.safe_url}",
        )
        skipped = []
        for index, relative in enumerate(files):
            if store.exists(relative):  # the same store, or files already put back
                skipped.append(relative)
            else:
                store.put_bytes(relative, (staged / relative).read_bytes())
            if on_progress:
                on_progress("store files", index + 1, len(files))
    old_root = str(manifest["store"]["url"])
    rewritten = 0
    if files and old_root != store.root_uri:
        rewritten = _move_uris(db, old_root, store.root_uri)
    state = migrate.status(db)
    artifacts = list_artifacts(db, store.root_uri)
    return RestoreSummary(
        schema=state.current,
        schema_head=state.head,
        artifacts=len(artifacts),
        missing=[a.uri for a in artifacts if not a.exists],
        store_files=len(files),
        rewritten=rewritten,
        store_from=old_root,
        store_to=store.root_uri,
        pg_restore=f"{program.path} ({program.version})",
        skipped=skipped,
    )


def _move_uris(db: Database, old_root: str, new_root: str) -> int:
    """Point every artifact URI under the dumped store's root at the store they were put in."""
    old, new = old_root.rstrip("/") + "/", new_root.rstrip("/") + "/"
    changed = 0
    with db.engine.begin() as conn:
        for table, column, _ in artifact_columns(db):
            result = conn.execute(
                text(
                    f'UPDATE "{table}" SET "{column}" = :new || substr("{column}", :start)'
                    f' WHERE starts_with("{column}", :old)'
                ),
                {"new": new, "old": old, "start": len(old) + 1},
            )
            changed += result.rowcount
    return changed


@contextmanager
def _open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """The dump's tar archive, read errors naming the file."""
    try:
        with tarfile.open(path, "r:") as archive:
            yield archive
    except (tarfile.TarError, EOFError) as exc:
        raise BackupError(f"{path} is damaged ({exc}); nothing was changed") from None


def _extract(archive: tarfile.TarFile, path: Path, name: str, target: Path) -> None:
    """Copy one member out to `target`, or say the dump lacks it or is cut short."""
    try:
        member = archive.extractfile(name)
    except KeyError:
        raise BackupError(f"{path} is damaged: it has no {name}; nothing was changed") from None
    if member is None:
        raise BackupError(f"{path} is damaged: {name} is not a file; nothing was changed")
    try:
        with target.open("wb") as out:
            _copy(member, out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(
            f"{path} is damaged: {name} cannot be read ({exc}); nothing was changed"
        ) from None


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    """Copy in chunks (a dump can be larger than memory)."""
    while chunk := source.read(CHUNK):
        target.write(chunk)


def _sha256_file(path: Path) -> str:
    """A file's sha256, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    """Run pg_dump or pg_restore; their own message on failure."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [ln.strip() for ln in result.stderr.strip().splitlines() if ln.strip()]
        detail = " / ".join(lines[-3:]) or f"exit status {result.returncode}"
        raise BackupError(f"{what} failed: {detail}")
