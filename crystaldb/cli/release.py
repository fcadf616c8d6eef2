"""`crystaldb release`: create, export, list and compare immutable dataset releases."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from crystaldb.cli.common import console, current_database
from crystaldb.core.release_data import ReleaseData
from crystaldb.formats.chemiscope import KernelMap
from crystaldb.jobs.embeddings import covering_embedding, find_embedding, load_map
from crystaldb.platform.database import Database
from crystaldb.query.selection import find_release
from crystaldb.release.create import create_release, list_releases, member_counts
from crystaldb.release.export import MAP_WRITERS, ExportError, export_release
from crystaldb.release.load import diff_releases, load_release
from crystaldb.schema.releases import ReleaseRef

app = typer.Typer(
    help="Versioned, immutable dataset releases: create, export, list, show, diff.",
    no_args_is_help=True,
)


def release_ref(text: str, version: str | None = None) -> tuple[str, str | None]:
    """NAME or NAME:VERSION (an explicit --version wins)."""
    ref = ReleaseRef.parse(text)
    return ref.name, version or ref.version


@app.command("create")
def release_create(
    name: str = typer.Argument(..., help="Release name, e.g. omdb-gap1 (no ':')."),
    version: str = typer.Option(..., "--version", help="Version; name+version is never reused."),
    where: str | None = typer.Option(
        None,
        "--where",
        help=(
            'Filter, e.g. "elements has all C, H and nsites <= 208"'
            " (the fields: `crystaldb filters`)."
        ),
    ),
    label: str | None = typer.Option(
        None, "--label", help="Freeze this label, PROPERTY:FUNCTIONAL, e.g. band_gap:PBE."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="ordered:N,M | random:F,F,F:SEED | kfold:K:SEED | group-by:FIELD[:F,F,F[:SEED]]",
    ),
    description: str | None = typer.Option(None, "--description", help="Free text."),
) -> None:
    """Freeze the structures a filter selects (and their labels) as an immutable release."""
    db = current_database()
    release_id = create_release(
        db, name, version, where=where, label=label, split=split, description=description
    )
    counts = member_counts(db, release_id)
    total = sum(counts.values())
    parts = ", ".join(f"{n} {split_name}" for split_name, n in counts.items())
    console.print(f"release {name} {version} (id {release_id}): {total} members ({parts})")


@app.command("export")
def release_export(
    name: str = typer.Argument(..., help="NAME or NAME:VERSION (default: the newest version)."),
    fmt: str = typer.Option(
        "omdb-gap1",
        "--format",
        help="omdb-gap1 | extxyz | matbench | optimade-jsonl | parquet | chemiscope",
    ),
    out: Path = typer.Option(..., "--out", help="A folder that does not exist or is empty."),
    version: str | None = typer.Option(None, "--version", help="Version to export."),
    embedding: int | None = typer.Option(
        None,
        "--embedding",
        help="chemiscope: the stored map to draw (default: the newest covering the release).",
    ),
) -> None:
    """Write a release to a folder, with manifest.json and plots; same release, same bytes."""
    db = current_database()
    release = find_release(db, *release_ref(name, version), origin="NAME")
    with console.status(f"Exporting {release.name} {release.version} as {fmt}..."):
        data = load_release(db, release)
        kernel_map = release_map(db, data, embedding) if fmt in MAP_WRITERS else None
        files = export_release(data, fmt, out, kernel_map)
    if kernel_map is not None:
        console.print(
            f"kernel map: embedding {kernel_map.embedding_id} ({kernel_map.coordinates} of"
            f" kernel {kernel_map.kernel_id}), coloured by {', '.join(kernel_map.columns)}",
            soft_wrap=True,
        )
    console.print(f"wrote {len(files)} files to {out}:")
    for path in files:
        console.print(f"  {path.name:<32}{path.stat().st_size:>12,} bytes")


def release_map(db: Database, data: ReleaseData, embedding_id: int | None) -> KernelMap:
    """The stored kernel map to draw the release on: --embedding's, else the newest that
    covers every member; an error saying how to make one otherwise."""
    ids = [int(m.structure_id) for m in data.members]
    if embedding_id is not None:
        found = find_embedding(db, embedding_id)
        if found is None:
            raise ExportError(
                f"--embedding {embedding_id}: no such embedding (`crystaldb kernel"
                " embed` stores one; /map lists them)"
            )
        return load_map(db, found)
    found = covering_embedding(db, ids)
    if found is None:
        raise ExportError(
            f"--format chemiscope: no stored kernel map covers the {len(ids)} members of release"
            f" {data.name} {data.version}: `crystaldb kernel build --release"
            f" {data.name}:{data.version}`, then `crystaldb kernel embed --kernel ID`"
        )
    return load_map(db, found)


@app.command("list")
def release_list() -> None:
    """Every release with its version, size and split."""
    db = current_database()
    table = Table("name", "version", "members", "split", "label", "where", "created")
    for release in list_releases(db):
        counts = member_counts(db, release.id)
        table.add_row(
            release.name,
            release.version,
            str(sum(counts.values())),
            release.split_spec or "-",
            ":".join(release.label_spec.values()) or "-",
            release.query or "-",
            f"{release.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@app.command("diff")
def release_diff(
    a: str = typer.Argument(..., help="NAME:VERSION of the older release."),
    b: str = typer.Argument(..., help="NAME:VERSION of the newer release."),
) -> None:
    """What B added, removed, relabelled and moved between splits, relative to A."""
    db = current_database()
    old = find_release(db, *release_ref(a), origin="A")
    new = find_release(db, *release_ref(b), origin="B")
    diff = diff_releases(db, old, new)
    console.print(
        f"{old.name} {old.version} -> {new.name} {new.version}: {len(diff.added)} added, "
        f"{len(diff.removed)} removed, {len(diff.relabelled)} relabelled, "
        f"{len(diff.moved)} moved between splits"
    )
    for title, rows in (("added", diff.added), ("removed", diff.removed)):
        if rows:
            console.print(
                f"{title}: structures {', '.join(map(str, rows[:20]))}"
                + (" ..." if len(rows) > 20 else "")
            )
    for sid, before, after in diff.relabelled[:20]:
        console.print(f"relabelled: structure {sid}: {before} -> {after}")
    for sid, before_split, after_split in diff.moved[:20]:
        console.print(f"moved: structure {sid}: {before_split} -> {after_split}")
