"""SOAP power spectra with featomic, averaged per structure and kept as species-keyed blocks.

featomic rather than DScribe (measured in bench/soap.py): featomic returns the power spectrum
as blocks keyed by (centre, neighbour 1, neighbour 2) species, only for the triples a structure
has, while DScribe builds one dense vector over every species pair of the whole dataset; for
OMDB-GAP1's 65 elements that vector is ~950,000 wide, almost all zeros. Cross-species blocks
from featomic already carry the sqrt(2) that makes the dot product of the stored (n1 < n2)
half equal to that of the full vector, so kernels are plain sums of block dot products.

The "average" structure descriptor (glosim's fast average kernel, as in the OMDB-GAP1 paper)
is p_A = mean over the atoms i of A of p_i / |p_i|: each atom's spectrum normalised over all its
blocks, then averaged over every atom of the structure (atoms of another centre species add
zeros to a block). It is stored CSR-like: `indptr` gives each structure's run of blocks,
`keys` the species triple of each block, `values` its (l, n1, n2) numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import sparse

from crystaldb.core.cell import Cell
from crystaldb.core.errors import CrystaldbError
from crystaldb.core.lru import Lru


class DescriptorError(CrystaldbError):
    """Descriptor hyperparameters that cannot work, named as the user gave them."""


@dataclass(frozen=True)
class SoapHypers:
    """SOAP hyperparameters as the user (and the paper) states them: n_max radial functions."""

    cutoff: float = 4.0  # r_c, angstrom
    n_max: int = 8  # number of radial functions (featomic's max_radial = n_max - 1)
    l_max: int = 6  # highest angular channel, inclusive
    gaussian_width: float = 0.5  # sigma of the atomic Gaussians, angstrom (glosim's default)
    smoothing_width: float = 0.5  # width of the shifted-cosine cutoff, angstrom

    def __post_init__(self) -> None:
        checks = (
            (self.cutoff > 0, "--rc", "the cutoff must be positive"),
            (self.n_max >= 1, "--n", "n_max must be at least 1"),
            (self.l_max >= 0, "--l", "l_max must be 0 or more"),
            (self.gaussian_width > 0, "--sigma", "the Gaussian width must be positive"),
            (
                0 < self.smoothing_width <= self.cutoff,
                "smoothing_width",
                "must be positive and at most the cutoff",
            ),
        )
        for ok, name, message in checks:
            if not ok:
                raise DescriptorError(f"{name}: {message} (got {asdict(self)})")

    @property
    def block_width(self) -> int:
        """Numbers per species-triple block: (l_max + 1) * n_max^2."""
        return (self.l_max + 1) * self.n_max**2

    def featomic(self) -> dict[str, Any]:
        """The exact hyperparameters featomic receives (recorded on the descriptor row)."""
        return {
            "cutoff": {
                "radius": self.cutoff,
                "smoothing": {"type": "ShiftedCosine", "width": self.smoothing_width},
            },
            "density": {"type": "Gaussian", "width": self.gaussian_width},
            "basis": {
                "type": "TensorProduct",
                "max_angular": self.l_max,
                "radial": {"type": "Gto", "max_radial": self.n_max - 1},  # inclusive in featomic
            },
        }

    def record(self) -> dict[str, Any]:
        """What the database stores: ours and featomic's spelling, so neither is ambiguous."""
        return {**asdict(self), "featomic": self.featomic()}


@dataclass(frozen=True)
class AverageSpectra:
    """Per-structure average spectra of a batch, as species-keyed blocks (CSR by structure)."""

    indptr: np.ndarray  # (n_structures + 1,) int64: blocks of structure s are indptr[s]:[s+1]
    keys: np.ndarray  # (n_blocks, 3) int32: centre, neighbour 1, neighbour 2 atomic numbers
    values: np.ndarray  # (n_blocks, block_width) float64
    norms: np.ndarray  # (n_structures,) |p_A| over all blocks

    @property
    def num_structures(self) -> int:
        """Rows of the batch."""
        return len(self.indptr) - 1

    def structure(self, s: int) -> dict[tuple[int, int, int], np.ndarray]:
        """One structure's blocks by species triple (for tests and single predictions)."""
        lo, hi = self.indptr[s], self.indptr[s + 1]
        keys = [(int(a), int(b), int(c)) for a, b, c in self.keys[lo:hi]]
        return dict(zip(keys, self.values[lo:hi], strict=True))


def _atoms(cell: Cell) -> Any:
    """featomic reads ASE Atoms; periodic in all three directions."""
    from ase import Atoms

    return Atoms(
        numbers=cell.atomic_numbers, cell=cell.lattice, scaled_positions=cell.frac_coords, pbc=True
    )


_THREAD = threading.local()  # .calculators: this thread's Lru of featomic calculators


def _calculator(hypers: SoapHypers) -> Any:
    """One featomic calculator per thread and setting: building one sets up its splines, and
    featomic_calculator_compute takes its calculator mutably (the C API's non-const pointer,
    called with the GIL released), so the API's threads must never share one."""
    from featomic import SoapPowerSpectrum

    calculators = getattr(_THREAD, "calculators", None)
    if calculators is None:
        calculators = _THREAD.calculators = Lru[SoapHypers, Any](4)
    return calculators.get_or_put(hypers, lambda: SoapPowerSpectrum(**hypers.featomic()))


def atomic_spectra(cells: Sequence[Cell], hypers: SoapHypers) -> Any:
    """featomic's per-atom power spectrum of a batch (a metatensor TensorMap)."""
    return _calculator(hypers).compute([_atoms(cell) for cell in cells])


def average_spectra(cells: Sequence[Cell], hypers: SoapHypers) -> AverageSpectra:
    """The average descriptor of every cell: normalise each atom's spectrum, then average."""
    spectra = atomic_spectra(cells, hypers)
    sizes = np.array([cell.num_sites for cell in cells], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    blocks = []
    norm2 = np.zeros(offsets[-1])
    for key, block in spectra.items():
        system = block.samples.values[:, 0]
        atom = offsets[system] + block.samples.values[:, 1]
        values = np.asarray(block.values, dtype=np.float64)
        norm2 += np.bincount(atom, np.einsum("ij,ij->i", values, values), minlength=len(norm2))
        blocks.append((tuple(int(z) for z in key.values), system, atom, values))
    inverse = np.zeros_like(norm2)
    np.divide(1.0, np.sqrt(norm2), out=inverse, where=norm2 > 0)
    per_structure: list[list[tuple[tuple[int, int, int], np.ndarray]]] = [[] for _ in cells]
    for key, system, atom, values in blocks:
        # one sparse (systems x rows) product: each row weighted by 1/(|p_i| n_atoms), summed
        # into its system in a single pass over the block (a third faster than scale + reduce)
        present, row_of = np.unique(system, return_inverse=True)
        weights = inverse[atom] / sizes[system]
        columns = np.arange(len(atom))
        average = sparse.csr_matrix((weights, (row_of, columns)), shape=(len(present), len(atom)))
        for s, mean in zip(present, average @ values, strict=True):
            per_structure[s].append((key, mean))
    return _pack(per_structure, hypers.block_width)


def _pack(
    per_structure: list[list[tuple[tuple[int, int, int], np.ndarray]]], width: int
) -> AverageSpectra:
    """Blocks of each structure in key order, concatenated CSR-style."""
    counts = [len(blocks) for blocks in per_structure]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    keys = np.zeros((indptr[-1], 3), dtype=np.int32)
    values = np.zeros((indptr[-1], width))
    for s, blocks in enumerate(per_structure):
        for b, (key, vector) in enumerate(sorted(blocks, key=lambda kv: kv[0])):
            keys[indptr[s] + b] = key
            values[indptr[s] + b] = vector
    owner = np.repeat(np.arange(len(counts)), counts)
    norm2 = np.bincount(owner, np.einsum("ij,ij->i", values, values), minlength=len(counts))
    norms = np.sqrt(norm2)
    return AverageSpectra(indptr=indptr, keys=keys, values=values, norms=norms)


def concatenate(parts: Sequence[AverageSpectra]) -> AverageSpectra:
    """Batches stacked in order, as one block set (one batch is returned as it is, uncopied)."""
    if len(parts) == 1:
        return parts[0]
    shifts = np.cumsum([0] + [p.indptr[-1] for p in parts[:-1]])
    tails = [p.indptr[1:] + shift for p, shift in zip(parts, shifts, strict=True)]
    indptr = np.concatenate([[0], *tails])
    return AverageSpectra(
        indptr=indptr.astype(np.int64),
        keys=np.concatenate([p.keys for p in parts]),
        values=np.concatenate([p.values for p in parts]),
        norms=np.concatenate([p.norms for p in parts]),
    )
