"""Extended XYZ, POSCAR and JSON readers, and the dispatcher's never-raise promise."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from pymatgen.core import Structure
from pymatgen.io.vasp import Poscar

from crystaldb.core.records import ParsedStructure, Rejection, StructureRecord
from crystaldb.formats.payload import parse_file, process_file
from tests.realdata import MOLECULAR_XYZ, SAMPLE, SHARED_DATA, SPGLIB_WARNING

pytestmark = pytest.mark.filterwarnings(SPGLIB_WARNING)

JARVIS = SAMPLE / "jarvis"


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    """The 20 molecular crystals, as ASE reads them."""
    return ase.io.read(MOLECULAR_XYZ, index=":")  # type: ignore[return-value]


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


def test_poscar_files_match_pymatgen() -> None:
    """All 70 JARVIS POSCARs: composition as pymatgen reads it, JARVIS id from the name."""
    paths = sorted(JARVIS.glob("*.vasp"))
    assert len(paths) == 70
    for path in paths:
        (parsed,) = parse_file(path)
        assert isinstance(parsed, ParsedStructure), parsed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = Poscar.from_file(path).structure
        assert Counter(parsed.numbers.tolist()) == Counter(theirs.atomic_numbers)
        assert abs(np.linalg.det(parsed.lattice)) == pytest.approx(theirs.volume, rel=1e-9)
        assert parsed.external_ids == {"jarvis": path.stem.removeprefix("POSCAR-")}


def test_poscar_records() -> None:
    for path in sorted(JARVIS.glob("*.vasp"))[:10]:
        (record,) = process_file(path)
        assert isinstance(record, StructureRecord), record
        assert record.spacegroup_number is not None


def test_contcar_name_is_recognised(tmp_path: Path) -> None:
    source = next(iter(sorted(JARVIS.glob("*.vasp"))))
    path = tmp_path / "CONTCAR"
    path.write_bytes(source.read_bytes())
    (parsed,) = parse_file(path)
    assert isinstance(parsed, ParsedStructure)


def test_pymatgen_json(tmp_path: Path) -> None:
    """Structure.as_dict() of real POSCARs, one per file and a list of two."""
    paths = sorted(JARVIS.glob("*.vasp"))[:2]
    structures = [Structure.from_file(p) for p in paths]
    single = tmp_path / "one.json"
    single.write_text(json.dumps(structures[0].as_dict()))
    (parsed,) = parse_file(single)
    assert isinstance(parsed, ParsedStructure)
    assert parsed.numbers.tolist() == list(structures[0].atomic_numbers)
    several = tmp_path / "two.json"
    several.write_text(json.dumps([s.as_dict() for s in structures]))
    results = parse_file(several)
    assert [r.entry for r in results] == [0, 1]
    assert all(isinstance(r, ParsedStructure) for r in results)


def test_ase_json(frames: list[Atoms], tmp_path: Path) -> None:
    path = tmp_path / "frames.json"
    ase.io.write(path, frames[:3], format="json")
    results = parse_file(path)
    assert len(results) == 3
    for result, atoms in zip(results, frames[:3], strict=True):
        assert isinstance(result, ParsedStructure)
        assert result.numbers.tolist() == atoms.numbers.tolist()


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2", "null"])
def test_unusable_json_is_a_parse_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    (rejection,) = parse_file(path)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "parse_error"
    assert str(path) in rejection.message


def assert_every_file_gives_outcomes(paths: list[Path]) -> None:
    for path in paths:
        results = parse_file(path)
        assert results, path
        for result in results:
            assert isinstance(result, ParsedStructure | Rejection)


def test_read_file_never_raises_on_any_sample_file() -> None:
    """Every file of the package's sample (README, licences, CSV and all) gives outcomes."""
    assert_every_file_gives_outcomes(sorted(p for p in SAMPLE.rglob("*") if p.is_file()))


@pytest.mark.shared
def test_read_file_never_raises_on_any_shared_file() -> None:
    """Every file of the shared data folder (licences, CSVs and all) gives outcomes."""
    paths = sorted(p for p in SHARED_DATA.rglob("*") if p.is_file())
    # the 984 COFs are covered by the benchmark; the sample's 40 are read below
    assert_every_file_gives_outcomes(
        [p for p in paths if not (p.parent.name == "cifs" and p.suffix == ".cif")]
    )


def test_read_file_on_cofs() -> None:
    paths = sorted((SAMPLE / "cofs").glob("*.cif"))
    assert len(paths) == 40
    for path in paths:
        (parsed,) = parse_file(path)
        assert isinstance(parsed, ParsedStructure), parsed


def test_dummy_species_in_xyz_is_an_unknown_element(frames: list[Atoms], tmp_path: Path) -> None:
    atoms = frames[0].copy()
    atoms.numbers[0] = 0  # ASE's "X"
    path = tmp_path / "dummy.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    (outcome,) = process_file(path)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "unknown_element"
    assert str(path) in outcome.message
