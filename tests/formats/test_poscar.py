"""The POSCAR reader on the JARVIS sample: compositions as pymatgen reads them, JARVIS ids."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pymatgen.io.vasp import Poscar

from crystaldb.core.records import ParsedStructure, StructureRecord
from crystaldb.formats.payload import parse_file, process_file
from tests.realdata import SAMPLE

JARVIS = SAMPLE / "jarvis"


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
