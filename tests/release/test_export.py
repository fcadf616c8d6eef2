"""The exporters on real structures: formats read back, bytes repeat, failures leave nothing."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import ase.io
import chemiscope
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from PIL import Image
from pymatgen.core import Structure

from crystaldb.core.embedding import kernel_pca
from crystaldb.core.errors import CrystaldbError
from crystaldb.core.records import ParsedStructure, StructureRecord
from crystaldb.core.release_data import (
    Member,
    ReleaseData,
    element_counts,
    label_statistics,
    spacegroup_counts,
)
from crystaldb.formats.chemiscope import KernelMap, MapColumn, read_dataset
from crystaldb.formats.extxyz import atoms_of
from crystaldb.formats.members import numbers_of
from crystaldb.formats.omdb_gap1 import read_omdb_gap1, split_rule
from crystaldb.formats.payload import process_omdb_gap1
from crystaldb.release import export, plots
from crystaldb.release.export import FORMATS, ExportError, export_release
from crystaldb.release.manifest import MANIFEST
from tests.realdata import REPO
from tests.release.conftest import member_of, release_of

FORMAT_FILES = {
    "omdb-gap1": {"structures.xyz", "bandgaps.csv", "CODids.csv", "README.md"},
    "extxyz": {"structures.extxyz"},
    "matbench": {"omdb-test.json.gz", "metadata.json", "folds.json"},
    "optimade-jsonl": {"optimade.jsonl"},
    "parquet": {"members.parquet"},
    "chemiscope": {"omdb-test.chemiscope.json.gz"},
}
PLOTS = {"band_gap_histogram.png", "elements.png", "spacegroups.png"}


@pytest.fixture(scope="module")
def release_map(release: ReleaseData) -> KernelMap:
    """The map the chemiscope format draws (the other formats ignore it)."""
    return map_of(release)


def map_of(release: ReleaseData) -> KernelMap:
    """A kernel map of the members, in reverse order with one more point: kernel PCA of the
    linear kernel of their element fractions, coloured by their gaps (as `load_map` names)."""
    members = release.members[::-1]
    symbols = sorted({e for m in members for e in m.elements})
    fractions = np.array(
        [[np.mean(numbers_of(m) == atomic_numbers[e]) for e in symbols] for m in members]
    )
    points = kernel_pca(
        np.vstack([fractions, fractions[:1]]) @ np.vstack([fractions, fractions[:1]]).T
    )
    gaps = tuple(float(m.label) if m.label is not None else math.nan for m in members)
    return KernelMap(
        embedding_id=7,
        kernel_id=3,
        method="kpca",
        parameters={"kernel_id": 3, "method": "kpca", "components": 2},
        run_id=11,
        structure_ids=(*(m.structure_id for m in members), 999_999),
        points=points,
        formulas=(*(m.reduced_formula for m in members), "Si"),
        sizes=(*(len(m.atomic_numbers) for m in members), 2),
        columns={"band gap: PBE": MapColumn((*gaps, math.nan), "DFT band gap (PBE)", "eV")},
    )


@pytest.fixture(scope="module")
def exported(
    release: ReleaseData, release_map: KernelMap, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Every format exported once, for the tests that only read."""
    root = tmp_path_factory.mktemp("exports")
    return {fmt: _export(release, fmt, root / fmt, release_map) for fmt in FORMATS}


def _export(data: ReleaseData, fmt: str, out: Path, kernel_map: KernelMap | None = None) -> Path:
    export_release(data, fmt, out, kernel_map)  # only the chemiscope format draws the map
    return out


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def _cartesian(member: Member) -> np.ndarray:
    return np.asarray(member.frac_coords) @ np.asarray(member.lattice)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# --- every format ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_twice_gives_identical_bytes(
    release: ReleaseData,
    release_map: KernelMap,
    exported: dict[str, Path],
    tmp_path: Path,
    fmt: str,
) -> None:
    again = _export(release, fmt, tmp_path / "again", release_map)
    assert _digests(again) == _digests(exported[fmt])


@pytest.mark.parametrize("fmt", FORMATS)
def test_folder_holds_format_files_plots_and_manifest(
    release: ReleaseData, release_map: KernelMap, tmp_path: Path, fmt: str
) -> None:
    files = export_release(release, fmt, tmp_path / "out", release_map)
    names = {p.name for p in files}
    assert names == FORMAT_FILES[fmt] | PLOTS | {MANIFEST}
    assert all(p.parent == tmp_path / "out" and p.is_file() for p in files)
    assert [p.name for p in files] == sorted(names)
    assert _leftovers(tmp_path) == ["out"]  # no temporary sibling left


@pytest.mark.parametrize("fmt", FORMATS)
def test_manifest_checksums_every_other_file(exported: dict[str, Path], fmt: str) -> None:
    folder = exported[fmt]
    files = _manifest(folder)["files"]
    assert set(files) == {p.name for p in folder.iterdir()} - {MANIFEST}
    for name, entry in files.items():
        data = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_manifest_describes_the_release(release: ReleaseData, exported: dict[str, Path]) -> None:
    text = (exported["omdb-gap1"] / MANIFEST).read_text(encoding="utf-8")
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, indent=2) + "\n"
    assert document["format"] == "omdb-gap1"
    assert document["release"] == {"name": "omdb-test", "version": "1.0"}
    assert document["query"] == release.query
    assert document["split_spec"] == "ordered:30,8"
    assert document["members"] == 38
    assert document["split_counts"] == {"train": 30, "test": 8}
    ids = [m.structure_id for m in release.members]
    assert document["splits"] == {"train": ids[:30], "test": ids[30:]}
    label = document["label"]
    assert (label["property"], label["unit"], label["method"]) == (
        "band_gap",
        "eV",
        release.label_method,
    )
    assert label["statistics"]["count"] == 38
    assert label["statistics"]["zeros"] == 1
    assert document["crystaldb_version"] == release.crystaldb_version
    assert document["database"] == release.database_identity
    assert "time" not in text and "date" not in text  # nothing that changes between runs


def test_manifests_of_formats_differ_only_in_format_and_files(exported: dict[str, Path]) -> None:
    documents = [_manifest(folder) for folder in exported.values()]
    for document in documents:
        document.pop("format")
        document.pop("files")
    assert all(document == documents[0] for document in documents)


# --- omdb-gap1 -------------------------------------------------------------------------------


def test_omdb_gap1_reads_back_through_crystaldbs_importer(
    release: ReleaseData, exported: dict[str, Path]
) -> None:
    entries = read_omdb_gap1(exported["omdb-gap1"])
    assert len(entries) == len(release.members)
    for entry, member in zip(entries, release.members, strict=True):
        assert isinstance(entry, ParsedStructure), entry
        assert entry.properties["band_gap"] == member.label  # %.18e round-trips exactly
        assert entry.external_ids == {"cod": member.external_ids["cod"]}
        assert entry.numbers.tolist() == list(member.atomic_numbers)
        np.testing.assert_allclose(entry.lattice, member.lattice, rtol=0, atol=1e-12)
        # positions are written with 8 decimals; compare fractional coordinates periodically
        delta = entry.frac_coords - np.asarray(member.frac_coords)
        np.testing.assert_allclose(delta - np.round(delta), 0.0, atol=1e-8)


def test_omdb_gap1_export_import_export_gives_the_same_bytes(
    release: ReleaseData, exported: dict[str, Path], tmp_path: Path
) -> None:
    """Atoms on a triclinic cell face come back from XYZ as 0.9999999999: still the same bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = process_omdb_gap1(exported["omdb-gap1"])
    members = []
    for record, member in zip(records, release.members, strict=True):
        assert isinstance(record, StructureRecord), record
        again = member_of(record, member.position, member.split, record.properties["band_gap"])
        members.append(dataclasses.replace(again, structure_id=member.structure_id))
    second = _export(release_of(members), "omdb-gap1", tmp_path / "second")
    assert _digests(second) == _digests(exported["omdb-gap1"])


def test_omdb_gap1_files_are_plain_columns(release: ReleaseData, exported: dict[str, Path]) -> None:
    folder = exported["omdb-gap1"]
    gaps = (folder / "bandgaps.csv").read_text().splitlines()
    assert gaps[0] == f"{release.members[0].label:.18e}"
    assert gaps[3] == "0.000000000000000000e+00"
    np.testing.assert_array_equal(
        np.loadtxt(folder / "bandgaps.csv"), [m.label for m in release.members]
    )
    cods = np.loadtxt(folder / "CODids.csv", dtype=int)
    assert cods.tolist() == [int(m.external_ids["cod"]) for m in release.members]
    frames = ase.io.read(folder / "structures.xyz", index=":")
    assert all(frame.pbc.all() for frame in frames)
    header = (folder / "structures.xyz").read_text().splitlines()[1]
    assert 'pbc="T T T"' in header and header.startswith("Lattice=")


def test_omdb_gap1_readme_describes_the_release(
    release: ReleaseData, exported: dict[str, Path]
) -> None:
    readme = (exported["omdb-gap1"] / "README.md").read_text(encoding="utf-8")
    stats = label_statistics([float(m.label) for m in release.members if m.label is not None])
    assert stats is not None
    for text in (
        "# omdb-test 1.0",
        "| `structures.xyz` |",
        "| `bandgaps.csv` |",
        "| `CODids.csv` |",
        "- structures: 38",
        "- elements: 29 distinct: H, Li, Be, B, C, N, O",
        "- space groups: 15 distinct",
        f"| mean | {stats.mean:.4f} |",
        f"| median | {stats.median:.4f} |",
        f"| standard deviation | {stats.std:.4f} |",
        f"| minimum | {stats.minimum:.4f} |",
        f"| maximum | {stats.maximum:.4f} |",
        "| exact zeros | 1 |",
        "first 30 train, last 8 test (split spec `ordered:30,8`)",
        "- functional: PBE",
        "- code: VASP",
        '- parameters: `{"encut": 520, "kpoint_density": 1000}`',
        "ase.io.read('structures.xyz', index=':')",
        "np.loadtxt('bandgaps.csv')",
        "train_x, train_y = structures[0:30], band_gaps[0:30]",
    ):
        assert text in readme, text


def test_split_rule_in_words(release: ReleaseData) -> None:
    members = release.members
    assert split_rule(release) == "first 30 train, last 8 test"
    three = [
        dataclasses.replace(m, split="valid") if 20 <= i < 30 else m for i, m in enumerate(members)
    ]
    assert (
        split_rule(dataclasses.replace(release, members=tuple(three)))
        == "first 20 train, next 10 valid, last 8 test"
    )
    mixed = [
        dataclasses.replace(m, split="test" if i % 2 else "train") for i, m in enumerate(members)
    ]
    assert split_rule(dataclasses.replace(release, members=tuple(mixed))).startswith(
        "19 train, 19 test, interleaved"
    )


# --- the other formats -----------------------------------------------------------------------


def test_extxyz_reads_back_with_ase(release: ReleaseData, exported: dict[str, Path]) -> None:
    frames = ase.io.read(exported["extxyz"] / "structures.extxyz", index=":")
    assert len(frames) == len(release.members)
    for atoms, member in zip(frames, release.members, strict=True):
        assert atoms.numbers.tolist() == list(member.atomic_numbers)
        np.testing.assert_allclose(atoms.cell.array, member.lattice, rtol=0, atol=1e-12)
        np.testing.assert_allclose(atoms.positions, _cartesian(member), rtol=0, atol=1e-7)
        assert atoms.info["structure_id"] == member.structure_id
        assert atoms.info["split"] == member.split
        assert atoms.info["band_gap"] == member.label
        assert str(atoms.info["cod_id"]) == member.external_ids["cod"]


def test_matbench_reads_back_as_pymatgen_structures(
    release: ReleaseData, exported: dict[str, Path]
) -> None:
    folder = exported["matbench"]
    with gzip.open(folder / "omdb-test.json.gz", "rt", encoding="utf-8") as handle:
        frame = json.load(handle)
    assert frame["columns"] == ["structure", "band_gap"]
    assert frame["index"] == [m.position for m in release.members]
    for (structure_dict, gap), member in zip(frame["data"], release.members, strict=True):
        structure = Structure.from_dict(structure_dict)
        assert [site.specie.Z for site in structure] == list(member.atomic_numbers)
        np.testing.assert_allclose(structure.lattice.matrix, member.lattice, atol=1e-12)
        np.testing.assert_allclose(structure.frac_coords, member.frac_coords, atol=1e-12)
        assert gap == member.label
    metadata = json.loads((folder / "metadata.json").read_text())
    gaps = np.array([m.label for m in release.members])
    assert metadata["n_samples"] == 38
    assert (metadata["target"], metadata["unit"]) == ("band_gap", "eV")
    assert metadata["mad"] == pytest.approx(np.mean(np.abs(gaps - gaps.mean())), rel=1e-12)
    folds = json.loads((folder / "folds.json").read_text())
    assert folds["assignment"] == [m.split for m in release.members]
    assert folds["splits"] == {"train": list(range(30)), "test": list(range(30, 38))}
    assert (folder / "omdb-test.json.gz").read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0


def test_optimade_jsonl_lines_carry_the_required_fields(
    release: ReleaseData, exported: dict[str, Path]
) -> None:
    lines = (exported["optimade-jsonl"] / "optimade.jsonl").read_text().splitlines()
    header, info, *entries = (json.loads(line) for line in lines)
    assert header == {"x-optimade": {"meta": {"api_version": "1.2.0"}}}
    assert (info["type"], info["id"]) == ("info", "structures")
    assert "_crystaldb_band_gap" in info["properties"]
    assert len(entries) == len(release.members)
    for entry, member in zip(entries, release.members, strict=True):
        assert (entry["id"], entry["type"]) == (str(member.structure_id), "structures")
        attributes = entry["attributes"]
        symbols = attributes["species_at_sites"]
        assert attributes["nsites"] == len(symbols) == len(member.atomic_numbers)
        assert attributes["elements"] == sorted(set(symbols)) == sorted(member.elements)
        assert attributes["nelements"] == len(member.elements)
        assert {s["name"] for s in attributes["species"]} == set(symbols)
        assert all(s["concentration"] == [1.0] for s in attributes["species"])
        assert attributes["dimension_types"] == [1, 1, 1]
        assert attributes["nperiodic_dimensions"] == 3
        assert attributes["structure_features"] == []
        np.testing.assert_allclose(attributes["lattice_vectors"], member.lattice, atol=0)
        np.testing.assert_allclose(
            attributes["cartesian_site_positions"], _cartesian(member), atol=1e-9
        )
        assert attributes["_crystaldb_band_gap"] == member.label
        assert attributes["_crystaldb_split"] == member.split
        assert attributes["_crystaldb_cod_id"] == member.external_ids["cod"]
    formulas = [e["attributes"]["chemical_formula_reduced"] for e in entries]
    assert formulas[0] == "C7H11NO3"  # alphabetical, divided by the gcd (C28H44N4O12)


def _read_optimade_jsonl(path: Path) -> tuple[dict, list[dict], list[dict]]:
    """The header, info lines and entries, split the way `optimade.utils.insert_from_jsonl`
    (the optimade server's loader; it needs pymongo's bson, not installed) splits them."""
    with path.open() as handle:
        header = json.loads(handle.readline())
        lines = [json.loads(line) for line in handle if line.strip()]
    assert header.get("x-optimade"), "no x-optimade header"
    info = [line for line in lines if line.get("type") == "info" or line.get("id") is None]
    return header, info, [line for line in lines if line not in info]


def test_optimade_jsonl_validates_with_the_optimade_models_as_served(
    release: ReleaseData, exported: dict[str, Path]
) -> None:
    # the optimade package's models, v1.2: header, info/structures, then one resource a line;
    # each entry's standard fields equal what /optimade/v1/structures builds from the same row
    from optimade.models import EntryInfoResource, StructureResource

    from crystaldb.api.optimade.entries import FALLBACK, resource

    header, info, entries = _read_optimade_jsonl(exported["optimade-jsonl"] / "optimade.jsonl")
    assert header["x-optimade"]["meta"]["api_version"] == "1.2.0"
    assert [line["id"] for line in info] == ["structures"]
    EntryInfoResource(**info[0])
    assert set(info[0]["properties"]) >= {k for e in entries for k in e["attributes"]
                                          if k.startswith("_crystaldb_")}  # fmt: skip
    assert len(entries) == len(release.members)
    same = ("chemical_formula_reduced", "nsites", "elements", "nelements", "lattice_vectors",
            "species", "species_at_sites", "elements_ratios", "nperiodic_dimensions")  # fmt: skip
    for entry, member in zip(entries, release.members, strict=True):
        StructureResource(**entry)
        row = {"id": member.structure_id, "atomic_numbers": list(member.atomic_numbers),
               "occupancies": None, "lattice": np.asarray(member.lattice).reshape(3, 3),
               "frac_coords": member.frac_coords, "reduced_formula": member.reduced_formula,
               "nsites": len(member.atomic_numbers), "elements": list(member.elements),
               FALLBACK: list(member.atomic_numbers)}  # fmt: skip
        served = resource(row, same)
        assert entry["id"] == served["id"]
        ours = {k: entry["attributes"][k] for k in same}
        for attributes in (ours, served["attributes"]):  # species: any order
            attributes["species"] = sorted(attributes["species"], key=lambda s: s["name"])
        assert ours == served["attributes"]
        np.testing.assert_allclose(
            entry["attributes"]["cartesian_site_positions"],
            resource(row, ["cartesian_site_positions"])["attributes"]["cartesian_site_positions"],
            atol=1e-9,
        )


def test_parquet_reads_back_with_pyarrow(release: ReleaseData, exported: dict[str, Path]) -> None:
    table = pq.read_table(exported["parquet"] / "members.parquet")
    assert table.column_names == [
        "position",
        "structure_id",
        "split",
        "reduced_formula",
        "elements",
        "spacegroup_number",
        "label",
        "cod_id",
        "lattice",
        "frac_coords",
        "atomic_numbers",
    ]
    numbers_type = table.schema.field("atomic_numbers").type
    assert pa.types.is_list(numbers_type) and numbers_type.value_type == pa.int16()
    rows = table.to_pylist()
    for row, member in zip(rows, release.members, strict=True):
        assert row["position"] == member.position
        assert row["structure_id"] == member.structure_id
        assert row["split"] == member.split
        assert row["reduced_formula"] == member.reduced_formula
        assert tuple(row["elements"]) == member.elements
        assert row["spacegroup_number"] == member.spacegroup_number
        assert row["label"] == member.label
        assert row["cod_id"] == member.external_ids["cod"]
        assert row["lattice"] == np.asarray(member.lattice).reshape(-1).tolist()
        assert row["frac_coords"] == np.asarray(member.frac_coords).reshape(-1).tolist()
        assert row["atomic_numbers"] == list(member.atomic_numbers)


# --- plots -----------------------------------------------------------------------------------


def test_plots_are_fixed_size_pngs_without_version_text(exported: dict[str, Path]) -> None:
    for name in PLOTS:
        with Image.open(exported["omdb-gap1"] / name) as image:
            assert image.format == "PNG"
            assert image.size == (900, 500)
            assert "Software" not in image.info
            assert not getattr(image, "text", {})


def test_counts_behind_the_bar_charts(release: ReleaseData) -> None:
    elements = dict(element_counts(release))
    assert elements["H"] == sum("H" in m.elements for m in release.members)
    assert list(elements)[:2] == ["H", "C"]  # ties broken by atomic number
    groups = spacegroup_counts(release)
    assert groups[0] == ("P1 (1)", sum(m.spacegroup_number == 1 for m in release.members))
    assert sum(n for _, n in groups) == len(release.members)


def test_no_histogram_without_labels(release: ReleaseData, tmp_path: Path) -> None:
    unlabelled = tuple(dataclasses.replace(m, label=None) for m in release.members)
    data = dataclasses.replace(release, members=unlabelled)
    names = {p.name for p in export_release(data, "extxyz", tmp_path / "out")}
    assert "band_gap_histogram.png" not in names
    assert {"elements.png", "spacegroups.png"} <= names
    assert _manifest(tmp_path / "out")["label"]["statistics"] is None
    frames = ase.io.read(tmp_path / "out" / "structures.extxyz", index=":")
    assert all("band_gap" not in atoms.info for atoms in frames if isinstance(atoms, Atoms))


# --- refusals and atomicity ------------------------------------------------------------------


def test_refuses_a_folder_that_is_not_empty(release: ReleaseData, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=f"--out {out}: folder is not empty"):
        export_release(release, "parquet", out)
    assert _leftovers(out) == ["notes.txt"]
    assert _leftovers(tmp_path) == ["out"]


def test_an_empty_existing_folder_is_filled(release: ReleaseData, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    export_release(release, "parquet", out)
    assert (out / "members.parquet").is_file()
    assert _leftovers(tmp_path) == ["out"]


def test_refuses_a_file_as_out(release: ReleaseData, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("")
    with pytest.raises(ExportError, match="exists and is not a folder"):
        export_release(release, "parquet", out)


def test_refuses_an_unknown_format(release: ReleaseData, tmp_path: Path) -> None:
    with pytest.raises(ExportError) as caught:
        export_release(release, "xyz", tmp_path / "out")
    assert str(caught.value) == f"--format xyz: expected one of {', '.join(FORMATS)}"
    assert isinstance(caught.value, CrystaldbError)
    assert _leftovers(tmp_path) == []


def test_refuses_an_empty_release(release: ReleaseData, tmp_path: Path) -> None:
    empty = dataclasses.replace(release, members=())
    with pytest.raises(ExportError, match=r"^release omdb-test 1.0 has no members$"):
        export_release(empty, "omdb-gap1", tmp_path / "out")
    assert _leftovers(tmp_path) == []


def _with_member(release: ReleaseData, index: int, **changes: object) -> ReleaseData:
    members = list(release.members)
    members[index] = dataclasses.replace(members[index], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(release, members=tuple(members))


def test_omdb_gap1_needs_a_cod_id_and_leaves_nothing(release: ReleaseData, tmp_path: Path) -> None:
    data = _with_member(release, 5, external_ids={})
    with pytest.raises(ExportError, match=r"member 5 \(structure 1005\): has no COD id"):
        export_release(data, "omdb-gap1", tmp_path / "out")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_nan_label_fails_midway_and_leaves_nothing(
    release: ReleaseData, release_map: KernelMap, tmp_path: Path, fmt: str
) -> None:
    data = _with_member(release, 37, label=float("nan"))
    with pytest.raises(ExportError, match=r"member 37 \(structure 1037\): band_gap is nan"):
        export_release(data, fmt, tmp_path / "out", release_map)
    assert _leftovers(tmp_path) == []


def test_omdb_gap1_and_matbench_need_every_label(release: ReleaseData, tmp_path: Path) -> None:
    data = _with_member(release, 2, label=None)
    for fmt in ("omdb-gap1", "matbench"):
        with pytest.raises(ExportError, match=rf"member 2 .*has no band_gap; {fmt} needs one"):
            export_release(data, fmt, tmp_path / "out")
    export_release(data, "parquet", tmp_path / "out")  # a missing label is a null there
    assert pq.read_table(tmp_path / "out" / "members.parquet")["label"][2].as_py() is None


def test_a_writer_crashing_after_files_exist_leaves_nothing(
    release: ReleaseData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: ReleaseData, folder: Path) -> list[Path]:
        assert (folder / "structures.xyz").stat().st_size > 0  # the format's files are written
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(plots, "write_plots", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_release(release, "omdb-gap1", tmp_path / "nested" / "out")
    assert _leftovers(tmp_path / "nested") == []


def test_an_os_error_becomes_an_export_error(
    release: ReleaseData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(data: ReleaseData, folder: Path) -> None:
        (folder / "members.parquet").write_bytes(b"PAR1")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(export.WRITERS, "parquet", full)
    with pytest.raises(ExportError, match=r"--out .*out: \[Errno 28\] No space left on device"):
        export_release(release, "parquet", tmp_path / "out")
    assert _leftovers(tmp_path) == []


def test_structures_xyz_is_exactly_what_ase_writes(
    release: ReleaseData, exported: dict[str, Path], tmp_path: Path
) -> None:
    plain = tmp_path / "plain.xyz"
    ase.io.write(plain, [atoms_of(m) for m in release.members], format="extxyz")
    assert (exported["omdb-gap1"] / "structures.xyz").read_bytes() == plain.read_bytes()


CHILD = """
import sys
from pathlib import Path
from crystaldb.release.export import FORMATS, export_release
from tests.release.conftest import band_gap_release
from tests.release.test_export import map_of

data = band_gap_release()
for fmt in FORMATS:
    export_release(data, fmt, Path(sys.argv[1]) / fmt, map_of(data))
"""


def test_another_process_with_another_hash_seed_writes_the_same_bytes(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    """Nothing depends on set order (PYTHONHASHSEED), the process or the folder's path."""
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    child = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    for fmt, folder in exported.items():
        assert _digests(tmp_path / fmt) == _digests(folder), fmt


# --- isotopes --------------------------------------------------------------------------------


def _heavy(release: ReleaseData) -> Member:
    """The one deuterated member: COD 1000002."""
    (heavy,) = [m for m in release.members if m.mass_numbers is not None]
    assert heavy.external_ids["cod"] == "1000002"
    return heavy


@pytest.mark.parametrize(
    ("fmt", "name"), [("extxyz", "structures.extxyz"), ("omdb-gap1", "structures.xyz")]
)
def test_extended_xyz_writes_masses_for_the_deuterated_member_only(
    release: ReleaseData, exported: dict[str, Path], fmt: str, name: str
) -> None:
    heavy = _heavy(release)
    frames = ase.io.read(exported[fmt] / name, index=":")
    assert [atoms.has("masses") for atoms in frames] == [m is heavy for m in release.members]
    masses = frames[release.members.index(heavy)].get_masses()
    deuterium = np.asarray(heavy.mass_numbers) == 2
    assert deuterium.sum() == 12
    np.testing.assert_allclose(masses[deuterium], 2.01410178, rtol=0, atol=1e-8)
    natural = Atoms(numbers=heavy.atomic_numbers[~deuterium]).get_masses()
    np.testing.assert_allclose(masses[~deuterium], natural, rtol=0, atol=1e-8)


def test_omdb_gap1_reimport_keeps_the_deuterium(
    release: ReleaseData, exported: dict[str, Path]
) -> None:
    heavy = _heavy(release)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = process_omdb_gap1(exported["omdb-gap1"])
    record = records[release.members.index(heavy)]
    assert isinstance(record, StructureRecord)
    assert "deuterated" in record.flags
    assert record.mass_numbers == heavy.mass_numbers.tolist()


# --- chemiscope ------------------------------------------------------------------------------


def test_chemiscope_dataset_holds_every_member_and_validates(
    release: ReleaseData, release_map: KernelMap, exported: dict[str, Path]
) -> None:
    dataset = read_dataset(exported["chemiscope"] / "omdb-test.chemiscope.json.gz")
    # chemiscope's own checks accept the file as read back
    again = chemiscope.create_input(
        structures=dataset["structures"],
        metadata=dataset["meta"],
        properties=dataset["properties"],
        settings=dataset["settings"],
    )
    assert again["properties"].keys() == dataset["properties"].keys()
    members = release.members
    assert len(dataset["structures"]) == len(members) == 38
    for member, structure in zip(members, dataset["structures"], strict=True):
        assert structure["names"] == [chemical_symbols[z] for z in member.atomic_numbers]
        assert structure["cell"] == np.asarray(member.lattice).reshape(9).tolist()
        xyz = np.column_stack([structure["x"], structure["y"], structure["z"]])
        np.testing.assert_allclose(xyz, _cartesian(member), atol=1e-12)
    values = {k: v["values"] for k, v in dataset["properties"].items()}
    assert values["structure id"] == [float(m.structure_id) for m in members]
    assert values["formula"] == [m.reduced_formula for m in members]
    assert values["split"] == [m.split for m in members]
    assert values["release band_gap"] == [m.label for m in members]
    # the map's points follow the members, whatever order the map had
    row = {sid: i for i, sid in enumerate(release_map.structure_ids)}
    rows = [row[m.structure_id] for m in members]
    assert values["kernel PCA[1]"] == release_map.points[rows, 0].tolist()
    assert values["kernel PCA[2]"] == release_map.points[rows, 1].tolist()
    assert values["band gap: PBE"] == [m.label for m in members]
    assert dataset["properties"]["band gap: PBE"]["units"] == "eV"
    assert dataset["settings"]["map"]["color"] == {"property": "band gap: PBE"}
    assert dataset["settings"]["structure"][0]["unitCell"] is True
    assert dataset["meta"]["name"] == "omdb-test 1.0: kernel map 7"


def test_chemiscope_needs_a_map_of_every_member(
    release: ReleaseData, release_map: KernelMap, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match=r"--format chemiscope: draws a stored kernel map"):
        export_release(release, "chemiscope", tmp_path / "out")
    partial = release_map.restricted(release_map.structure_ids[1:], "the test")
    with pytest.raises(ExportError, match=r"embedding 7 lacks 1 of the 38 structures"):
        export_release(release, "chemiscope", tmp_path / "out", partial)
    assert _leftovers(tmp_path) == []
