"""The JSON reader: pymatgen Structure dicts, ASE database files, and what is neither."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import pytest
from ase import Atoms
from pymatgen.core import Structure

from crystaldb.core.records import ParsedStructure, Rejection
from crystaldb.formats.payload import parse_file
from tests.realdata import SAMPLE

JARVIS = SAMPLE / "jarvis"


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
