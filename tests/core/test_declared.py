"""What a CIF says about itself, against what it holds: formula sum and space-group name.

Records whose cell contradicts the file's own `_chemical_formula_sum` are flagged
`formula_sum_mismatch`, and files whose symmetry operations contradict their space-group
name `symops_contradict_symbol`, so users can filter them.  Real COD files of the sample.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pymatgen.core import Composition

from crystaldb.core.composition import formula_sum_differs
from crystaldb.core.declared import DeclaredSymmetry, symops_contradict_symbol
from crystaldb.core.records import ParsedStructure, StructureRecord
from crystaldb.formats.cif import parse_cif_text
from crystaldb.formats.payload import parse_file, process_file
from tests.realdata import SAMPLE

COD = SAMPLE / "cod"
CONTRADICTED = {
    "2005206": "P 1 21/n 1 with four operations that are no group",
    "2009397": "R 3 with a four-fold rotation among its operations",
    "1100977": "Fddd with the operations of Fdd2 (no inversion)",
    "1100978": "Cc with the operations of Pc (no centring)",
}
CONSISTENT = {
    "1100976": "Pc in another setting than the tables' P 1 c 1",
    "8103382": "P n a 21 with the identity left out of the list",
    "1100846": "P2(1)/n, the old spelling of P 21/n",
    "9002551": "C m c m in a setting gemmi does not tabulate (spglib finds 63)",
    "1009031": "an unreadable H-M symbol, but number 131 as the operations",
    "2103867": "operations and no name at all",
    "1000002": "no operations: the cell is built from the name",
}
# Stored records of the sample whose composition differs from their formula sum, and why.
FORMULA_MISMATCH = {
    "1000451": "H5 in the sum, no H sites",
    "1010246": "H2 in the sum, no H sites",
    "1100117": "H30 in the sum, no H sites",
    "1100811": "C44 in the sum, C42 in the cell",
    "1100974": "C8 H12 in the sum, H10 per formula unit in the cell",
    "1100979": "C24 H36 N16 O15 Zn2, H15 per formula unit in the cell",
    "2001826": "C22 H22 O, C22 H24 O in the cell",
    "2009397": "C10 H14 Cl O2, the cell its wrong operations make",
    "2101258": "H0.67 in the sum, no H sites",
    "2103919": "C Na2 O3, Na3 C O2 in the cell",
    "2201319": "C18H36EuFeN10O8, H28 per formula unit in the cell",
    "4300081": "H27 in the sum, no H sites",
    "7050857": "C40 H36 ... O22, H32 per formula unit in the cell",
    "7238658": "C13 H10 Cl N2, H13 per formula unit in the cell",
    "9000251": "H9 in the sum, no H sites",
    "9000307": "water oxygens without their H (read by pymatgen)",
    "9009872": "H8 in the sum, no H sites",
}


def _parsed(cod_id: str) -> ParsedStructure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = parse_file(COD / f"{cod_id}.cif")[0]
    assert isinstance(parsed, ParsedStructure), parsed
    return parsed


@pytest.mark.parametrize("cod_id", sorted(CONTRADICTED))
def test_operations_that_contradict_the_name_are_flagged(cod_id: str) -> None:
    assert "symops_contradict_symbol" in _parsed(cod_id).flags, CONTRADICTED[cod_id]


@pytest.mark.parametrize("cod_id", sorted(CONSISTENT))
def test_operations_of_the_named_group_are_not_flagged(cod_id: str) -> None:
    assert "symops_contradict_symbol" not in _parsed(cod_id).flags, CONSISTENT[cod_id]


def test_the_pymatgen_reader_flags_the_same_contradiction() -> None:
    text = (COD / "2009397.cif").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (parsed,) = parse_cif_text(text, "2009397.cif", engine="pymatgen")
    assert isinstance(parsed, ParsedStructure)
    assert {"pymatgen_fallback", "symops_contradict_symbol"} <= set(parsed.flags)


P21C = ("x,y,z", "-x,y+1/2,-z+1/2", "-x,-y,-z", "x,-y+1/2,z+1/2")
CUBIC = np.eye(3) * 10.0


@pytest.mark.parametrize(
    ("declared", "contradicts"),
    [
        (DeclaredSymmetry(P21C, hm="P 21/c"), False),
        (DeclaredSymmetry(P21C, hm="P 1 21/c 1", hall="-P 2ybc", number=14), False),
        (DeclaredSymmetry(P21C, hm="P2(1)/c"), False),
        (DeclaredSymmetry(P21C[1:], hm="P 21/c"), False),  # identity implied
        (DeclaredSymmetry(P21C, hm="P -1"), True),
        (DeclaredSymmetry(P21C, number=2), True),
        (DeclaredSymmetry(P21C, hall="-P 1"), True),
        (DeclaredSymmetry(P21C[:3], hm="P 21/c"), True),  # not closed
        (DeclaredSymmetry(("x+1/2,y+1/2,z", "x+1/3,y,z"), hm="C 1"), True),  # translations too
        (DeclaredSymmetry(("x,y,z",), hm="P 21/c"), True),  # expanded as P1
        (DeclaredSymmetry(P21C), False),  # nothing named
        (DeclaredSymmetry(P21C, hm="Q 99"), False),  # a name nobody can read
        (DeclaredSymmetry(("x,y,w",), hm="P 21/c"), False),  # an operation nobody can read
        (DeclaredSymmetry((), hm="P 21/c"), False),  # the cell comes from the name
    ],
)
def test_contradiction_rule(declared: DeclaredSymmetry, contradicts: bool) -> None:
    assert symops_contradict_symbol(declared, CUBIC) is contradicts


@pytest.mark.parametrize(
    ("declared", "cell", "differs"),
    [
        ("C6 H6", "C24H24", False),  # Z = 4
        ("C12 H12", "C6H6", False),  # Z' = 1/2
        ("C3 D3 O7 Sr", "Sr4C12H12O28", False),  # deuterium counts as hydrogen
        ("C2 H0.67 N", "C6H2N3", False),  # a rounded sum
        ("C6 H7.3 N", "C18H22N3", False),  # rounded to one decimal
        ("C6 H14", "C24H55", True),  # one H missing in the cell
        ("C179 H170 Cd6", "C2864H2719Cd96", True),  # one of 5,679 atoms
        ("C6 H6", "C6", True),  # H in the sum only
        ("C6", "C6H6", True),  # H in the cell only
        ("C Na2 O3", "Na3CO2", True),
        ("?", "C6H6", False),  # no sum given
        ("C6 H6 Xq2", "C6H6", False),  # unreadable: no verdict
    ],
)
def test_formula_sum_rule(declared: str, cell: str, differs: bool) -> None:
    assert formula_sum_differs(declared, Composition(cell)) is differs


def test_formula_sum_mismatch_flags_exactly_these_sample_records() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = [
            record
            for path in sorted(COD.glob("*.cif"))
            for record in process_file(path)
            if isinstance(record, StructureRecord)
        ]
    flagged = {r.external_ids["cod"] for r in records if "formula_sum_mismatch" in r.flags}
    contradicted = {r.external_ids["cod"] for r in records if "symops_contradict_symbol" in r.flags}
    assert flagged == set(FORMULA_MISMATCH)
    assert contradicted == set(CONTRADICTED)
    assert len(records) == 111
