"""The OMDB-GAP1 layout reader, on a release-shaped folder built from real molecular crystals."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest

from crystaldb.core.records import IngestError, ParsedStructure, Rejection, StructureRecord
from crystaldb.formats.omdb_gap1 import read_omdb_gap1
from crystaldb.formats.payload import process_omdb_gap1
from tests.realdata import MOLECULAR_XYZ


@pytest.fixture
def layout(cod: Path, tmp_path: Path) -> tuple[Path, list[float], list[str]]:
    """structures.xyz (20 real frames), bandgaps.csv as %.18e, CODids.csv with real COD ids.

    The gaps are made up (uniform in [0, 8) eV, one exact zero like the real release has);
    the ids are those of the sample's COD files, only to have real seven-digit ids.
    """
    folder = tmp_path / "omdb-gap1"
    folder.mkdir()
    shutil.copyfile(MOLECULAR_XYZ, folder / "structures.xyz")
    n = len(ase.io.read(MOLECULAR_XYZ, index=":"))
    gaps = np.random.default_rng(7).uniform(0.0, 8.0, n).tolist()
    gaps[3] = 0.0
    ids = sorted(p.stem for p in cod.glob("*.cif"))[:n]
    (folder / "bandgaps.csv").write_text("".join(f"{g:.18e}\n" for g in gaps))
    (folder / "CODids.csv").write_text("".join(f"{i}\n" for i in ids))
    return folder, gaps, ids


def test_reads_every_frame_with_its_gap_and_id(layout: tuple[Path, list[float], list[str]]) -> None:
    folder, gaps, ids = layout
    results = read_omdb_gap1(folder)
    frames = ase.io.read(folder / "structures.xyz", index=":")
    assert len(results) == len(frames) == len(gaps)
    sha = hashlib.sha256((folder / "structures.xyz").read_bytes()).hexdigest()
    for entry, (result, atoms) in enumerate(zip(results, frames, strict=True)):
        assert isinstance(result, ParsedStructure), result
        assert result.entry == entry
        assert result.path == str(folder / "structures.xyz")
        assert result.properties == {"band_gap": gaps[entry]}
        assert result.external_ids == {"cod": ids[entry]}
        assert result.numbers.tolist() == atoms.numbers.tolist()
        assert result.sha256 == sha


def test_the_18_digit_format_round_trips(layout: tuple[Path, list[float], list[str]]) -> None:
    folder, gaps, _ = layout
    first_line = (folder / "bandgaps.csv").read_text().splitlines()[0]
    assert first_line == f"{gaps[0]:.18e}"
    assert read_omdb_gap1(folder)[0].properties["band_gap"] == float(first_line)  # type: ignore[union-attr]


def test_validated_records_keep_labels(layout: tuple[Path, list[float], list[str]]) -> None:
    folder, gaps, ids = layout
    outcomes = process_omdb_gap1(folder)
    records = [o for o in outcomes if isinstance(o, StructureRecord)]
    assert len(records) > len(outcomes) // 2
    for record in records:
        assert record.properties["band_gap"] == gaps[record.entry]
        assert record.external_ids == {"cod": ids[record.entry]}
    for outcome in outcomes:
        if isinstance(outcome, Rejection):
            # two frames of this file have a transposed Lattice string and overlapping atoms
            assert outcome.reason == "sites_too_close"


def test_trailing_blank_line_is_fine(layout: tuple[Path, list[float], list[str]]) -> None:
    folder, _, _ = layout
    with (folder / "CODids.csv").open("a") as handle:
        handle.write("\n\n")
    assert len(read_omdb_gap1(folder)) == 20


def test_mismatched_counts(layout: tuple[Path, list[float], list[str]]) -> None:
    folder, gaps, _ = layout
    (folder / "bandgaps.csv").write_text("".join(f"{g:.18e}\n" for g in gaps[:-1]))
    with pytest.raises(IngestError) as caught:
        read_omdb_gap1(folder)
    assert caught.value.reason == "layout_mismatch"
    message = caught.value.message
    assert "20 frames" in message and "19 lines" in message
    for name in ("structures.xyz", "bandgaps.csv", "CODids.csv"):
        assert name in message


@pytest.mark.parametrize(
    ("name", "bad", "expected"),
    [
        ("bandgaps.csv", "n/a", "band gap"),
        ("bandgaps.csv", "-1.0e+00", "band gap"),
        ("bandgaps.csv", "nan", "band gap"),
        ("bandgaps.csv", "", "band gap"),
        ("CODids.csv", "40744x7", "COD id"),
        ("CODids.csv", "4074437.0", "COD id"),
    ],
)
def test_bad_line_names_file_and_line(
    layout: tuple[Path, list[float], list[str]], name: str, bad: str, expected: str
) -> None:
    folder, _, _ = layout
    lines = (folder / name).read_text().splitlines()
    lines[4] = bad
    (folder / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError) as caught:
        read_omdb_gap1(folder)
    assert caught.value.reason == "bad_label"
    assert caught.value.message.startswith(f"{folder / name}:5: expected")
    assert expected in caught.value.message


def test_missing_file(layout: tuple[Path, list[float], list[str]]) -> None:
    folder, _, _ = layout
    (folder / "CODids.csv").unlink()
    with pytest.raises(IngestError) as caught:
        read_omdb_gap1(folder)
    assert caught.value.reason == "missing_file"
    assert "CODids.csv" in caught.value.message


def test_unreadable_structures(layout: tuple[Path, list[float], list[str]]) -> None:
    folder, _, _ = layout
    text = (folder / "structures.xyz").read_text().splitlines()
    (folder / "structures.xyz").write_text("\n".join(text[:50]) + "\n")  # cut inside frame 0
    with pytest.raises(IngestError) as caught:
        read_omdb_gap1(folder)
    assert caught.value.reason == "parse_error"
    assert "structures.xyz" in caught.value.message
