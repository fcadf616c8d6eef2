"""What a release is, as plain data: the boundary between the database and the exporters.

Below the two classes, the summaries that the manifest, the figures and the OMDB-GAP1 README
all state (labels and their statistics, splits, element and space-group counts), computed
once here so every file of an export gives the same numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase.data import atomic_numbers


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


def element_counts(data: ReleaseData) -> list[tuple[str, int]]:
    """(element, structures containing it), most common first, ties by atomic number."""
    counts = Counter(symbol for m in data.members for symbol in set(m.elements))
    return sorted(counts.items(), key=lambda item: (-item[1], atomic_numbers.get(item[0], 999)))


def spacegroup_counts(data: ReleaseData) -> list[tuple[str, int]]:
    """('P2_1/c (14)', structures), most common first, ties by space-group number."""
    counts = Counter(
        (m.spacegroup_number, m.spacegroup_symbol or "")
        for m in data.members
        if m.spacegroup_number is not None
    )
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1]))
    return [(f"{symbol} ({number})".strip(), n) for (number, symbol), n in ordered]
