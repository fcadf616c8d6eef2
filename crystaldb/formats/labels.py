"""Labels that come beside the structure files, as a CSV of file name and value.

JARVIS-style `id_prop.csv` tables (`POSCAR-JVASP-10.vasp,0.000000`) and similar: one row per
file, the file's name (not its path) then the value; a header row is allowed. The method that
computed the values (functional, code) is stated once for the whole table.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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
