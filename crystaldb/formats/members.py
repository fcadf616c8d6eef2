"""What every release writer shares: a member's arrays, its label and COD id, files, refusals.

The accessors give each writer the same float64/int64 arrays, and `cartesian` computes
positions with elementwise IEEE operations (no BLAS), so exported bytes depend neither on the
CPU nor on how a member's arrays were built. A label is a finite number or absent: NaN or
infinite labels are refused by every format, and a format that needs one on every member
says so through `label_of(..., required=True)`.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.release_data import Member, ReleaseData


class ExportError(CrystaldbError):
    """An export refused: the message names the argument, release or member at fault."""


def who(data: ReleaseData, member: Member) -> str:
    """Name a member the same way in every message."""
    return (
        f"release {data.name} {data.version}, member {member.position}"
        f" (structure {member.structure_id})"
    )


def label_of(data: ReleaseData, member: Member, fmt: str, *, required: bool) -> float | None:
    """The member's label as a float; refuse NaN/infinite, and a missing one where required."""
    name = data.label_property or "label"
    if member.label is None:
        if required:
            raise ExportError(f"{who(data, member)}: has no {name}; {fmt} needs one per member")
        return None
    value = float(member.label)
    if not math.isfinite(value):
        raise ExportError(f"{who(data, member)}: {name} is {value}; {fmt} needs a finite number")
    return value


def cod_id_of(member: Member) -> str | None:
    """The member's COD id, if it has one, so every format writes the same string."""
    cod = member.external_ids.get("cod")
    return str(cod).strip() if cod is not None else None


def lattice_of(member: Member) -> np.ndarray:
    """(3, 3) float64, rows are the lattice vectors in angstrom, whatever the member holds."""
    return np.asarray(member.lattice, dtype=np.float64).reshape(3, 3)


def frac_of(member: Member) -> np.ndarray:
    """(n, 3) float64 fractional coordinates, whatever the member holds."""
    return np.asarray(member.frac_coords, dtype=np.float64).reshape(-1, 3)


def numbers_of(member: Member) -> np.ndarray:
    """(n,) int64 atomic numbers, whatever the member holds."""
    return np.asarray(member.atomic_numbers, dtype=np.int64).reshape(-1)


def cartesian(member: Member, frac: np.ndarray | None = None) -> np.ndarray:
    """frac @ lattice, summed term by term so no BLAS kernel can change the last bit."""
    frac = frac_of(member) if frac is None else frac
    lattice = lattice_of(member)
    return frac[:, 0:1] * lattice[0] + frac[:, 1:2] * lattice[1] + frac[:, 2:3] * lattice[2]


def text_file(path: Path) -> io.TextIOWrapper:
    """Open for writing as UTF-8 with \\n line ends, so the bytes are the same on every platform."""
    return path.open("w", encoding="utf-8", newline="\n")


def dumps(document: Any) -> str:
    """The one JSON style of release metadata: sorted keys, indent 2, strict, newline at the end."""
    return json.dumps(document, sort_keys=True, indent=2, allow_nan=False) + "\n"
