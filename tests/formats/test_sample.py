"""The sample shipped in the package: real files, licences, and the outcomes its README states."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from crystaldb.core.records import Rejection, StructureRecord
from crystaldb.formats.payload import process_file


def readme_rejections(sample: Path) -> dict[str, set[str]]:
    """The expected-rejections table of the sample README: reason -> files."""
    text = (sample / "README.md").read_text()
    table = text.split("<!-- expected-rejections: begin -->")[1].split("<!-- expected-")[0]
    expected: dict[str, set[str]] = {}
    for line in table.splitlines():
        match = re.match(r"\| `(\w+)` \| (\d+) \| .* \| ([^|]+) \|$", line)
        if match:
            files = {f.strip() for f in match.group(3).split(",")}
            assert len(files) == int(match.group(2)), line
            expected[match.group(1)] = files
    return expected


def test_layout_size_and_licences(sample: Path) -> None:
    assert len(list((sample / "cod").glob("*.cif"))) == 215
    assert len(list((sample / "cofs").glob("*.cif"))) == 40
    assert len(list((sample / "malformed").glob("*.cif"))) == 8
    assert len(list((sample / "jarvis").glob("POSCAR-JVASP-*.vasp"))) == 70
    assert len((sample / "jarvis" / "id_prop.csv").read_text().splitlines()) == 50
    assert "MIT License" in (sample / "cofs" / "LICENSE").read_text()
    assert "National Institute of" in (sample / "jarvis" / "LICENSE.rst").read_text()
    total = sum(p.stat().st_size for p in sample.rglob("*") if p.is_file())
    assert total < 3_000_000


@pytest.mark.shared
def test_files_are_unchanged_copies(sample: Path, shared_data: Path) -> None:
    sources = {
        "cod": ("cod", "*.cif"),
        "cofs": ("cofs/cifs", "*.cif"),
        "malformed": ("cif-malformed", "*.cif"),
        "jarvis": ("jarvis-sample", "*"),  # the POSCARs, id_prop.csv and LICENSE.rst
    }
    for folder, (source, pattern) in sources.items():
        paths = list((sample / folder).glob(pattern))
        assert paths, folder
        for path in paths:
            assert path.read_bytes() == (shared_data / source / path.name).read_bytes(), path
    assert (sample / "cofs" / "LICENSE").read_bytes() == (
        shared_data / "cofs" / "LICENSE"
    ).read_bytes()


def test_outcomes_are_those_the_readme_states(sample: Path) -> None:
    """Every refusal listed in README.md happens, and nothing else is refused."""
    expected = readme_rejections(sample)
    refused: dict[str, set[str]] = {}
    stored: Counter[str] = Counter()
    keys: dict[str, set[str]] = {"cod": set(), "cofs": set()}
    for folder in ("cod", "cofs", "malformed"):
        for path in sorted((sample / folder).glob("*.cif")):
            for outcome in process_file(path):
                if isinstance(outcome, Rejection):
                    refused.setdefault(outcome.reason, set()).add(f"{folder}/{path.name}")
                else:
                    assert isinstance(outcome, StructureRecord)
                    stored[folder] += 1
                    keys[folder].add(outcome.fingerprint)
    assert refused == expected
    assert stored == {"cod": 111, "cofs": 40}
    # 9000618 and 9013162 are the same pyrope data deposited twice
    assert {k: len(v) for k, v in keys.items()} == {"cod": 110, "cofs": 40}
