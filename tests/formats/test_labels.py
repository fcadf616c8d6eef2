"""Label tables beside the structure files (JARVIS id_prop.csv and the like)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystaldb.formats.labels import LabelTableError, file_key, read_label_table
from tests.realdata import SAMPLE


def test_reads_the_real_jarvis_table() -> None:
    table = read_label_table(SAMPLE / "jarvis" / "id_prop.csv", "band_gap:OptB88vdW", code="VASP")
    assert len(table.values) == 50
    assert table.values["POSCAR-JVASP-98225.vasp"] == pytest.approx(0.472)
    assert (table.spec.property, table.spec.functional, table.spec.code) == (
        "band_gap", "OptB88vdW", "VASP"
    )  # fmt: skip
    assert table.for_names(["x/POSCAR-JVASP-98225.vasp", "other.cif"]) == {
        "POSCAR-JVASP-98225.vasp": pytest.approx(0.472)
    }


def test_file_key_is_the_name_of_a_path_or_archive_member() -> None:
    assert file_key("a/b/c.cif") == "c.cif"
    assert file_key("set.zip!inner/d.vasp") == "d.vasp"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.cif,1.0\nb.cif,x\n", r"t\.csv:2: 'x' is not a number"),
        ("a.cif,1.0\na.cif,2.0\n", r"t\.csv:2: a\.cif appears twice"),
        ("a.cif,nan\n", "not a finite number"),
        ("a.cif\n", "expected NAME,VALUE"),
        ("name,gap\n", "no NAME,VALUE rows"),
    ],
)
def test_bad_tables_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(LabelTableError, match=message):
        read_label_table(path, "band_gap:PBE")


def test_method_must_name_property_and_functional(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a.cif,1\n")
    with pytest.raises(LabelTableError, match="--label-method 'gap'"):
        read_label_table(path, "gap")
