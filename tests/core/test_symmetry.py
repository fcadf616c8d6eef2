"""Space groups against pymatgen and the CIFs' own declarations; fingerprint invariances."""

from __future__ import annotations

import itertools
import re
import warnings
from pathlib import Path

import gemmi
import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Element, Lattice, Structure
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from pymatgen.symmetry.groups import SpaceGroup

from crystaldb.core.records import ParsedStructure, Rejection, StructureRecord
from crystaldb.core.symmetry import crystal_system, describe
from crystaldb.formats.payload import parse_file, process_file
from tests.realdata import SAMPLE, SHARED_DATA

SYMPREC = 0.1
SAMPLE_COD = SAMPLE / "cod"
# Spinel-type Na2WO4 (Fd-3m), a cubic case only the shared corpus holds.
SHARED_SPINEL = pytest.param(SHARED_DATA / "cod" / "2240656.cif", marks=pytest.mark.shared)
# Ordered real structures: trigonal, orthorhombic, hexagonal, chiral orthorhombic,
# triclinic organic, cubic pyrochlore (Fd-3m), cubic spinel-type; a COF in P1 (fixture below).
FINGERPRINT_CASES = [
    *(SAMPLE_COD / f"{i}.cif" for i in ("1000054", "2010577", "9008901", "2000583", "2000642")),
    SAMPLE_COD / "2002248.cif",
    SHARED_SPINEL,
]
# Files that declare their space group number (_space_group_IT_number or
# _symmetry_Int_Tables_number) and are ordered.
DECLARED = [
    *(SAMPLE_COD / f"{i}.cif" for i in ("1000054", "2010577", "2000642", "2002248", "2310261")),
    SAMPLE_COD / "2019541.cif",
    SHARED_SPINEL,
]


def structure_of(path: Path) -> Structure:
    """pymatgen Structure of our parse of a real file (the fingerprint's input)."""
    (entry,) = parse_file(path)
    assert isinstance(entry, ParsedStructure), entry
    return Structure(entry.lattice, entry.numbers.tolist(), entry.frac_coords)


def key(structure: Structure) -> str:
    """Fingerprint of a pymatgen Structure."""
    return describe(
        structure.lattice.matrix,
        structure.frac_coords,
        np.array(structure.atomic_numbers),
        symprec=SYMPREC,
    )[1]


def as_structure(record: StructureRecord) -> Structure:
    """pymatgen Structure of a stored record."""
    species = [Element.from_Z(z) for z in record.atomic_numbers]
    return Structure(record.lattice, species, record.frac_coords)


def declared_number(path: Path) -> int:
    """The space group number the CIF states."""
    block = gemmi.cif.read(str(path)).sole_block()
    value = block.find_value("_space_group_IT_number") or block.find_value(
        "_symmetry_Int_Tables_number"
    )
    assert value is not None, path
    return int(value)


@pytest.fixture(scope="module")
def cof(sample: Path) -> Structure:
    """The smallest COF of the sample (a P1 CIF)."""
    path = min((sample / "cofs").glob("*.cif"), key=lambda p: p.stat().st_size)
    return structure_of(path)


@pytest.mark.parametrize("path", DECLARED, ids=lambda p: p.stem)
def test_space_group_matches_declared_and_pymatgen(path: Path) -> None:
    (record,) = process_file(path)
    assert isinstance(record, StructureRecord), record
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = CifParser(path).parse_structures(primitive=False)[0]
    sga = SpacegroupAnalyzer(theirs, symprec=SYMPREC)
    assert record.spacegroup_number == declared_number(path)
    assert record.spacegroup_number == sga.get_space_group_number()
    assert record.spacegroup_symbol == sga.get_space_group_symbol()
    assert record.crystal_system == sga.get_crystal_system()
    assert record.symprec == SYMPREC


def test_symprec_is_honoured(cod: Path) -> None:
    """2H graphite-like C4 (COD 1200017) is P6_3mc as published, P6_3/mmc at 0.1 Å."""
    path = cod / "1200017.cif"
    structure = structure_of(path)
    args = (structure.lattice.matrix, structure.frac_coords, np.array(structure.atomic_numbers))
    for symprec in (1e-3, 0.1):
        ours = describe(*args, symprec=symprec)[0]
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        assert ours.number == sga.get_space_group_number()
        assert ours.symprec == symprec
    assert describe(*args, symprec=1e-3)[0].number == declared_number(path)


def test_crystal_system_at_every_boundary() -> None:
    """Against pymatgen's space-group table, on both sides of each system's range."""
    for number in (1, 2, 3, 15, 16, 74, 75, 142, 143, 167, 168, 194, 195, 230):
        assert crystal_system(number) == SpaceGroup.from_int_number(number).crystal_system
    for bad in (0, 231):
        with pytest.raises(ValueError, match="between 1 and 230"):
            crystal_system(bad)


@pytest.mark.parametrize("path", FINGERPRINT_CASES, ids=lambda p: p.stem)
def test_fingerprint_invariances(path: Path) -> None:
    """Site order, origin, supercell, primitive/conventional cell, rotation, handedness."""
    structure = structure_of(path)
    reference = key(structure)
    assert re.fullmatch(r"[0-9a-f]{64}", reference)  # a SHA-256 hex digest
    rng = np.random.default_rng(int(path.stem))

    permuted = Structure.from_sites([structure[i] for i in rng.permutation(len(structure))])
    assert key(permuted) == reference

    shifted = structure.copy()
    shifted.translate_sites(range(len(shifted)), rng.random(3), frac_coords=True, to_unit_cell=True)
    assert key(shifted) == reference

    supercell = structure.copy()
    supercell.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 2]])  # non-diagonal, det 2
    assert len(supercell) == 2 * len(structure)
    assert key(supercell) == reference

    sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
    assert key(sga.get_primitive_standard_structure()) == reference
    assert key(sga.get_conventional_standard_structure()) == reference

    angle = rng.random() * np.pi
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    rotated = Structure(
        Lattice(structure.lattice.matrix @ rotation.T), structure.species, structure.frac_coords
    )
    assert key(rotated) == reference

    # the same crystal in the left-handed basis (-a, -b, -c): coordinates change sign
    flipped = Structure(
        Lattice(-structure.lattice.matrix), structure.species, -structure.frac_coords
    )
    assert key(flipped) == reference

    noisy = structure.copy()
    noisy.perturb(1e-6)
    assert key(noisy) == reference


def test_fingerprint_sees_small_changes(cod: Path) -> None:
    """Moving one atom by 0.05 Å or changing one element gives a different key."""
    structure = structure_of(cod / "2000642.cif")
    reference = key(structure)
    moved = structure.copy()
    moved.translate_sites([0], [0.05, 0, 0], frac_coords=False)
    assert key(moved) != reference
    swapped = structure.copy()
    swapped.replace(0, "Si")
    assert key(swapped) != reference


def test_fingerprint_of_a_large_p1_cof(cof: Structure) -> None:
    reference = key(cof)
    cof = cof.copy()
    cof.translate_sites(range(len(cof)), [0.37, 0.11, 0.5], frac_coords=True)
    assert key(cof) == reference
    cof.make_supercell([1, 1, 2])
    assert key(cof) == reference


def test_mirror_images_of_a_chiral_crystal_differ(cod: Path) -> None:
    """HIO3 (COD 2000583, P2_12_12_1) and its mirror image are different keys."""
    structure = structure_of(cod / "2000583.cif")
    mirrored = Structure(structure.lattice, structure.species, -structure.frac_coords)
    assert key(mirrored) != key(structure)
    centrosymmetric = structure_of(cod / "2000642.cif")  # P-1: its mirror image is itself
    inverted = Structure(
        centrosymmetric.lattice, centrosymmetric.species, -centrosymmetric.frac_coords
    )
    assert key(inverted) == key(centrosymmetric)


def test_different_structures_differ(cod: Path) -> None:
    """Distinct real structures of the sample's COD set give distinct keys, and equal keys
    are confirmed by pymatgen's StructureMatcher."""
    records: list[StructureRecord] = []
    for path in sorted(cod.glob("*.cif")):
        if path.name == "1001614.cif":
            continue
        records += [r for r in process_file(path) if isinstance(r, StructureRecord)]
    by_key: dict[str, list[StructureRecord]] = {}
    for record in records:
        by_key.setdefault(record.fingerprint, []).append(record)
    duplicates = [group for group in by_key.values() if len(group) > 1]
    # the one pair the sample's README names: pyrope deposited twice, 9000618 and 9013162
    assert [sorted(Path(r.path).stem for r in group) for group in duplicates] == [
        ["9000618", "9013162"]
    ]
    matcher = StructureMatcher()
    for group in duplicates:
        first, *others = (as_structure(r) for r in group)
        for other in others:
            assert matcher.fit(first, other), [r.path for r in group]
    # pairs with the same formula but different keys are not the same crystal
    same_formula = [
        (a, b)
        for a, b in itertools.combinations(records, 2)
        if a.hill_formula == b.hill_formula and a.fingerprint != b.fingerprint
    ]
    for a, b in same_formula[:10]:
        first, second = as_structure(a), as_structure(b)
        differs = not StructureMatcher(ltol=0.01, stol=0.01, angle_tol=0.1).fit(first, second)
        assert differs, (a.path, b.path)


def test_symmetry_refuses_non_finite_input_instead_of_crashing(cod: Path) -> None:
    structure = structure_of(cod / "1000054.cif")
    frac = structure.frac_coords.copy()
    frac[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        describe(structure.lattice.matrix, frac, np.array(structure.atomic_numbers), symprec=0.1)


def test_rejection_is_not_a_record(cod: Path) -> None:
    (outcome,) = process_file(cod / "1000023.cif")
    assert isinstance(outcome, Rejection)
