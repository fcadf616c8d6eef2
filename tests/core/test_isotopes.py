"""Deuterium is kept: per-site mass numbers, the deuterated density, a flag, its own fingerprint.

gemmi reads D as hydrogen's atomic number with its own element, which crystaldb used to drop:
densities of deuterated crystals came out 0.6-1.3% low and such a crystal shared the
fingerprint of its protiated twin.  Real COD files (all three in the package sample).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from pymatgen.io.cif import CifParser
from sqlalchemy import select

from crystaldb.core.isotopes import isotope_masses, mass_numbers_from_masses
from crystaldb.core.records import ParsedStructure, StructureRecord
from crystaldb.core.validate import validate
from crystaldb.formats.cif import parse_cif_text
from crystaldb.formats.payload import parse_file
from crystaldb.jobs.ingest import ingest_paths
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.schema import Source, Structure
from tests.conftest import DatabaseFactory
from tests.realdata import SAMPLE

COD = SAMPLE / "cod"
# COD id: (D sites in the cell, the deuterated record's reduced formula, density in g/cm^3
# computed by hand: cell mass with D = 2.014102 u over the cell volume)
DEUTERATED = {
    "1000002": (12, "SrH3C3O7", 2.6179),
    "2103766": (16, "Ba(HO)2", 4.5893),
    "2000583": (4, "HIO3", 4.6670),
}
# AME2020 atomic masses (u), for checking the masses crystaldb derives from CODATA.
AME_DEUTERIUM = 2.01410177812
AME_TRITIUM = 3.01604928132


def _parsed(cod_id: str) -> ParsedStructure:
    (parsed,) = parse_file(COD / f"{cod_id}.cif")
    assert isinstance(parsed, ParsedStructure), parsed
    return parsed


def _record(parsed: ParsedStructure) -> StructureRecord:
    record = validate(parsed)
    assert isinstance(record, StructureRecord), record
    return record


def _protiated(text: str) -> str:
    """COD 2000583 with its one D row written as H: the same crystal, light hydrogen."""
    twin, n = re.subn(r"^D (?=\.2361)", "H ", text, flags=re.MULTILINE)
    assert n == 1
    return twin


def test_isotope_masses_are_the_atoms_not_the_nuclei() -> None:
    masses = isotope_masses()
    assert masses[(1, 2)] == pytest.approx(AME_DEUTERIUM, abs=1e-7)
    assert masses[(1, 3)] == pytest.approx(AME_TRITIUM, abs=1e-7)


@pytest.mark.parametrize("cod_id", sorted(DEUTERATED))
def test_deuterium_sites_keep_mass_number_2(cod_id: str) -> None:
    parsed = _parsed(cod_id)
    assert parsed.mass_numbers is not None
    hydrogen = parsed.numbers == 1
    assert int(hydrogen.sum()) == DEUTERATED[cod_id][0]
    assert set(parsed.mass_numbers[hydrogen].tolist()) == {2}
    assert not parsed.mass_numbers[~hydrogen].any()


@pytest.mark.parametrize("cod_id", sorted(DEUTERATED))
def test_deuterated_density_formula_and_flag(cod_id: str) -> None:
    _, formula, density = DEUTERATED[cod_id]
    parsed = _parsed(cod_id)
    record = _record(parsed)
    light = _record(replace(parsed, mass_numbers=None))

    assert record.density == pytest.approx(density, abs=1e-4)
    assert 0.005 < 1 - light.density / record.density < 0.013  # what was stored before
    assert record.reduced_formula == light.reduced_formula == formula  # H, as OPTIMADE wants
    assert "deuterated" in record.flags and "deuterated" not in light.flags
    assert record.mass_numbers == parsed.mass_numbers.tolist()
    assert light.mass_numbers is None


def test_density_agrees_with_the_file_and_pymatgen() -> None:
    """COD 2000583 states 4.67 g/cm^3; pymatgen (D at the deuteron's mass) agrees to 1e-4."""
    record = _record(_parsed("2000583"))
    text = (COD / "2000583.cif").read_text()
    stated = float(re.search(r"_exptl_crystal_density_diffrn\s+(\S+)", text).group(1))
    assert record.density == pytest.approx(stated, abs=0.005)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (structure,) = CifParser(COD / "2000583.cif").parse_structures(primitive=False)
    assert record.density == pytest.approx(float(structure.density), rel=1e-4)


def test_a_deuterated_crystal_and_its_protiated_twin_have_different_fingerprints() -> None:
    text = (COD / "2000583.cif").read_text()
    (heavy,) = parse_cif_text(text, "2000583.cif")
    (light,) = parse_cif_text(_protiated(text), "2000583-H.cif")
    assert isinstance(heavy, ParsedStructure) and isinstance(light, ParsedStructure)
    assert light.mass_numbers is None
    deuterated, protiated = _record(heavy), _record(light)
    assert deuterated.fingerprint != protiated.fingerprint
    assert deuterated.spacegroup_number == protiated.spacegroup_number == 19
    # a site order change keeps each fingerprint: the isotope travels with its site
    order = np.random.default_rng(0).permutation(heavy.nsites)
    shuffled = replace(
        heavy,
        frac_coords=heavy.frac_coords[order],
        numbers=heavy.numbers[order],
        mass_numbers=heavy.mass_numbers[order],
    )
    assert _record(shuffled).fingerprint == deuterated.fingerprint


def test_the_pymatgen_reader_keeps_deuterium_and_tritium() -> None:
    text = (COD / "2000583.cif").read_text()
    (by_gemmi,) = parse_cif_text(text, "2000583.cif")
    (by_pymatgen,) = parse_cif_text(text, "2000583.cif", engine="pymatgen")
    assert isinstance(by_gemmi, ParsedStructure) and isinstance(by_pymatgen, ParsedStructure)
    assert sorted(by_pymatgen.mass_numbers.tolist()) == sorted(by_gemmi.mass_numbers.tolist())
    assert _record(by_pymatgen).density == pytest.approx(_record(by_gemmi).density, rel=1e-12)
    # gemmi knows no T: the block goes to pymatgen, which reads tritium
    tritiated = re.sub(r"^D (?=\.2361)", "T ", text, flags=re.MULTILINE)
    (parsed,) = parse_cif_text(tritiated, "2000583-T.cif")
    assert isinstance(parsed, ParsedStructure) and "pymatgen_fallback" in parsed.flags
    assert sorted(set(parsed.mass_numbers.tolist())) == [0, 3]
    assert _record(parsed).density > _record(by_gemmi).density


def test_extended_xyz_masses_carry_the_isotope(tmp_path: Path) -> None:
    parsed = _parsed("2103766")
    record = _record(parsed)
    atoms = Atoms(
        numbers=parsed.numbers, scaled_positions=parsed.frac_coords, cell=parsed.lattice, pbc=True
    )
    frame = tmp_path / "2103766.extxyz"
    masses = atoms.get_masses()  # ase's natural masses
    masses[parsed.mass_numbers == 2] = isotope_masses()[(1, 2)]
    atoms.set_masses(masses)
    ase.io.write(frame, atoms, format="extxyz")

    (again,) = parse_file(frame)
    assert isinstance(again, ParsedStructure)
    assert again.mass_numbers.tolist() == parsed.mass_numbers.tolist()
    assert _record(again).fingerprint == record.fingerprint
    assert _record(again).density == pytest.approx(record.density, rel=1e-9)


def test_explicit_masses_other_than_an_isotopes_are_natural() -> None:
    numbers = np.array([1, 1, 1, 8, 6])
    masses = np.array([2.0141, 3.01605, 1.008, 17.999, 13.003])
    assert mass_numbers_from_masses(numbers, masses).tolist() == [2, 3, 0, 0, 0]
    assert mass_numbers_from_masses(numbers[2:], masses[2:]) is None


@pytest.fixture
def fresh(databases: DatabaseFactory, tmp_path: Path) -> tuple[Settings, Database]:
    return databases.migrated("crystaldb_isotopes", tmp_path / "store")


@pytest.mark.slow
def test_stored_deuterated_crystal_is_not_merged_with_its_twin(
    fresh: tuple[Settings, Database], tmp_path: Path
) -> None:
    settings, db = fresh
    folder = tmp_path / "cifs"
    folder.mkdir()
    text = (COD / "2000583.cif").read_text()
    (folder / "2000583.cif").write_text(text)
    (folder / "protiated.cif").write_text(_protiated(text))
    (folder / "1000002.cif").write_text((COD / "1000002.cif").read_text())

    summary = ingest_paths(db, settings, [folder], workers=1)

    assert (summary.counts.stored, summary.counts.duplicates) == (3, 0)
    with db.session() as session:
        rows = {
            Path(path).name: (mass_numbers, flags, density, formula)
            for path, mass_numbers, flags, density, formula in session.execute(
                select(
                    Source.path,
                    Structure.mass_numbers,
                    Structure.flags,
                    Structure.density,
                    Structure.reduced_formula,
                ).join(Structure, Structure.id == Source.structure_id)
            )
        }
    masses, flags, density, formula = rows["2000583.cif"]
    assert sorted(masses) == [0] * 16 + [2] * 4 and flags == ["deuterated"]
    assert density == pytest.approx(DEUTERATED["2000583"][2], abs=1e-4)
    assert rows["protiated.cif"][:2] == (None, [])
    assert rows["protiated.cif"][3] == formula == "HIO3"
    assert rows["1000002.cif"][1] == ["deuterated"]
