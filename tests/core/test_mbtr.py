"""MBTR as species-keyed blocks, checked against DScribe's own dense vectors called directly."""

from __future__ import annotations

import json

import ase
import ase.io
import numpy as np
import pytest

from crystaldb.core.cell import Cell
from crystaldb.core.descriptors import describe, hypers_from_record, kind_of, label
from crystaldb.core.kernels import average_kernel
from crystaldb.core.mbtr import (
    MbtrHypers,
    dense_vectors,
    fix_dscribe_system,
    mbtr_spectra,
    term_descriptor,
)
from crystaldb.core.soap import DescriptorError
from tests.jarvis import jarvis_cells
from tests.realdata import MOLECULAR_XYZ

HYPERS = MbtrHypers(grid_n=30)


@pytest.fixture(scope="module")
def cells() -> list[Cell]:
    """Five real molecular crystals (C, H, N, O; 100 to 176 atoms) from featomic's benchmarks."""
    frames = ase.io.read(MOLECULAR_XYZ, index=":5")
    return [
        Cell(i, np.array(a.cell), a.get_scaled_positions(), a.numbers) for i, a in enumerate(frames)
    ]


def _dscribe(cells: list[Cell], species: list[int], hypers: MbtrHypers) -> np.ndarray:
    """DScribe's MBTR over one species list, each term with DScribe's own l2 normalisation
    (an empty term, 0/0 there, as zeros)."""
    from dscribe.descriptors import MBTR

    fix_dscribe_system()  # DScribe 2.1 on ASE >= 3.27 (SINGROUP/dscribe#165): see mbtr.py
    atoms = [
        ase.Atoms(c.atomic_numbers, cell=c.lattice, scaled_positions=c.frac_coords, pbc=True)
        for c in cells
    ]
    terms = []
    for k in (1, 2, 3):
        arguments = {**hypers.dscribe()[f"k{k}"], "normalization": "l2"}
        terms.append(MBTR(species=species, **arguments).create(atoms))
    return np.nan_to_num(np.hstack(terms), nan=0.0)


def test_blocks_are_dscribes_vectors_and_the_kernel_their_cosine(cells: list[Cell]) -> None:
    cells = cells[:3]
    species = sorted({int(z) for c in cells for z in c.atomic_numbers})
    reference = _dscribe(cells, species, HYPERS)
    spectra = mbtr_spectra(cells, HYPERS)
    np.testing.assert_allclose(dense_vectors(spectra, species, HYPERS), reference, atol=1e-12)
    norms = np.linalg.norm(reference, axis=1)
    np.testing.assert_allclose(spectra.norms, norms, atol=1e-12)
    assert np.allclose(norms, np.sqrt(3))  # three non-empty terms, each of unit length
    cosine = reference @ reference.T / np.outer(norms, norms)
    kernel = average_kernel(spectra, spectra)
    np.testing.assert_allclose(kernel, cosine, atol=1e-12)
    assert np.allclose(np.diag(kernel), 1.0) and (kernel < 1 - 1e-6)[~np.eye(3, dtype=bool)].all()
    np.testing.assert_allclose(average_kernel(spectra, spectra, zeta=2.0), cosine**2, atol=1e-12)


def test_many_elements_store_only_their_blocks() -> None:
    """50 JARVIS crystals of 56 elements: each keeps the blocks of its own 1-4 elements, and
    the kernel of a few equals DScribe's over their (smaller) shared species list."""
    every, _ = jarvis_cells()
    spectra = mbtr_spectra(every, HYPERS)
    species = sorted({int(z) for c in every for z in c.atomic_numbers})
    dataset_wide = sum(
        term_descriptor(HYPERS, k, species).get_number_of_features() for k in (1, 2, 3)
    )
    assert len(species) == 56 and dataset_wide == 89_376 * 30 + 1596 * 30 + 56 * 30
    assert spectra.values.size < 0.001 * dataset_wide * len(every)
    for s, cell in enumerate(every):
        present = set(cell.atomic_numbers.tolist())
        assert {z for key in spectra.structure(s) for z in key if z} <= present
    few = every[:6]
    local = sorted({int(z) for c in few for z in c.atomic_numbers})
    reference = _dscribe(few, local, HYPERS)
    np.testing.assert_allclose(
        dense_vectors(mbtr_spectra(few, HYPERS), local, HYPERS), reference, atol=1e-12
    )


def test_invariant_under_supercell_rotation_and_site_order(cells: list[Cell]) -> None:
    cell = cells[1]
    rng = np.random.default_rng(3)
    order = rng.permutation(cell.num_sites)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    half = cell.frac_coords * [0.5, 1, 1]
    moved = [
        Cell(1, cell.lattice, cell.frac_coords[order], cell.atomic_numbers[order]),
        Cell(2, cell.lattice @ q.T, cell.frac_coords, cell.atomic_numbers),
        Cell(
            3,
            np.diag([2.0, 1.0, 1.0]) @ cell.lattice,
            np.vstack([half, half + np.array([0.5, 0, 0])]),
            np.concatenate([cell.atomic_numbers, cell.atomic_numbers]),
        ),
    ]
    spectra = mbtr_spectra([cell, *moved], HYPERS)
    np.testing.assert_allclose(average_kernel(spectra, spectra)[0], 1.0, atol=1e-9)


def test_hyperparameters_are_recorded_and_read_back() -> None:
    record = json.loads(json.dumps(HYPERS.record()))  # as the database and weights file keep it
    assert hypers_from_record(record) == HYPERS
    assert record["dscribe"]["k2"] == {
        "geometry": {"function": "inverse_distance"},
        "grid": {"min": 0.0, "max": 1.5, "sigma": 0.05, "n": 30},
        "weighting": {"function": "exp", "scale": 1.0, "threshold": 1e-3},
        "normalize_gaussians": True,
        "normalization": "none",
        "periodic": True,
    }
    assert kind_of(HYPERS).kind == "mbtr" and kind_of(HYPERS).library == "dscribe"
    assert label(record).startswith("MBTR k=1,2,3 n=30")
    assert HYPERS.reach == pytest.approx(6.9078, abs=1e-4)


def test_describe_dispatches_on_the_hyperparameters(cells: list[Cell]) -> None:
    via = describe(cells[:2], HYPERS)
    np.testing.assert_array_equal(via.values, mbtr_spectra(cells[:2], HYPERS).values)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("grid_n", 1, "--grid-n"),
        ("k1_sigma", 0.0, "--k1-sigma"),
        ("k2_sigma", -1.0, "--k2-sigma"),
        ("k3_sigma", 0.0, "--k3-sigma"),
        ("scale", 0.0, "--scale"),
        ("threshold", 1.0, "--threshold"),
        ("k2_max", -1.0, "k2_min"),
        ("k3_geometry", "dihedral", "k3_geometry"),
    ],
)
def test_bad_hyperparameters_are_named(field: str, value: object, named: str) -> None:
    with pytest.raises(DescriptorError, match=named):
        MbtrHypers(**{field: value})  # type: ignore[arg-type]


def test_an_element_off_the_k1_grid_is_refused_by_name(cells: list[Cell]) -> None:
    with pytest.raises(DescriptorError, match=r"k1_min/k1_max: structure 0 has elements \[8\]"):
        mbtr_spectra(cells[:1], MbtrHypers(grid_n=30, k1_max=7.5))
