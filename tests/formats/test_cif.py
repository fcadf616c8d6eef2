"""CIF reading on real COD files: gemmi fast path, pymatgen fallback, malformed inputs."""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from pathlib import Path

import gemmi
import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from crystaldb.core.records import ParsedStructure, Rejection
from crystaldb.core.validate import validate
from crystaldb.formats.cif import parse_cif_text
from crystaldb.formats.payload import parse_file
from tests.realdata import SAMPLE, SHARED_DATA

SAMPLE_COD, SHARED_COD = SAMPLE / "cod", SHARED_DATA / "cod"
# Ordered COD structures (every occupancy 1, no dummy atoms) from small to large cells,
# with and without symmetry beyond P1, inorganic and organic; 2002248 and 2240656 are cubic
# (Fd-3m), the latter only in the shared corpus.
ORDERED = [
    *(SAMPLE_COD / f"{cod_id}.cif" for cod_id in ("1000054", "2010577", "9008901", "2000583")),
    *(SAMPLE_COD / f"{cod_id}.cif" for cod_id in ("2000642", "2002248", "1100709")),
    pytest.param(SHARED_COD / "2240656.cif", marks=pytest.mark.shared),
]
# The malformed CIFs the sample holds are 8 of the 21 of the shared corpus.
SAMPLE_MALFORMED, SHARED_MALFORMED = SAMPLE / "malformed", SHARED_DATA / "cif-malformed"


def parse_one(path: Path, engine: str = "auto") -> ParsedStructure:
    """The single entry of a one-block CIF, which must parse."""
    results = parse_cif_text(path.read_text(), str(path), engine=engine)  # type: ignore[arg-type]
    assert len(results) == 1
    (parsed,) = results
    assert isinstance(parsed, ParsedStructure), parsed
    return parsed


def pymatgen_structure(path: Path) -> Structure:
    """pymatgen's own reading of the file, independent of ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CifParser(path).parse_structures(primitive=False)[0]


@pytest.mark.parametrize(
    "folder",
    [
        pytest.param(SAMPLE_COD, id="sample"),
        pytest.param(SHARED_COD, id="shared", marks=pytest.mark.shared),
    ],
)
def test_every_utf8_cod_file_gives_an_outcome_and_most_parse(folder: Path) -> None:
    """Every file (215 in the sample, 229 shared): one entry, parsed or refused naming it."""
    paths = sorted(folder.glob("*.cif"))
    refused: dict[str, str] = {}
    for path in paths:
        (result,) = parse_file(path)  # every one of these files holds one data block
        assert str(path) in result.path
        if isinstance(result, Rejection):
            assert str(path) in result.message
            refused[path.stem] = result.reason
        else:
            assert result.nsites > 0
            assert result.lattice.shape == (3, 3)
    # Two files are not UTF-8 and one has no element for any site; the rest parse.
    assert refused == {
        "9003354": "not_utf8",
        "9005728": "not_utf8",
        "2006199": "unknown_element",
    }


@pytest.mark.parametrize("path", ORDERED, ids=lambda p: p.stem)
def test_gemmi_matches_pymatgen_on_ordered_files(path: Path) -> None:
    """Site count, composition and cell of our gemmi expansion agree with pymatgen's reader."""
    ours = parse_one(path)
    theirs = pymatgen_structure(path)
    assert ours.flags == ()
    assert ours.nsites == len(theirs)
    assert Counter(ours.numbers.tolist()) == Counter(site.specie.Z for site in theirs)
    assert abs(np.linalg.det(ours.lattice)) == pytest.approx(theirs.volume, rel=1e-6)
    assert ours.external_ids == {"cod": path.stem}


@pytest.mark.parametrize("path", ORDERED, ids=lambda p: p.stem)
def test_gemmi_and_pymatgen_engines_give_the_same_record(path: Path) -> None:
    """Forcing the pymatgen engine yields the same composition, site count and fingerprint."""
    fast = validate(parse_one(path, "gemmi"))
    slow = validate(parse_one(path, "pymatgen"))
    assert not isinstance(fast, Rejection), fast
    assert not isinstance(slow, Rejection), slow
    assert "pymatgen_fallback" in slow.flags
    assert (fast.nsites, fast.hill_formula) == (slow.nsites, slow.hill_formula)
    assert fast.spacegroup_number == slow.spacegroup_number
    assert fast.fingerprint == slow.fingerprint


def test_fallback_reads_a_file_gemmi_refuses(cod: Path, tmp_path: Path) -> None:
    """A duplicated tag is a CIF syntax error for gemmi; pymatgen reads on, and we use it."""
    original = cod / "2000642.cif"
    text = original.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("_journal_year"))
    broken = tmp_path / "2000642.cif"
    broken.write_text(text.replace(line, f"{line}\n{line}", 1))
    with pytest.raises(Exception, match="duplicate"):
        gemmi.cif.read_string(broken.read_text())
    (parsed,) = parse_file(broken)
    assert isinstance(parsed, ParsedStructure), parsed
    assert "pymatgen_fallback" in parsed.flags
    fallback, reference = validate(parsed), validate(parse_one(original))
    assert not isinstance(fallback, Rejection) and not isinstance(reference, Rejection)
    assert fallback.fingerprint == reference.fingerprint


def test_symmetry_expansion_matches_declared_z(cod: Path) -> None:
    """Sites after expansion equal asymmetric-unit sites times the operations, less specials."""
    path = cod / "2000642.cif"  # P-1, every atom on a general position
    block = gemmi.cif.read(str(path)).sole_block()
    small = gemmi.make_small_structure_from_block(block)
    assert parse_one(path).nsites == len(small.sites) * (len(small.cell.images) + 1)


def test_special_positions_are_not_duplicated(cod: Path) -> None:
    """Mg(OH)2 (COD 1000054): Mg on a special position must appear once, not 12 times."""
    parsed = parse_one(cod / "1000054.cif")
    theirs = pymatgen_structure(cod / "1000054.cif")
    assert parsed.nsites == len(theirs) < 24
    # no two sites coincide after expansion
    frac = parsed.frac_coords
    delta = frac[:, None, :] - frac[None, :, :]
    delta -= np.rint(delta)
    cart = np.linalg.norm(delta @ parsed.lattice, axis=2) + np.eye(len(frac)) * 99
    assert cart.min() > 0.5


def test_nan_coordinate_cif(cod: Path, tmp_path: Path) -> None:
    """A real CIF with one coordinate replaced by '?' parses, then is refused by validate."""
    text = (cod / "2000642.cif").read_text()
    lines = text.splitlines()
    start = lines.index("_atom_site_label")
    tags: list[str] = []
    while lines[start + len(tags)].startswith("_atom_site_"):
        tags.append(lines[start + len(tags)])
    row = start + len(tags)  # the first atom of the loop
    fields = lines[row].split()
    fields[tags.index("_atom_site_fract_z")] = "?"
    lines[row] = " ".join(fields)
    path = tmp_path / "2000642.cif"
    path.write_text("\n".join(lines) + "\n")
    (parsed,) = parse_file(path)
    assert isinstance(parsed, ParsedStructure)
    assert np.isnan(parsed.frac_coords).any()
    rejection = validate(parsed)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "nan_coordinates"
    assert str(path) in rejection.message


def test_truncated_cif(cod: Path, tmp_path: Path) -> None:
    """Cut mid-row in the atom loop: both parsers refuse it and the message says where."""
    text = (cod / "2000642.cif").read_text()
    cut = text.index("\n", text.index("_atom_site_fract_z") + 600) - 7
    path = tmp_path / "2000642.cif"
    path.write_text(text[:cut])
    (rejection,) = parse_file(path)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "parse_error"
    assert str(path) in rejection.message
    assert "Wrong number of values" in rejection.message


def test_several_data_blocks_give_several_entries(cod: Path, tmp_path: Path) -> None:
    """Two real CIFs concatenated: two entries, each with its own block name and COD id."""
    path = tmp_path / "two.cif"
    path.write_text((cod / "1000054.cif").read_text() + "\n" + (cod / "2010577.cif").read_text())
    results = parse_file(path)
    assert [r.entry for r in results] == [0, 1]
    assert all(isinstance(r, ParsedStructure) for r in results)
    assert [r.block_name for r in results] == ["1000054", "2010577"]  # type: ignore[union-attr]
    ids = [r.external_ids for r in results]  # type: ignore[union-attr]
    assert ids == [{"cod": "1000054"}, {"cod": "2010577"}]


def test_dummy_atoms_are_dropped_with_a_flag(cod: Path) -> None:
    """COD 2013971 carries ring centroids (calc_flag 'dum'), which are not atoms."""
    block = gemmi.cif.read(str(cod / "2013971.cif")).sole_block()
    flags = dict(
        zip(
            block.find_values("_atom_site_label"),
            block.find_values("_atom_site_calc_flag"),
            strict=True,
        )
    )
    dummies = [label for label, flag in flags.items() if flag == "dum"]
    assert dummies
    parsed = parse_one(cod / "2013971.cif")
    assert "dummy_sites_dropped" in parsed.flags
    assert 0 not in parsed.numbers


def test_unreadable_element_labels_fall_back_to_pymatgen(cod: Path) -> None:
    """COD 9000307 labels water oxygens 'Wat7' with no type symbol; pymatgen reads them as O."""
    parsed = parse_one(cod / "9000307.cif")
    assert "pymatgen_fallback" in parsed.flags
    theirs = pymatgen_structure(cod / "9000307.cif")
    assert theirs.composition.reduced_formula == _reduced(parsed)


def _reduced(parsed: ParsedStructure) -> str:
    from crystaldb.core.composition import composition

    return composition(parsed.numbers).reduced_formula


def test_database_names_the_file_stem(sample: Path) -> None:
    path = next(iter(sorted((sample / "cofs").glob("*.cif"))))
    (parsed,) = parse_file(path, database="curated-cofs")
    assert parsed.external_ids == {"curated-cofs": path.stem}  # type: ignore[union-attr]


def malformed_cases() -> list[tuple[str, bool]]:
    """(file, is valid CIF) from the suite's descriptions.tsv (in the shared corpus)."""
    rows = (SHARED_MALFORMED / "descriptions.tsv").read_text().splitlines()
    data = [r for r in rows if r and not r.startswith("#")]
    return [(name, flag == "1") for name, flag in csv.reader(data, delimiter="\t")]


def assert_refused_clearly(path: Path, valid: bool) -> None:
    """Invalid CIFs are parse/encoding errors; valid-but-empty CIFs are refused for no atoms."""
    results = parse_file(path)
    assert results, path
    for result in results:
        assert isinstance(result, Rejection), (path, result)
        assert str(path) in result.message, result.message
        if valid:
            assert result.reason == "no_atoms", (path, result)
        else:
            assert result.reason in {"parse_error", "binary", "not_utf8", "no_atoms"}, result


# The sample's 8, with the is_CIF_conforming column of the suite's descriptions.tsv.
SAMPLE_MALFORMED_VALID = {
    "dos-ctrl-z.cif": False,
    "empty-datablock.cif": True,
    "empty-file.cif": True,
    "loop-without-values.cif": False,
    "missing-closing-quote.cif": False,
    "non-ascii.cif": False,
    "null-symbol.cif": False,
    "wrong-number-of-loop-values.cif": False,
}


def test_every_malformed_file_of_the_sample_is_refused_with_a_clear_reason() -> None:
    assert sorted(p.name for p in SAMPLE_MALFORMED.iterdir()) == sorted(SAMPLE_MALFORMED_VALID)
    for name, valid in SAMPLE_MALFORMED_VALID.items():
        assert_refused_clearly(SAMPLE_MALFORMED / name, valid)


@pytest.mark.shared
def test_every_malformed_file_is_refused_with_a_clear_reason() -> None:
    """All 21 files of the suite, as its descriptions.tsv classifies them."""
    cases = malformed_cases()
    assert len(cases) == 21
    assert {n: v for n, v in cases if n in SAMPLE_MALFORMED_VALID} == SAMPLE_MALFORMED_VALID
    for name, valid in cases:
        assert_refused_clearly(SHARED_MALFORMED / name, valid)


def test_invalid_cifs_that_gemmi_rejects_keep_its_line_number() -> None:
    path = SAMPLE_MALFORMED / "missing-closing-quote.cif"
    (rejection,) = parse_file(path)
    assert isinstance(rejection, Rejection)
    assert rejection.message.startswith(f"{path}:2:")
    assert "pymatgen" in rejection.message  # the fallback was tried and said why it failed
