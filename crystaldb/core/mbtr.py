"""The many-body tensor representation (Huo and Rupp) with DScribe, kept as species-keyed blocks.

MBTR is a global descriptor: k = 1 counts the elements (Gaussians on the atomic-number axis),
k = 2 the pairs (Gaussians on the inverse distance), k = 3 the triples (on the cosine of the
angle), each broadened on a grid of n points and, for a periodic crystal, weighted by
exp(-s x) (x the distance, or the perimeter of the triangle) so that the infinite lattice
sums converge. DScribe (`dscribe.descriptors.MBTR`, one object per k) computes it.

Storage (why not DScribe's own vector): for a fixed species list S, DScribe's vector holds
|S| n + |S|(|S|+1)/2 n + |S|^2(|S|+1)/2 n numbers: for OMDB-GAP1's 65 elements and n = 100
about 14 million floats (110 MB) per structure, nearly all zero since a crystal has 2 to 6
elements; even DScribe's sparse output must be built against that species list, fixed
before the first structure is seen. But the block of one species combination depends only
on the atoms of those species, so each structure is computed with DScribe over its own
elements only, and every non-zero block is cut out with DScribe's `get_location` and stored
under its key, exactly like SOAP's species triples (`soap.AverageSpectra`, CSR by structure):
  k = 1: (Z, 0, 0);  k = 2: (Z1, Z2, 0) with Z1 <= Z2;  k = 3: (Z1, Z2, Z3) with Z1 <= Z3
(Z2 the apex of the angle). Memory then grows with the elements a structure has, never with
the dataset's, and the kernel, Zarr layout, KRR and its primal weights are SOAP's, unchanged.
Blocks are `block_width` = the largest grid n wide; a shorter grid is padded with zeros,
which add nothing to any dot product.

Normalisation: each k-term is scaled to unit Euclidean length (DScribe's "l2", applied here
per term so that an empty term, e.g. no pair within the weighting's reach, stays zero instead
of 0/0), so the three terms weigh the same; the kernel (`kernels.average_kernel`) then
divides by the norm of the whole vector: K(A, B) = (p_A . p_B / (|p_A| |p_B|))^zeta, for
three non-empty terms the mean of the per-term cosine similarities.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import cache
from itertools import combinations_with_replacement
from typing import Any

import numpy as np

from crystaldb.core.cell import Cell
from crystaldb.core.soap import AverageSpectra, DescriptorError, _pack

K2_GEOMETRIES = ("inverse_distance", "distance")
K3_GEOMETRIES = ("cosine", "angle")
MAX_ATOMIC_NUMBER = 118


@dataclass(frozen=True)
class MbtrHypers:
    """MBTR's hyperparameters, one grid size for all three terms; DScribe's spelling recorded.

    Each field is named as on the command line where it has an option there (--grid-n,
    --k1-sigma, ...); the grid ranges and geometries are library-level choices.
    """

    grid_n: int = 100  # points of each term's grid (also the stored block width)
    k1_min: float = 0.0  # k = 1: the atomic-number axis; must cover every element
    k1_max: float = 119.0
    k1_sigma: float = 0.5  # Gaussian width on that axis (grid spacing 1.2)
    k2_geometry: str = "inverse_distance"  # 1/r in 1/angstrom (or "distance", angstrom)
    k2_min: float = 0.0
    k2_max: float = 1.5  # 1/r of a 0.67 A bond: every covalent bond, H-H included
    k2_sigma: float = 0.05
    k3_geometry: str = "cosine"  # cosine of the angle at the apex atom (or "angle", degrees)
    k3_min: float = -1.0
    k3_max: float = 1.0
    k3_sigma: float = 0.05
    scale: float = 1.0  # exponential weighting exp(-s x) of k = 2 and 3, s in 1/angstrom
    threshold: float = 1e-3  # terms weighted below this are left out: reach -ln(t)/s = 6.9 A

    def __post_init__(self) -> None:
        checks = (
            (self.grid_n >= 2, "--grid-n", "at least 2 grid points per term"),
            (self.k1_sigma > 0, "--k1-sigma", "the Gaussian width must be positive"),
            (self.k2_sigma > 0, "--k2-sigma", "the Gaussian width must be positive"),
            (self.k3_sigma > 0, "--k3-sigma", "the Gaussian width must be positive"),
            (self.k1_min < self.k1_max, "k1_min", "must be below k1_max"),
            (self.k2_min < self.k2_max, "k2_min", "must be below k2_max"),
            (self.k3_min < self.k3_max, "k3_min", "must be below k3_max"),
            (self.k2_geometry in K2_GEOMETRIES, "k2_geometry", f"one of {K2_GEOMETRIES}"),
            (self.k3_geometry in K3_GEOMETRIES, "k3_geometry", f"one of {K3_GEOMETRIES}"),
            (self.scale > 0, "--scale", "the weighting's decay must be positive"),
            (0 < self.threshold < 1, "--threshold", "must lie between 0 and 1"),
        )
        for ok, name, message in checks:
            if not ok:
                raise DescriptorError(f"{name}: {message} (got {asdict(self)})")

    @property
    def block_width(self) -> int:
        """Numbers per stored block: the grid size."""
        return self.grid_n

    @property
    def reach(self) -> float:
        """Distance (k = 2) or perimeter (k = 3), in angstrom, beyond which DScribe stops."""
        return float(-np.log(self.threshold) / self.scale)

    def dscribe(self) -> dict[str, dict[str, Any]]:
        """The exact keyword arguments of DScribe's MBTR for each term (bar the species)."""
        weighting = {"function": "exp", "scale": self.scale, "threshold": self.threshold}
        common = {"normalize_gaussians": True, "normalization": "none", "periodic": True}
        n = self.grid_n
        return {
            "k1": {
                "geometry": {"function": "atomic_number"},
                "grid": {"min": self.k1_min, "max": self.k1_max, "sigma": self.k1_sigma, "n": n},
                **common,
            },
            "k2": {
                "geometry": {"function": self.k2_geometry},
                "grid": {"min": self.k2_min, "max": self.k2_max, "sigma": self.k2_sigma, "n": n},
                "weighting": weighting,
                **common,
            },
            "k3": {
                "geometry": {"function": self.k3_geometry},
                "grid": {"min": self.k3_min, "max": self.k3_max, "sigma": self.k3_sigma, "n": n},
                "weighting": weighting,
                **common,
            },
        }

    def record(self) -> dict[str, Any]:
        """What the database stores: ours and DScribe's spelling, and the normalisation."""
        return {
            **asdict(self),
            "term_normalization": "l2",
            "dscribe": self.dscribe(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MbtrHypers:
        """The hyperparameters back from a descriptor row or a weights file."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def is_mbtr_record(record: dict[str, Any]) -> bool:
    """Whether stored hyperparameters are MBTR's (SOAP's carry featomic's spelling instead)."""
    return "dscribe" in record


# --- DScribe ---------------------------------------------------------------------------------


@cache
def fix_dscribe_system() -> bool:
    """Make DScribe 2.1's System work with ASE >= 3.27, once per process; True if patched.

    DScribe's `System.__init__` hands its arguments to `ase.Atoms.__init__` by position, and
    ASE 3.27 reordered them (`calculator` became keyword-only, `velocities` was added), so
    `info` lands on `velocities` and every periodic k = 2, 3 term fails with 'Use only one
    of "momenta" and "velocities"' (SINGROUP/dscribe issue 165, open). The fix the issue
    confirms is to pass them by keyword; this applies it only where the bug shows.
    """
    import ase
    from dscribe.core.system import System

    probe = ase.Atoms("H", cell=np.eye(3), pbc=True)
    try:
        with warnings.catch_warnings():  # DScribe 2.1 still calls ASE's deprecated getter
            warnings.filterwarnings("ignore", "Please use atoms.calc", FutureWarning)
            System.from_atoms(probe)
        return False
    except TypeError:
        pass

    def init(self: Any, symbols: Any = None, **kwargs: Any) -> None:
        extra = {k: kwargs.pop(k, None) for k in ("wyckoff_positions", "equivalent_atoms")}
        ase.Atoms.__init__(self, symbols, **kwargs)
        self.wyckoff_positions = extra["wyckoff_positions"]
        self.equivalent_atoms = extra["equivalent_atoms"]
        self._cell_inverse = None
        self._displacement_tensor = None
        self._distance_matrix = None
        self._inverse_distance_matrix = None

    System.__init__ = init
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Please use atoms.calc", FutureWarning)
        System.from_atoms(probe)  # fails loudly here if the fix does not hold
    return True


def _atoms(cell: Cell) -> Any:
    """DScribe reads ASE Atoms; periodic in all three directions."""
    from ase import Atoms

    return Atoms(
        numbers=cell.atomic_numbers, cell=cell.lattice, scaled_positions=cell.frac_coords, pbc=True
    )


def term_descriptor(
    hypers: MbtrHypers, k: int, species: Sequence[int], sparse: bool = False
) -> Any:
    """DScribe's MBTR object of term k over `species`, with exactly the recorded arguments."""
    from dscribe.descriptors import MBTR

    fix_dscribe_system()
    return MBTR(species=sorted(species), sparse=sparse, **hypers.dscribe()[f"k{k}"])


def _combinations(species: Sequence[int], k: int) -> list[tuple[int, ...]]:
    """Every species combination of term k, in the key order stored (see the module doc)."""
    if k == 1:
        return [(z,) for z in species]
    if k == 2:
        return list(combinations_with_replacement(species, 2))
    return [(a, b, c) for a, c in combinations_with_replacement(species, 2) for b in species]


def _key(combination: tuple[int, ...]) -> tuple[int, int, int]:
    """A combination as a stored key: padded with zeros to three atomic numbers."""
    return (*combination, 0, 0)[:3]  # type: ignore[return-value]


def _check_elements(cell: Cell, hypers: MbtrHypers) -> list[int]:
    """The structure's elements, sorted; refused where the k = 1 grid cannot hold them."""
    species = sorted({int(z) for z in cell.atomic_numbers})
    outside = [z for z in species if not hypers.k1_min <= z <= hypers.k1_max]
    if outside or (species and not 1 <= species[0] <= species[-1] <= MAX_ATOMIC_NUMBER):
        raise DescriptorError(
            f"k1_min/k1_max: structure {cell.structure_id} has elements {outside or species}"
            f" outside the k = 1 grid [{hypers.k1_min}, {hypers.k1_max}]"
        )
    return species


def structure_blocks(
    cell: Cell, hypers: MbtrHypers
) -> list[tuple[tuple[int, int, int], np.ndarray]]:
    """One structure's non-zero MBTR blocks, each term scaled to unit length, by key."""
    species = _check_elements(cell, hypers)
    if not species:
        return []
    atoms = _atoms(cell)
    blocks = []
    for k in (1, 2, 3):
        descriptor = term_descriptor(hypers, k, species)
        with warnings.catch_warnings():  # DScribe 2.1 still calls ASE's deprecated getter
            warnings.filterwarnings("ignore", "Please use atoms.calc", FutureWarning)
            vector = np.asarray(descriptor.create(atoms), dtype=np.float64)
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            continue  # an empty term (nothing within reach): zeros, not 0/0
        for combination in _combinations(species, k):
            block = vector[descriptor.get_location(combination)] / norm
            if block.any():
                blocks.append((_key(combination), block))
    return blocks


def mbtr_spectra(cells: Sequence[Cell], hypers: MbtrHypers) -> AverageSpectra:
    """The MBTR of every cell as species-keyed blocks, CSR by structure (SOAP's layout)."""
    return _pack([structure_blocks(cell, hypers) for cell in cells], hypers.block_width)


def dense_vectors(
    spectra: AverageSpectra, species: Sequence[int], hypers: MbtrHypers
) -> np.ndarray:
    """The blocks laid out as DScribe's k = 1, 2, 3 vectors over `species`, concatenated.

    For tests and for users who want DScribe's layout over a known, small species list.
    """
    descriptors = [term_descriptor(hypers, k, species) for k in (1, 2, 3)]
    sizes = [d.get_number_of_features() for d in descriptors]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    dense = np.zeros((spectra.num_structures, offsets[-1]))
    for s in range(spectra.num_structures):
        for key, block in spectra.structure(s).items():
            combination = tuple(z for z in key if z)
            k = len(combination)
            where = descriptors[k - 1].get_location(combination)
            dense[s, offsets[k - 1] + where.start : offsets[k - 1] + where.stop] = block
    return dense
