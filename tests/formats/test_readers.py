"""The choice of reader by file name, and its promise: any file gives outcomes, never raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystaldb.core.records import ParsedStructure, Rejection
from crystaldb.formats.payload import parse_file
from tests.realdata import SAMPLE, SHARED_DATA


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
