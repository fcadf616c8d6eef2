"""manifest.json: what an export folder holds and where it came from, checksummed, no timestamp.

Every export folder carries one. It records the release (name, version, the query and split
spec it was made from), the members' structure ids per split in release order, the label
(property, unit, method, summary statistics), the sha256 and size of every other file of the
folder, the crystaldb version and the database identity. It has no export time on purpose:
exporting the same release twice gives byte-identical folders, so a checksum of the manifest
identifies the export.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from crystaldb.core.release_data import (
    ReleaseData,
    label_statistics,
    labels_of,
    split_structure_ids,
)
from crystaldb.formats.members import dumps

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def file_digest(path: Path) -> dict[str, int | str]:
    """sha256 and size of one file, streamed so large exports need no memory."""
    with path.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"sha256": sha256, "size": path.stat().st_size}


def folder_digests(folder: Path) -> dict[str, dict[str, int | str]]:
    """Checksums of every file under `folder` but the manifest, keyed by relative POSIX path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        p.relative_to(folder).as_posix(): file_digest(p)
        for p in files
        if p.relative_to(folder).as_posix() != MANIFEST
    }


def build_manifest(data: ReleaseData, fmt: str, folder: Path) -> dict[str, Any]:
    """The manifest of an export folder whose other files are all written."""
    splits = split_structure_ids(data)
    stats = label_statistics(labels_of(data))
    return {
        "manifest_version": MANIFEST_VERSION,
        "format": fmt,
        "release": {"name": data.name, "version": data.version},
        "query": data.query,
        "split_spec": data.split_spec,
        "members": len(data.members),
        "split_counts": {name: len(ids) for name, ids in splits.items()},
        "splits": splits,
        "label": {
            "property": data.label_property,
            "unit": data.label_unit,
            "method": data.label_method,
            "statistics": stats.as_dict() if stats else None,
        },
        "files": folder_digests(folder),
        "crystaldb_version": data.crystaldb_version,
        "database": data.database_identity,
    }


def write_manifest(data: ReleaseData, fmt: str, folder: Path) -> Path:
    """Write manifest.json last, once every file it checksums is complete."""
    path = folder / MANIFEST
    path.write_text(dumps(build_manifest(data, fmt, folder)), encoding="utf-8")
    return path
