"""The average SOAP descriptor and kernel on real molecular crystals, three ways."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest

from crystaldb.core.cell import Cell
from crystaldb.core.kernels import average_kernel, squared_distance
from crystaldb.core.soap import DescriptorError, SoapHypers, atomic_spectra, average_spectra
from tests.realdata import MOLECULAR_XYZ

HYPERS = SoapHypers(cutoff=4.0, n_max=4, l_max=3)


@pytest.fixture(scope="module")
def cells() -> list[Cell]:
    """Five real molecular crystals (C, H, N, O; 76 to 188 atoms) from featomic's benchmarks."""
    frames = ase.io.read(MOLECULAR_XYZ, index=":5")
    return [
        Cell(i, np.array(a.cell), a.get_scaled_positions(), a.numbers) for i, a in enumerate(frames)
    ]


def test_featomic_receives_inclusive_max_radial() -> None:
    hypers = SoapHypers()  # the paper's r_c = 4, n = 8, l = 6
    assert hypers.featomic()["basis"]["radial"]["max_radial"] == 7
    assert hypers.featomic()["basis"]["max_angular"] == 6
    assert hypers.block_width == 7 * 8 * 8


def test_kernel_is_the_mean_of_local_kernels(cells: list[Cell]) -> None:
    """K(A,B) = mean over atom pairs of delta(Z_i, Z_j) p_i.p_j/(|p_i||p_j|), normalised."""
    kernel = average_kernel(*(2 * [average_spectra(cells, HYPERS)]))
    dense = atomic_spectra(cells, HYPERS).keys_to_samples("center_type")
    block = dense.keys_to_properties(["neighbor_1_type", "neighbor_2_type"]).block(0)
    x = block.values / np.linalg.norm(block.values, axis=1, keepdims=True)
    system, centre = block.samples.values[:, 0], block.samples.values[:, 2]
    explicit = np.zeros((len(cells), len(cells)))
    for a in range(len(cells)):
        for b in range(len(cells)):
            same = centre[system == a][:, None] == centre[system == b][None, :]
            explicit[a, b] = (x[system == a] @ x[system == b].T * same).mean()
    scale = np.sqrt(np.diag(explicit))
    np.testing.assert_allclose(kernel, explicit / np.outer(scale, scale), atol=1e-12)
    assert np.allclose(np.diag(kernel), 1.0) and (kernel < 1.0 - 1e-6)[~np.eye(5, dtype=bool)].all()


def test_average_kernel_matches_dscribe(cells: list[Cell]) -> None:
    """DScribe's AverageKernel (linear metric) on normalised atomic DScribe SOAP vectors."""
    from dscribe.descriptors import SOAP
    from dscribe.kernels import AverageKernel

    from crystaldb.core.kernels import linear_kernel
    from crystaldb.core.soap import AverageSpectra

    species = sorted({int(z) for c in cells for z in c.atomic_numbers})
    soap = SOAP(species=species, r_cut=4.0, n_max=4, l_max=3, sigma=0.5, periodic=True)
    atoms = [
        ase.Atoms(c.atomic_numbers, cell=c.lattice, scaled_positions=c.frac_coords, pbc=True)
        for c in cells
    ]
    local = [soap.create(a) for a in atoms]
    local = [f / np.linalg.norm(f, axis=1, keepdims=True) for f in local]
    reference = AverageKernel(metric="linear").create(local)
    # DScribe's vector as one block per structure: same code path as featomic's blocks
    means = np.array([f.mean(axis=0) for f in local])
    as_blocks = AverageSpectra(
        indptr=np.arange(len(cells) + 1),
        keys=np.zeros((len(cells), 3), dtype=np.int32),
        values=means,
        norms=np.linalg.norm(means, axis=1),
    )
    np.testing.assert_allclose(average_kernel(as_blocks, as_blocks), reference, atol=1e-12)
    assert linear_kernel(as_blocks, as_blocks).shape == (5, 5)


def test_invariant_under_supercell_rotation_and_site_order(cells: list[Cell]) -> None:
    cell = cells[0]
    rng = np.random.default_rng(3)
    order = rng.permutation(cell.num_sites)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = [
        Cell(1, cell.lattice, cell.frac_coords[order], cell.atomic_numbers[order]),
        Cell(2, cell.lattice @ q.T, cell.frac_coords, cell.atomic_numbers),
        Cell(
            3,
            np.diag([2.0, 1.0, 1.0]) @ cell.lattice,
            np.vstack(
                [cell.frac_coords * [0.5, 1, 1], cell.frac_coords * [0.5, 1, 1] + [0.5, 0, 0]]
            ),
            np.concatenate([cell.atomic_numbers, cell.atomic_numbers]),
        ),
    ]
    spectra = average_spectra([cell, *moved], HYPERS)
    kernel = average_kernel(spectra, spectra)
    np.testing.assert_allclose(kernel[0], 1.0, atol=1e-10)
    distance = squared_distance(kernel, np.diag(kernel), np.diag(kernel))
    np.testing.assert_allclose(distance[0], 0.0, atol=1e-9)


def test_species_blocks_are_only_those_present(cells: list[Cell]) -> None:
    spectra = average_spectra(cells[:1], HYPERS)
    species = sorted({int(z) for z in cells[0].atomic_numbers})
    keys = set(spectra.structure(0))
    assert keys <= {(c, a, b) for c in species for a in species for b in species if a <= b}
    assert all(z in species for key in keys for z in key)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("cutoff", 0.0, "--rc"),
        ("n_max", 0, "--n"),
        ("l_max", -1, "--l"),
        ("gaussian_width", 0.0, "--sigma"),
    ],
)
def test_bad_hyperparameters_are_named(field: str, value: float, named: str) -> None:
    with pytest.raises(DescriptorError, match=named):
        SoapHypers(**{field: value})


def test_kernel_of_many_elements_skips_only_zero_rows() -> None:
    """On 50 inorganic crystals of many elements (most rows lack most triples), every pair's
    kernel is the plain dot product of its shared blocks, off the diagonal and on it."""
    from crystaldb.core.kernels import linear_kernel
    from tests.jarvis import jarvis_cells

    every, _ = jarvis_cells()
    spectra = average_spectra(every, HYPERS)
    blocks = [spectra.structure(s) for s in range(spectra.num_structures)]
    oracle = np.array(
        [[sum(float(x[k] @ y[k]) for k in x.keys() & y.keys()) for y in blocks] for x in blocks]
    )
    assert (oracle == 0).mean() > 0.2  # many pairs share no triple at all
    np.testing.assert_allclose(
        linear_kernel(spectra, spectra, keys_per_group=3), oracle, atol=1e-12
    )
    half = len(every) // 2
    left, right = average_spectra(every[:half], HYPERS), average_spectra(every[half:], HYPERS)
    np.testing.assert_allclose(
        linear_kernel(left, right, keys_per_group=5), oracle[:half, half:], atol=1e-12
    )
