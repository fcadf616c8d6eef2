"""matbench: a release as matminer/matbench store datasets, with its metadata and folds.

``<name>.json.gz`` holds a pandas "split" frame (index, columns, data) of pymatgen Structure
dicts and the target; ``metadata.json`` and ``folds.json`` say what the target is and which
split each row belongs to. Every member needs a label. pymatgen writes deuterium as H, so the
natural elements only are written.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from pymatgen.core import Lattice, Structure

from crystaldb.core.release_data import Member, ReleaseData
from crystaldb.formats.members import dumps, frac_of, label_of, lattice_of, numbers_of

METADATA = "metadata.json"
FOLDS = "folds.json"


def write_matbench(data: ReleaseData, folder: Path) -> None:
    """<name>.json.gz (pandas 'split' frame, as matminer stores datasets), metadata, folds."""
    target = data.label_property or "label"
    values = [label_of(data, m, "matbench", required=True) for m in data.members]
    name = f"{_safe_name(data.name)}.json"
    with (
        (folder / f"{name}.gz").open("wb") as raw,
        gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=0, compresslevel=6) as packed,
        io.TextIOWrapper(packed, encoding="utf-8", newline="\n") as handle,
    ):
        handle.write('{"index": ')
        json.dump([int(m.position) for m in data.members], handle)
        handle.write(", " + f'"columns": {json.dumps(["structure", target])}, "data": [')
        for i, (member, value) in enumerate(zip(data.members, values, strict=True)):
            row = [_structure(member).as_dict(), value]
            handle.write((", " if i else "") + json.dumps(row, allow_nan=False))
        handle.write("]}")
    (folder / METADATA).write_text(dumps(_metadata(data, target, values)), encoding="utf-8")
    (folder / FOLDS).write_text(dumps(_folds(data)), encoding="utf-8")


def _safe_name(name: str) -> str:
    """A release name usable as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "release"


def _structure(member: Member) -> Structure:
    """The member as a pymatgen Structure (fractional coordinates as stored)."""
    return Structure(Lattice(lattice_of(member)), numbers_of(member).tolist(), frac_of(member))


def _metadata(data: ReleaseData, target: str, values: list[float | None]) -> dict[str, Any]:
    """matbench-style metadata: n_samples, target, unit and the target's mean absolute deviation."""
    numbers = [v for v in values if v is not None]
    mean = math.fsum(numbers) / len(numbers)
    mad = math.fsum(abs(v - mean) for v in numbers) / len(numbers)
    return {
        "n_samples": len(numbers),
        "target": target,
        "unit": data.label_unit,
        "mad": mad,
        "task_type": "regression",
        "input_type": "structure",
        "columns": {
            "structure": "pymatgen Structure (Structure.as_dict()) of the crystal",
            target: f"target: {target} in {data.label_unit}",
        },
        "release": {"name": data.name, "version": data.version},
        "label_method": data.label_method,
    }


def _folds(data: ReleaseData) -> dict[str, Any]:
    """The split of each row (index = member position) and the rows of each split."""
    splits: dict[str, list[int]] = {}
    for member in data.members:
        splits.setdefault(member.split, []).append(int(member.position))
    return {
        "split_spec": data.split_spec,
        "index": [int(m.position) for m in data.members],
        "assignment": [m.split for m in data.members],
        "splits": splits,
    }
