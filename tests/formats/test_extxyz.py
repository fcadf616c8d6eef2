"""The extended XYZ reader: every frame an entry, numeric info as properties, cells required."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from crystaldb.core.records import ParsedStructure, Rejection
from crystaldb.formats.payload import parse_file, process_file
from tests.realdata import MOLECULAR_XYZ


def test_extxyz_every_frame_is_an_entry(frames: list[Atoms]) -> None:
    results = parse_file(MOLECULAR_XYZ)
    assert [r.entry for r in results] == list(range(len(frames)))
    for result, atoms in zip(results, frames, strict=True):
        assert isinstance(result, ParsedStructure), result
        assert result.numbers.tolist() == atoms.numbers.tolist()
        assert np.allclose(result.lattice, atoms.cell.array)
        cartesian = result.frac_coords @ result.lattice
        wrapped = atoms.copy()
        wrapped.wrap()
        assert np.allclose(cartesian, wrapped.positions, atol=1e-6)


def test_extxyz_numeric_info_and_calculator_values_become_properties(
    frames: list[Atoms], tmp_path: Path
) -> None:
    atoms = frames[0].copy()
    atoms.info.update({"band_gap": 2.5, "name": "not a number", "flag": True})
    atoms.calc = SinglePointCalculator(atoms, energy=-123.25)
    path = tmp_path / "labelled.extxyz"
    ase.io.write(path, [atoms, frames[2]], format="extxyz")
    first, second = parse_file(path)
    assert isinstance(first, ParsedStructure) and isinstance(second, ParsedStructure)
    assert first.properties == {"band_gap": 2.5, "energy": -123.25}
    assert second.properties == {}


def test_xyz_without_a_cell_is_not_periodic(frames: list[Atoms], tmp_path: Path) -> None:
    molecule = frames[0].copy()
    molecule.pbc = False
    molecule.cell = None
    path = tmp_path / "molecule.xyz"
    ase.io.write(path, molecule, format="extxyz")
    (rejection,) = parse_file(path)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "not_periodic"
    assert rejection.entry == 0
    assert str(path) in rejection.message


def test_dummy_species_in_xyz_is_an_unknown_element(frames: list[Atoms], tmp_path: Path) -> None:
    atoms = frames[0].copy()
    atoms.numbers[0] = 0  # ASE's "X"
    path = tmp_path / "dummy.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    (outcome,) = process_file(path)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "unknown_element"
    assert str(path) in outcome.message
