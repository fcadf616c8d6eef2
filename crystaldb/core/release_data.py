"""What a release is, as plain data: the boundary between the database and the exporters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Member:
    """One structure of a release, at its position, with its split and frozen label."""

    position: int
    structure_id: int
    split: str  # train, valid, test, fold-0 ... fold-9
    lattice: np.ndarray  # (3, 3), rows are lattice vectors in angstrom
    frac_coords: np.ndarray  # (n, 3)
    atomic_numbers: np.ndarray  # (n,)
    reduced_formula: str
    elements: tuple[str, ...]
    spacegroup_number: int | None
    spacegroup_symbol: str | None
    external_ids: dict[str, str] = field(default_factory=dict)  # e.g. {"cod": "7033509"}
    label: float | None = None  # the frozen label value, in `ReleaseData.label_unit`
    # (n,) isotope of each site, 0 for the natural mix; None when every site is natural.
    mass_numbers: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class ReleaseData:
    """A frozen release, everything an exporter needs, members in release order."""

    name: str
    version: str
    query: str | None  # the --where filter the members were selected by
    split_spec: str | None  # e.g. ordered:10000,2500
    label_property: str | None  # e.g. band_gap
    label_unit: str | None  # e.g. eV
    label_method: dict[str, Any]  # functional, code, code_version, parameters, reference
    members: tuple[Member, ...]
    database_identity: dict[str, str]  # server, database name, system identifier
    crystaldb_version: str
