"""The values that cross the ingestion boundary: a parsed structure, a stored record, a refusal."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class Reason(StrEnum):
    """Stable codes for refused inputs; the pipeline stores them in ingest_rejects.reason."""

    # Reading the file.
    FILE_TOO_LARGE = "file_too_large"
    BINARY = "binary"
    NOT_UTF8 = "not_utf8"
    UNSUPPORTED_FORMAT = "unsupported_format"
    PARSE_ERROR = "parse_error"
    UNKNOWN_ELEMENT = "unknown_element"
    NOT_PERIODIC = "not_periodic"
    # Checking the structure.
    NO_ATOMS = "no_atoms"
    NAN_COORDINATES = "nan_coordinates"
    DEGENERATE_LATTICE = "degenerate_lattice"
    TOO_MANY_SITES = "too_many_sites"
    INVALID_OCCUPANCY = "invalid_occupancy"
    PARTIAL_OCCUPANCY = "partial_occupancy"
    SITES_TOO_CLOSE = "sites_too_close"
    SYMMETRY_FAILED = "symmetry_failed"
    INTERNAL_ERROR = "internal_error"
    # Whole-dataset layouts (OMDB-GAP1); raised, never returned per entry.
    MISSING_FILE = "missing_file"
    LAYOUT_MISMATCH = "layout_mismatch"
    BAD_LABEL = "bad_label"


class IngestError(Exception):
    """A refusal with a stable reason code, raised inside a reader and turned into a Rejection."""

    def __init__(self, reason: Reason | str, message: str) -> None:
        super().__init__(message)
        self.reason = str(reason)
        self.message = message


def _frozen_array(values: Any, dtype: type) -> np.ndarray:
    """Copy into a read-only array so a frozen dataclass really is immutable."""
    array: np.ndarray = np.array(values, dtype=dtype)
    array.flags.writeable = False
    return array


def where(path: str, entry: int | None, block_name: str | None = None) -> str:
    """Name an entry of a file the same way in every message."""
    if entry is None:
        return path
    if block_name:
        return f"{path} [entry {entry}, data_{block_name}]"
    return f"{path} [entry {entry}]"


@dataclass(frozen=True, slots=True, eq=False)
class ParsedStructure:
    """One periodic structure as a reader found it, in the full (P1) cell, before any checks.

    `lattice` rows are the lattice vectors in angstrom; `frac_coords` are wrapped into
    [0, 1) where finite (NaN stays NaN, for the validator to refuse); `occupancies` is None
    when every site is fully occupied; `mass_numbers` is None when every site has its
    element's natural isotope mix, else one per site, 0 for natural (isotopes.py).  `entry` is
    the index of the data block (CIF) or frame (XYZ) in the file.  `flags` are notes from
    the reader that travel into the record (e.g. ``pymatgen_fallback``,
    ``dummy_sites_dropped``, ``symops_contradict_symbol``); `declared_formula` is the
    file's own formula sum (CIF ``_chemical_formula_sum``), for the validator to compare.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    numbers: np.ndarray
    occupancies: np.ndarray | None
    path: str
    entry: int = 0
    block_name: str | None = None
    external_ids: dict[str, str] = field(default_factory=dict)
    properties: dict[str, float] = field(default_factory=dict)
    sha256: str | None = None
    flags: tuple[str, ...] = ()
    mass_numbers: np.ndarray | None = None
    declared_formula: str | None = None

    def __post_init__(self) -> None:
        """Normalise shapes and dtypes once, so downstream code can trust them."""
        object.__setattr__(self, "lattice", _frozen_array(self.lattice, np.float64).reshape(3, 3))
        frac = _frozen_array(self.frac_coords, np.float64).reshape(-1, 3)
        object.__setattr__(self, "frac_coords", frac)
        object.__setattr__(self, "numbers", _frozen_array(self.numbers, np.int64).reshape(-1))
        if self.occupancies is not None:
            occ = _frozen_array(self.occupancies, np.float64).reshape(-1)
            object.__setattr__(self, "occupancies", occ)
        if len(self.numbers) != len(self.frac_coords):
            raise ValueError(f"{len(self.numbers)} numbers for {len(self.frac_coords)} sites")
        if self.occupancies is not None and len(self.occupancies) != len(self.numbers):
            raise ValueError(f"{len(self.occupancies)} occupancies for {len(self.numbers)} sites")
        if self.mass_numbers is not None:
            masses = _frozen_array(self.mass_numbers, np.int64).reshape(-1)
            object.__setattr__(self, "mass_numbers", masses)
            if len(masses) != len(self.numbers):
                raise ValueError(f"{len(masses)} mass numbers for {len(self.numbers)} sites")

    @property
    def nsites(self) -> int:
        """Number of sites in the cell."""
        return len(self.numbers)

    @property
    def where(self) -> str:
        """Human name of this entry for messages."""
        return where(self.path, self.entry, self.block_name)


# Columns of the `structures` table that a StructureRecord fills (id and created_at are the
# database's own).
STRUCTURES_COLUMNS: tuple[str, ...] = (
    "lattice",
    "frac_coords",
    "atomic_numbers",
    "occupancies",
    "mass_numbers",
    "reduced_formula",
    "hill_formula",
    "anonymous_formula",
    "elements",
    "nelements",
    "nsites",
    "spacegroup_number",
    "spacegroup_symbol",
    "symprec",
    "crystal_system",
    "volume",
    "density",
    "fingerprint",
    "flags",
)


@dataclass(frozen=True, slots=True)
class StructureRecord:
    """A validated structure: one row of `structures` plus where it came from.

    The first block of fields and `mass_numbers` are exactly the `structures` columns (see
    STRUCTURES_COLUMNS); the rest (path, entry, ...) feed `sources`, `external_ids` and `labels`.
    `flags` are quality notes, e.g. ``organic_without_hydrogen``; `mass_numbers` is None
    unless some site is an isotope (then one per site, 0 for the natural mix).
    """

    lattice: list[list[float]]
    frac_coords: list[list[float]]
    atomic_numbers: list[int]
    occupancies: list[float] | None
    reduced_formula: str
    hill_formula: str
    anonymous_formula: str
    elements: list[str]
    nelements: int
    nsites: int
    spacegroup_number: int | None
    spacegroup_symbol: str | None
    symprec: float
    crystal_system: str | None
    volume: float
    density: float
    fingerprint: str
    path: str
    entry: int
    block_name: str | None = None
    external_ids: dict[str, str] = field(default_factory=dict)
    properties: dict[str, float] = field(default_factory=dict)
    sha256: str | None = None
    flags: tuple[str, ...] = ()
    mass_numbers: list[int] | None = None

    def structures_row(self) -> dict[str, Any]:
        """The values for one `structures` row, keyed by column name, ready for COPY."""
        row = {name: getattr(self, name) for name in STRUCTURES_COLUMNS}
        row["flags"] = list(self.flags)  # a text[] column
        return row

    @property
    def where(self) -> str:
        """Human name of the source entry for messages."""
        return where(self.path, self.entry, self.block_name)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input that was refused, with a stable reason code and a sentence naming the file."""

    path: str
    entry: int | None
    reason: str
    message: str
    sha256: str | None = None

    @classmethod
    def from_error(
        cls, error: IngestError, path: str, entry: int | None, sha256: str | None = None
    ) -> Rejection:
        """Turn a raised IngestError into the value readers and validators return."""
        return cls(
            path=path, entry=entry, reason=error.reason, message=error.message, sha256=sha256
        )


CRYSTAL_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)

# Quality flags of a structure (`structures.flags`): ingestion sets them, filters test them;
# what each means is in crystaldb.core.validate's docstring.
ORGANIC_WITHOUT_HYDROGEN = "organic_without_hydrogen"
FORMULA_SUM_MISMATCH = "formula_sum_mismatch"
SYMOPS_CONTRADICT_SYMBOL = "symops_contradict_symbol"
DEUTERATED = "deuterated"
DUMMY_SITES_DROPPED = "dummy_sites_dropped"
PYMATGEN_FALLBACK = "pymatgen_fallback"
FLAGS = (
    ORGANIC_WITHOUT_HYDROGEN,
    FORMULA_SUM_MISMATCH,
    SYMOPS_CONTRADICT_SYMBOL,
    DEUTERATED,
    DUMMY_SITES_DROPPED,
    PYMATGEN_FALLBACK,
)


@dataclass(frozen=True)
class LabelSpec:
    """How a numeric property carried by the input becomes a DFT label, method included."""

    source_property: str  # key in StructureRecord.properties
    property: str  # labels.property, e.g. band_gap
    unit: str
    functional: str
    code: str
    code_version: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    magnetic_moment: float | None = None
    reference: str | None = None
