"""Labels that come beside the structure files: a CSV of file name and value, or of computed labels.

JARVIS-style `id_prop.csv` tables (`POSCAR-JVASP-10.vasp,0.000000`) and similar: one row per
file, the file's name (not its path) then the value; a header row is allowed. The method that
computed the values (functional, code) is stated once for the whole table.

Computed labels (`crystaldb label export`, the shipped crystaldb/data/labels/ tables) carry
their method per row, with the structure's source and id in it (a COD id, a CURATED-COFs name,
or a file name and frame), its formula, size and fingerprint, and the calculation's
parameters as JSON.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.records import LabelSpec

SOURCE_PROPERTY = "label_table"  # the key the value travels under on a record


class LabelTableError(CrystaldbError):
    """A label table that cannot be read, named by file and line."""


@dataclass(frozen=True)
class LabelTable:
    """Values by file name, and how they were computed."""

    spec: LabelSpec
    values: dict[str, float]

    def for_names(self, names: list[str]) -> dict[str, float]:
        """The values of a chunk's files only, so each task carries only what it needs."""
        keys = (file_key(name) for name in names)
        return {key: self.values[key] for key in keys if key in self.values}


def file_key(name: str) -> str:
    """The file name a table row refers to: the last part of a path or archive member."""
    return PurePosixPath(name.replace("\\", "/").split("!")[-1]).name


def read_label_table(
    path: Path, method: str, unit: str = "eV", code: str = "unknown"
) -> LabelTable:
    """Read NAME,VALUE rows; `method` is PROPERTY:FUNCTIONAL, e.g. band_gap:OptB88vdW."""
    prop, sep, functional = method.partition(":")
    if not prop or not sep or not functional:
        raise LabelTableError(
            f"--label-method {method!r}: expected PROPERTY:FUNCTIONAL, e.g. band_gap:PBE"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelTableError(f"--labels {path}: cannot read it ({exc})") from None
    values: dict[str, float] = {}
    for line, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise LabelTableError(f"{path}:{line}: expected NAME,VALUE, got {','.join(row)!r}")
        name, raw = row[0].strip(), row[1].strip()
        try:
            value = float(raw)
        except ValueError:
            if line == 1:
                continue  # a header row
            raise LabelTableError(f"{path}:{line}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise LabelTableError(f"{path}:{line}: {raw!r} is not a finite number")
        if name in values:
            raise LabelTableError(f"{path}:{line}: {name} appears twice")
        values[name] = value
    if not values:
        raise LabelTableError(f"--labels {path}: no NAME,VALUE rows")
    spec = LabelSpec(SOURCE_PROPERTY, prop, unit, functional, code)
    return LabelTable(spec=spec, values=values)


# --- computed labels: one row per structure, keyed by where the structure came from --------

COMPUTED_COLUMNS = (
    "source",  # cod, curated-cofs, ... (an external id's database), or file
    "source_id",  # the id in that database, or FILE_NAME#FRAME for a file
    "reduced_formula",
    "nsites",
    "property",
    "value",
    "unit",
    "method",  # the calculation's functional, e.g. GFN1-xTB
    "code",
    "code_version",
    "parameters",  # JSON: hyperparameters, k-point sampling, SCF iterations, energy, ...
    "fingerprint",  # the structure's content fingerprint, a fallback key
)


@dataclass(frozen=True)
class ComputedLabel:
    """One label a crystaldb job computed, with enough to find its structure elsewhere."""

    source: str
    source_id: str
    reduced_formula: str
    nsites: int
    property: str
    value: float
    unit: str
    method: str
    code: str
    code_version: str
    parameters: dict[str, Any]
    fingerprint: str = ""


def write_computed_labels(path: Path, rows: Sequence[ComputedLabel]) -> None:
    """A CSV with a header row; values written exactly (repr), parameters as compact JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COMPUTED_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.source,
                    row.source_id,
                    row.reduced_formula,
                    row.nsites,
                    row.property,
                    repr(float(row.value)),
                    row.unit,
                    row.method,
                    row.code,
                    row.code_version,
                    json.dumps(row.parameters, sort_keys=True, separators=(",", ":")),
                    row.fingerprint,
                ]
            )


def read_computed_labels(path: Path) -> list[ComputedLabel]:
    """Rows of a computed-label CSV, checked: the header, numbers, JSON, no key twice."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelTableError(f"{path}: cannot read it ({exc})") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or tuple(header) != COMPUTED_COLUMNS:
        raise LabelTableError(
            f"{path}:1: expected the header {','.join(COMPUTED_COLUMNS)}, got {header}"
        )
    rows: list[ComputedLabel] = []
    seen: set[tuple[str, str, str, str]] = set()
    for line, cells in enumerate(reader, start=2):
        if not cells:
            continue
        if len(cells) != len(COMPUTED_COLUMNS):
            raise LabelTableError(
                f"{path}:{line}: expected {len(COMPUTED_COLUMNS)} columns, got {len(cells)}"
            )
        fields = dict(zip(COMPUTED_COLUMNS, cells, strict=True))
        try:
            value = float(fields["value"])
            nsites = int(fields["nsites"])
            parameters = json.loads(fields["parameters"])
        except ValueError as exc:
            raise LabelTableError(f"{path}:{line}: {exc}") from None
        if not math.isfinite(value) or not isinstance(parameters, dict):
            raise LabelTableError(f"{path}:{line}: a finite value and a JSON object expected")
        key = (fields["source"], fields["source_id"], fields["property"], fields["method"])
        if key in seen:
            raise LabelTableError(f"{path}:{line}: {key[0]}:{key[1]} appears twice")
        seen.add(key)
        rows.append(
            ComputedLabel(
                source=fields["source"],
                source_id=fields["source_id"],
                reduced_formula=fields["reduced_formula"],
                nsites=nsites,
                property=fields["property"],
                value=value,
                unit=fields["unit"],
                method=fields["method"],
                code=fields["code"],
                code_version=fields["code_version"],
                parameters=parameters,
                fingerprint=fields["fingerprint"],
            )
        )
    return rows
