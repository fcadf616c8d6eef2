"""The validator on real structures: each refusal reason, and the derived columns."""

from __future__ import annotations

import importlib
import re
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import gemmi
import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from crystaldb.core.records import FLAGS, ParsedStructure, Reason, Rejection, StructureRecord
from crystaldb.core.validate import Limits, validate
from crystaldb.formats.payload import parse_file, process_file
from tests.realdata import SAMPLE, SHARED_DATA, run_python

CHILD = """
import sys
from crystaldb.core.validate import Limits
from crystaldb.formats.payload import process_file
limits = Limits(allow_partial_occupancy=sys.argv[2] == "allow")
for outcome in process_file(sys.argv[1], limits):
    print(getattr(outcome, "reason", "stored"))
    print(getattr(outcome, "message", ""))
"""


def parsed(path: Path) -> ParsedStructure:
    """The single parsed entry of a real file."""
    (result,) = parse_file(path)
    assert isinstance(result, ParsedStructure), result
    return result


def rejected(result: StructureRecord | Rejection, reason: str, path: Path | str) -> Rejection:
    """Assert a refusal with this reason whose message names the file."""
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    assert str(path) in result.message
    return result


def test_cod_1001614_is_refused_without_crashing(cod: Path) -> None:
    """gemmi reads 78 sites, two of them H placeholders with '.' coordinates, which crash
    spglib 2.8; the CIF marks them as dummies, the rest is a disordered Rb model."""
    path = cod / "1001614.cif"
    child = run_python(CHILD, str(path), "default")
    assert child.returncode == 0, child.stderr
    reason, message = child.stdout.splitlines()[:2]
    assert reason == "partial_occupancy"
    assert str(path) in message


def test_cod_1001614_with_partial_occupancy_allowed_does_not_crash(cod: Path) -> None:
    child = run_python(CHILD, str(cod / "1001614.cif"), "allow")
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines()[0] in {"stored", "sites_too_close"}


def test_nan_sites_never_reach_spglib(cod: Path, tmp_path: Path) -> None:
    """Without the 'dum' flag the '.' coordinates are real NaN sites: refused before spglib."""
    text = (cod / "1001614.cif").read_text()
    path = tmp_path / "1001614.cif"
    path.write_text(re.sub(r"(H[12]\s+H1\+.*)\bdum$", r"\1d", text, flags=re.M))
    assert text != path.read_text()
    for allow in ("default", "allow"):
        child = run_python(CHILD, str(path), allow)
        assert child.returncode == 0, child.stderr
        assert child.stdout.splitlines()[0] == "nan_coordinates"


def test_real_files_with_overlapping_sites(cod: Path) -> None:
    """COD 2000056 and 5910234 list atoms twice; pymatgen's distance matrix agrees."""
    for name in ("2000056.cif", "5910234.cif"):
        path = cod / name
        entry = parsed(path)
        structure = Structure(entry.lattice, entry.numbers.tolist(), entry.frac_coords)
        distances = structure.distance_matrix + np.eye(len(structure)) * 1e3
        rejection = rejected(validate(entry), "sites_too_close", path)
        assert f"{distances.min():.3f} Å" in rejection.message


def test_duplicated_atom_row_is_too_close(cod: Path, tmp_path: Path) -> None:
    """A real CIF with one atom row repeated 0.02 in x away."""
    text = (cod / "2010577.cif").read_text()
    lines = text.splitlines()
    start = lines.index("_atom_site_label")
    tags: list[str] = []
    while lines[start + len(tags)].startswith("_atom_site_"):
        tags.append(lines[start + len(tags)])
    row = lines[start + len(tags)].split()
    x = tags.index("_atom_site_fract_x")
    row[0] += "b"
    row[x] = str(float(row[x].split("(")[0]) + 0.02)
    lines.insert(start + len(tags) + 1, " ".join(row))
    path = tmp_path / "2010577.cif"
    path.write_text("\n".join(lines) + "\n")
    rejected(validate(parsed(path)), "sites_too_close", path)


def test_atom_too_close_to_its_own_image(cod: Path) -> None:
    """Mg(OH)2 shrunk tenfold: every site is within 0.5 Å of its own periodic image."""
    original = parsed(cod / "1000054.cif")
    small = replace(original, lattice=original.lattice * 0.1)
    rejection = rejected(validate(small), "sites_too_close", cod / "1000054.cif")
    assert rejection.message


@pytest.mark.parametrize(
    "lattice",
    [
        np.zeros((3, 3)),
        np.array([[5.0, 0, 0], [0, 5.0, 0], [5.0, 5.0, 0]]),  # c = a + b, coplanar
        np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, np.nan]]),
        np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 1e-4, 1e-4]]),  # nearly singular
    ],
)
def test_degenerate_lattices(cod: Path, lattice: np.ndarray) -> None:
    original = parsed(cod / "1000054.cif")
    rejected(validate(replace(original, lattice=lattice)), "degenerate_lattice", original.path)


def test_no_atoms(cod: Path) -> None:
    original = parsed(cod / "1000054.cif")
    empty = replace(
        original, frac_coords=np.zeros((0, 3)), numbers=np.zeros(0, dtype=int), occupancies=None
    )
    rejected(validate(empty), "no_atoms", original.path)


def test_too_many_sites(cod: Path) -> None:
    path = cod / "1000001.cif"  # 1,156 sites in P2_12_12_1
    assert parsed(path).nsites > Limits().max_sites
    rejected(validate(parsed(path)), "too_many_sites", path)
    small = cod / "2000642.cif"
    limits = Limits(max_sites=parsed(small).nsites - 1)
    rejected(validate(parsed(small), limits), "too_many_sites", small)
    assert not isinstance(validate(parsed(small)), Rejection)


def test_partial_occupancy_is_refused_by_default(cod: Path) -> None:
    """COD 1000023 has one Cu site at occupancy 0.9376."""
    path = cod / "1000023.cif"
    block = gemmi.cif.read(str(path)).sole_block()
    occupancies = [float(v.split("(")[0]) for v in block.find_values("_atom_site_occupancy")]
    assert min(occupancies) < 0.99
    rejected(validate(parsed(path)), "partial_occupancy", path)
    record = validate(parsed(path), Limits(allow_partial_occupancy=True))
    assert isinstance(record, StructureRecord), record
    assert record.occupancies is not None
    assert min(record.occupancies) == pytest.approx(min(occupancies))


def test_zero_occupancy_is_invalid(cod: Path, tmp_path: Path) -> None:
    """A site with occupancy 0 is not a site at all: BiSeI (COD 2010577) with Bi's set to 0."""
    document = gemmi.cif.read(str(cod / "2010577.cif"))
    table = document.sole_block().find("_atom_site_", ["type_symbol", "occupancy"])
    (bi,) = (row for row in table if row.str(0) == "Bi")
    bi[1] = "0"
    path = tmp_path / "2010577.cif"
    document.write_file(str(path))
    block = gemmi.cif.read(str(path)).sole_block()
    occupancies = [float(v.split("(")[0]) for v in block.find_values("_atom_site_occupancy")]
    assert sorted(occupancies) == [0.0, 1.0, 1.0]
    rejected(validate(parsed(path)), "invalid_occupancy", path)


@pytest.mark.shared
def test_a_real_file_with_zero_occupancy_is_invalid(shared_cod: Path) -> None:
    """COD 2204368 lists a site with occupancy 0, which is not a site at all."""
    path = shared_cod / "2204368.cif"
    block = gemmi.cif.read(str(path)).sole_block()
    occupancies = [float(v.split("(")[0]) for v in block.find_values("_atom_site_occupancy")]
    assert min(occupancies) <= 0
    rejected(validate(parsed(path)), "invalid_occupancy", path)


def test_dummy_rows_do_not_count(cod: Path) -> None:
    """COD 1000451 ends its atom loop with 'H8 ... -1. -1. -1. 5. 0 dum' (5 H, no positions):
    a placeholder the CIF marks as dummy, dropped rather than read as occupancy 5."""
    path = cod / "1000451.cif"
    table = gemmi.cif.read(str(path)).sole_block().find("_atom_site_", ["label", "calc_flag"])
    assert [row.str(0) for row in table if row.str(1) == "dum"] == ["H8"]
    record = validate(parsed(path))
    assert isinstance(record, StructureRecord), record
    assert "dummy_sites_dropped" in record.flags
    assert "H" not in record.elements


def test_organic_without_hydrogen_flag(cod: Path, tmp_path: Path) -> None:
    """Flagged when C is present without H; the H-stripped copy of an organic is flagged."""
    with_h = validate(parsed(cod / "2000642.cif"))
    assert isinstance(with_h, StructureRecord)
    assert "organic_without_hydrogen" not in with_h.flags
    text = (cod / "2000642.cif").read_text()
    stripped = "\n".join(ln for ln in text.splitlines() if not ln.startswith("H("))
    path = tmp_path / "2000642.cif"
    path.write_text(stripped + "\n")
    without_h = validate(parsed(path))
    assert isinstance(without_h, StructureRecord), without_h
    assert "H" not in without_h.elements
    assert "organic_without_hydrogen" in without_h.flags
    inorganic = validate(parsed(cod / "2010577.cif"))  # BiSeI
    assert isinstance(inorganic, StructureRecord)
    assert "organic_without_hydrogen" not in inorganic.flags


@pytest.mark.parametrize(
    "path",
    [
        *(SAMPLE / "cod" / f"{i}.cif" for i in ("1000054", "2010577", "2000642", "2002248")),
        SAMPLE / "cod" / "1100709.cif",
        pytest.param(SHARED_DATA / "cod" / "2240656.cif", marks=pytest.mark.shared),
    ],
    ids=lambda p: p.stem,
)
def test_record_columns_agree_with_pymatgen(path: Path) -> None:
    """Formulas, volume, density and crystal system, recomputed from pymatgen's own reading."""
    record = validate(parsed(path))
    assert isinstance(record, StructureRecord), record
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = CifParser(path).parse_structures(primitive=False)[0]
    comp = structure.composition
    assert record.nsites == len(structure)
    assert record.reduced_formula == comp.reduced_formula
    assert record.hill_formula == comp.hill_formula.replace(" ", "")
    assert record.anonymous_formula == comp.anonymized_formula
    assert record.elements == sorted(el.symbol for el in comp.element_composition.elements)
    assert record.nelements == len(comp.elements)
    assert record.volume == pytest.approx(structure.volume, rel=1e-6)
    assert record.density == pytest.approx(structure.density, rel=1e-6)
    sga = SpacegroupAnalyzer(structure, symprec=record.symprec)
    assert record.crystal_system == sga.get_crystal_system()
    assert record.external_ids == {"cod": path.stem}
    assert np.array(record.lattice).shape == (3, 3)
    assert np.array(record.frac_coords).shape == (record.nsites, 3)
    assert len(record.atomic_numbers) == record.nsites
    assert record.occupancies is None


def test_all_cod_files_give_known_outcomes(cod: Path) -> None:
    """No exception escapes and every reason is a documented code."""
    counts: Counter[str] = Counter()
    for path in sorted(cod.glob("*.cif")):
        if path.name == "1001614.cif":
            continue  # exercised in a child process above
        for outcome in process_file(path):
            if isinstance(outcome, Rejection):
                assert outcome.reason in {r.value for r in Reason}
                assert str(path) in outcome.message
                counts[outcome.reason] += 1
            else:
                assert 0 < outcome.nsites <= 500
                assert len(outcome.fingerprint) == 64
                counts["stored"] += 1
    assert counts["stored"] == 111, counts  # as the sample's README states
    assert "internal_error" not in counts and "symmetry_failed" not in counts, counts


def test_every_flag_the_filters_accept_is_documented() -> None:
    """FLAGS (the one list the filters accept) are exactly the flags validate.py explains."""
    doc = importlib.import_module("crystaldb.core.validate").__doc__ or ""
    section = doc.split("\nFlags (")[1]
    documented = re.findall(r"^- ``(\w+)``(?: and ``(\w+)``)?", section, re.MULTILINE)
    assert {name for pair in documented for name in pair if name} == set(FLAGS)
