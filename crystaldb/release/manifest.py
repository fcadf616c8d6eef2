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
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crystaldb.core.release_data import ReleaseData

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True, slots=True)
class LabelStatistics:
    """Summary of a release's labels, computed exactly so reruns give the same digits."""

    count: int
    mean: float
    median: float
    std: float  # population standard deviation
    minimum: float
    maximum: float
    zeros: int  # labels exactly 0.0 (metals, for band gaps)

    def as_dict(self) -> dict[str, float | int]:
        """Plain values for JSON."""
        return {
            "count": self.count,
            "mean": self.mean,
            "median": self.median,
            "std": self.std,
            "min": self.minimum,
            "max": self.maximum,
            "zeros": self.zeros,
        }


def labels_of(data: ReleaseData) -> list[float]:
    """The members' labels in release order, members without one left out."""
    return [float(m.label) for m in data.members if m.label is not None]


def label_statistics(labels: list[float]) -> LabelStatistics | None:
    """Mean, median, std, extremes and exact zeros; fsum so the result is platform-independent."""
    finite = [x for x in labels if math.isfinite(x)]
    if not finite:
        return None
    n = len(finite)
    ordered = sorted(finite)
    mean = math.fsum(finite) / n
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in finite) / n)
    zeros = sum(1 for x in finite if x == 0.0)
    return LabelStatistics(n, mean, median, std, ordered[0], ordered[-1], zeros)


def split_structure_ids(data: ReleaseData) -> dict[str, list[int]]:
    """Structure ids per split, each list in release order."""
    splits: dict[str, list[int]] = {}
    for member in data.members:
        splits.setdefault(member.split, []).append(int(member.structure_id))
    return splits


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


def dumps(document: Any) -> str:
    """The one JSON style of release metadata: sorted keys, indent 2, strict, newline at the end."""
    return json.dumps(document, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_manifest(data: ReleaseData, fmt: str, folder: Path) -> Path:
    """Write manifest.json last, once every file it checksums is complete."""
    path = folder / MANIFEST
    path.write_text(dumps(build_manifest(data, fmt, folder)), encoding="utf-8")
    return path
