"""The --where filter language: parser, AST and SQL, checked against a Python oracle on real data.

The database holds the packaged COD, CURATED-COFs and JARVIS sample (the JARVIS crystals with
their real OptB88vdW gaps), with band gaps, external ids, releases and one structure without a
space group added, so every field and operator selects something real.
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gemmi
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.dialects import postgresql

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.records import CRYSTAL_SYSTEMS, FLAGS, LabelSpec, StructureRecord
from crystaldb.core.spacegroups import stored_symbol
from crystaldb.jobs.load import write_chunk
from crystaldb.platform.database import Database
from crystaldb.query.ast import (
    And,
    Comparison,
    ElementsTest,
    FieldComparison,
    FilterError,
    FlagsTest,
    Membership,
    Node,
    Not,
    Or,
)
from crystaldb.query.fields import (
    DEFAULT_FUNCTIONAL,
    ELEMENT_SYMBOLS,
    FIELDS,
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_LIST,
    describe_fields,
)
from crystaldb.query.grammar import parse
from crystaldb.query.sql import to_sql, where
from crystaldb.schema import (
    Calculation,
    ExternalId,
    Label,
    Release,
    ReleaseMember,
    Structure,
)
from tests.conftest import DatabaseFactory
from tests.realdata import SAMPLE
from tests.sampledb import add_band_gap, open_batch, stand_in_gap, valid_records

JARVIS = SAMPLE / "jarvis"
RELEASES = (("alpha", "1.0"), ("alpha", "2.0"), ("beta", "x:1"))  # a version may contain ':'
SECOND_PBE_SHIFT = 3.0  # a second PBE calculation's gap, this much above the first

# --------------------------------------------------------------------------- the data


@dataclass
class Row:
    """Everything a filter can test about one stored structure, read back from the database."""

    id: int
    columns: dict[str, Any]
    elements: frozenset[str]
    labels: list[tuple[str, str, float]] = field(default_factory=list)  # property, functional
    ids: set[tuple[str, str]] = field(default_factory=set)  # database, external id
    releases: set[str] = field(default_factory=set)  # name:version


@dataclass
class Loaded:
    """The filled database and its rows as Python objects."""

    db: Database
    rows: dict[int, Row]
    null_spacegroup: int  # id of the structure stored without symmetry
    doubly_labelled: int  # id of a structure with two PBE gaps SECOND_PBE_SHIFT apart

    def select(self, node_or_text: Node | str) -> set[int]:
        """Ids the SQL backend selects."""
        clause = where(node_or_text) if isinstance(node_or_text, str) else to_sql(node_or_text)
        with self.db.session() as session:
            return set(session.scalars(select(Structure.id).where(clause)))

    def oracle(self, node: Node) -> set[int]:
        """Ids the Python evaluator selects."""
        return {row.id for row in self.rows.values() if holds(node, row)}


def _jarvis_records() -> list[StructureRecord]:
    """The JARVIS sample with its real OptB88vdW gaps as a property."""
    with (JARVIS / "id_prop.csv").open() as handle:
        gaps = {name: float(gap) for name, gap in csv.reader(handle)}
    records = valid_records(JARVIS, "*.vasp")
    return [
        replace(r, properties={"optb88vdw_gap": gaps[Path(r.path).name]})
        if Path(r.path).name in gaps
        else r
        for r in records
    ]


def _store(db: Database) -> None:
    """Ingest the real files, with PBE labels on four COD structures in five."""
    batch_id = open_batch(db)
    cod = valid_records(SAMPLE / "cod", "*.cif")
    cod = [
        replace(r, properties={"pbe_gap": stand_in_gap(r)}) if i % 5 else r
        for i, r in enumerate(cod)
    ]
    pbe = LabelSpec("pbe_gap", "band_gap", "eV", "PBE", "VASP")
    write_chunk(db, batch_id, cod, labels=pbe)
    write_chunk(db, batch_id, valid_records(SAMPLE / "cofs", "*.cif", database="curated-cofs"))
    optb88 = LabelSpec("optb88vdw_gap", "band_gap", "eV", "OptB88vdW", "VASP")
    write_chunk(db, batch_id, _jarvis_records(), labels=optb88)


def _decorate(db: Database) -> tuple[int, int]:
    """Add HSE06 gaps, a second PBE gap, mp ids, releases and a structure without symmetry."""
    with db.session() as session:
        ids = sorted(session.scalars(select(Structure.id)))
        pbe: dict[int, list[float]] = defaultdict(list)
        for sid, value in session.execute(
            select(Label.structure_id, Label.value)
            .join(Calculation, Calculation.id == Label.calculation_id)
            .where(Calculation.functional == "PBE")
        ):
            pbe[sid].append(value)
        for index, sid in enumerate(ids):
            if index % 3 == 0:
                add_band_gap(session, sid, "HSE06", round(1.1 + index * 0.037 % 5, 3))
            if index % 7 == 0:
                mp = ExternalId(database="mp", external_id=f"mp-{index * 3}", structure_id=sid)
                session.add(mp)
        doubly = min(sid for sid, gaps in pbe.items() if len(gaps) == 1 and 1.0 < gaps[0] < 2.5)
        add_band_gap(session, doubly, "PBE", pbe[doubly][0] + SECOND_PBE_SHIFT)
        for number, (name, version) in enumerate(RELEASES):
            release = Release(name=name, version=version)
            session.add(release)
            session.flush()
            members = (ids[0:40], ids[20:70], ids[::9])[number]
            session.add_all(
                ReleaseMember(release_id=release.id, position=p, structure_id=s, split="train")
                for p, s in enumerate(members)
            )
        copy = text(
            "INSERT INTO structures (lattice, frac_coords, atomic_numbers, occupancies,"
            " reduced_formula, hill_formula, anonymous_formula, elements, nelements, nsites,"
            " symprec, volume, density, fingerprint)"
            " SELECT lattice, frac_coords, atomic_numbers, occupancies, reduced_formula,"
            " hill_formula, anonymous_formula, elements, nelements, nsites, symprec, volume,"
            " density, repeat('f', 64) FROM structures WHERE id = :id RETURNING id"
        )
        null_spacegroup = session.execute(copy, {"id": ids[1]}).scalar_one()
    return null_spacegroup, doubly


def _rows(db: Database) -> dict[int, Row]:
    """Read every structure back with its labels, ids and release memberships."""
    columns = [c for c in Structure.__table__.c if c.name not in ("lattice", "frac_coords")]
    with db.session() as session:
        rows = {
            r.id: Row(r.id, dict(r._mapping), frozenset(r.elements))
            for r in session.execute(select(*columns))
        }
        labels = select(Label.structure_id, Label.property, Calculation.functional, Label.value)
        for sid, prop, functional, value in session.execute(
            labels.join(Calculation, Calculation.id == Label.calculation_id)
        ):
            rows[sid].labels.append((prop, functional, value))
        for sid, database, external_id in session.execute(
            select(ExternalId.structure_id, ExternalId.database, ExternalId.external_id)
        ):
            rows[sid].ids.add((database, external_id))
        for sid, name, version in session.execute(
            select(ReleaseMember.structure_id, Release.name, Release.version).join(
                Release, Release.id == ReleaseMember.release_id
            )
        ):
            rows[sid].releases.add(f"{name}:{version}")
    return rows


@pytest.fixture(scope="module")
def loaded(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loaded]:
    """A database of its own, filled once for the module."""
    _, db = databases.migrated("crystaldb_filters", tmp_path_factory.mktemp("filters-data"))
    _store(db)
    null_spacegroup, doubly = _decorate(db)
    yield Loaded(db, _rows(db), null_spacegroup, doubly)
    db.dispose()


# --------------------------------------------------------------------------- the oracle

COLUMNS = {
    "id": "id",
    "nsites": "nsites",
    "nelements": "nelements",
    "spacegroup": "spacegroup_number",
    "volume": "volume",
    "density": "density",
    "reduced_formula": "reduced_formula",
    "hill_formula": "hill_formula",
    "anonymous_formula": "anonymous_formula",
    "spacegroup_symbol": "spacegroup_symbol",
    "crystal_system": "crystal_system",
}
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _matches(test: Comparison | Membership, value: Any) -> bool:
    """Does one value satisfy a comparison or a membership?"""
    if isinstance(test, Membership):
        return value in test.values
    return OPS[test.op](value, test.value)


def _label_holds(tests: list[Comparison | Membership], row: Row) -> bool:
    """Some label of that property and functional satisfies all the tests."""
    prop, functional = tests[0].field, tests[0].qualifier or DEFAULT_FUNCTIONAL
    return any(
        p == prop and f == functional and all(_matches(t, v) for t in tests)
        for p, f, v in row.labels
    )


def _values(row: Row, field: str, qualifier: str | None) -> list[Any]:
    """A numeric field's values on a row: the column's (none if NULL), or its labels'."""
    if field == "band_gap":
        functional = qualifier or DEFAULT_FUNCTIONAL
        return [v for p, f, v in row.labels if p == field and f == functional]
    value = row.columns[COLUMNS[field]]
    return [] if value is None else [value]


def holds(node: Node, row: Row) -> bool:
    """The language's meaning, in plain Python."""
    if isinstance(node, And):
        groups: dict[tuple[str, str | None], list[Comparison | Membership]] = defaultdict(list)
        rest = []
        for operand in node.operands:
            if isinstance(operand, Comparison | Membership) and operand.field == "band_gap":
                groups[operand.field, operand.qualifier].append(operand)
            else:
                rest.append(operand)
        return all(holds(o, row) for o in rest) and all(
            _label_holds(g, row) for g in groups.values()
        )
    if isinstance(node, Or):
        return any(holds(o, row) for o in node.operands)
    if isinstance(node, Not):
        return not holds(node.operand, row)
    if isinstance(node, FieldComparison):
        lefts, rights = (
            _values(row, node.field, node.qualifier),
            _values(row, node.other, node.other_qualifier),
        )
        return any(OPS[node.op](a, b) for a in lefts for b in rights)
    if isinstance(node, ElementsTest | FlagsTest):
        if isinstance(node, ElementsTest):
            stored, listed = row.elements, frozenset(node.symbols)
        else:
            stored, listed = frozenset(row.columns["flags"]), frozenset(node.flags)
        return {
            "all": listed <= stored,
            "any": bool(listed & stored),
            "only": stored <= listed,
            "none": not listed & stored,
        }[node.mode]
    if node.field == "band_gap":
        return _label_holds([node], row)
    if node.field in COLUMNS:
        value = row.columns[COLUMNS[node.field]]
        return value is not None and _matches(node, value)
    if isinstance(node, Comparison) and node.op not in ("=", "!="):  # ids compared as numbers
        return any(
            d == node.qualifier and re.fullmatch("[0-9]+", i) and _matches(node, int(i))
            for d, i in row.ids
        )
    have = {
        "external_id": {i for d, i in row.ids if d == node.qualifier},
        "source": {d for d, _ in row.ids},
        "release": row.releases,
    }[node.field]
    wanted = set(node.values) if isinstance(node, Membership) else {node.value}
    found = bool(have & wanted)
    return not found if isinstance(node, Comparison) and node.op == "!=" else found


# --------------------------------------------------------------------------- parsing


def cmp(field: str, op: str, value: Any, qualifier: str | None = None) -> Comparison:
    """Shorthand for the expected ASTs."""
    return Comparison(field, op, value, qualifier)  # type: ignore[arg-type]


BRIEF = {
    "elements has all C, H and not elements has any Pb, Cd and nsites <= 100": And(
        (
            ElementsTest("all", ("C", "H")),
            Not(ElementsTest("any", ("Pb", "Cd"))),
            cmp("nsites", "<=", 100),
        )
    ),
    "band_gap > 1.5 and band_gap <= 3 and spacegroup = 14": And(
        (
            cmp("band_gap", ">", 1.5, "PBE"),
            cmp("band_gap", "<=", 3.0, "PBE"),
            cmp("spacegroup", "=", 14),
        )
    ),
    '(crystal_system = "monoclinic" or spacegroup in (2, 14, 19)) and nelements >= 3': And(
        (
            Or((cmp("crystal_system", "=", "monoclinic"), Membership("spacegroup", (2, 14, 19)))),
            cmp("nelements", ">=", 3),
        )
    ),
    'reduced_formula = "H2O"': cmp("reduced_formula", "=", "H2O"),
    'anonymous_formula = "AB2"': cmp("anonymous_formula", "=", "AB2"),
    "elements has only C, H, N, O": ElementsTest("only", ("C", "H", "N", "O")),
    "cod = 7033509": cmp("external_id", "=", "7033509", "cod"),
    "source = cod": cmp("source", "=", "cod"),
    "band_gap[PBE] < 2": cmp("band_gap", "<", 2.0, "PBE"),
    'release = "omdb:1.0"': cmp("release", "=", "omdb:1.0"),
    "volume > 500": cmp("volume", ">", 500.0),
    "density < 1.6": cmp("density", "<", 1.6),
    "id in (1, 2, 3)": Membership("id", (1, 2, 3)),
    'spacegroup_symbol = "P2_1/c"': cmp("spacegroup_symbol", "=", "P2_1/c"),
    "flags has any formula_sum_mismatch, deuterated and flags excludes symops_contradict_symbol": (
        And(
            (
                FlagsTest("any", ("formula_sum_mismatch", "deuterated")),
                FlagsTest("none", ("symops_contradict_symbol",)),
            )
        )
    ),
}


@pytest.mark.parametrize(("source", "expected"), BRIEF.items(), ids=list(BRIEF))
def test_parses_the_documented_examples(source: str, expected: Node) -> None:
    """The filters users were promised parse to exactly these trees."""
    assert parse(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "id = 1 or id = 2 and id = 3",
            Or((cmp("id", "=", 1), And((cmp("id", "=", 2), cmp("id", "=", 3))))),
        ),
        ("not id = 1 and id = 2", And((Not(cmp("id", "=", 1)), cmp("id", "=", 2)))),
        ("NOT (id = 1 OR id = 2)", Not(Or((cmp("id", "=", 1), cmp("id", "=", 2))))),
        ("not not id = 1", Not(Not(cmp("id", "=", 1)))),
        (
            "id=1 And (id=2 aNd id=3)",
            And((cmp("id", "=", 1), cmp("id", "=", 2), cmp("id", "=", 3))),
        ),
        (
            "(id = 1 or id = 2) or id = 3",
            Or((cmp("id", "=", 1), cmp("id", "=", 2), cmp("id", "=", 3))),
        ),
        ("((id == 1))", cmp("id", "=", 1)),
        ("id != 1", cmp("id", "!=", 1)),
        ("id not in (1, 2)", Not(Membership("id", (1, 2)))),
        ("ID IN (1)", Membership("id", (1,))),
        ("nsites >= 1e2", cmp("nsites", ">=", 100)),
        ("volume > -1", cmp("volume", ">", -1.0)),
        ("volume < .5e3", cmp("volume", "<", 500.0)),
        ("elements has In, Sn", ElementsTest("all", ("In", "Sn"))),
        ("elements HAS ANY (\"Cl\", 'Br')", ElementsTest("any", ("Cl", "Br"))),
        ("elements excludes Pb", ElementsTest("none", ("Pb",))),
        ("FLAGS has deuterated", FlagsTest("all", ("deuterated",))),
        (
            "flags Has Only ('deuterated', \"pymatgen_fallback\")",
            FlagsTest("only", ("deuterated", "pymatgen_fallback")),
        ),
        ("not flags excludes (deuterated)", Not(FlagsTest("none", ("deuterated",)))),
        ("crystal_system = 'cubic'", cmp("crystal_system", "=", "cubic")),
        (
            "crystal_system in (cubic, hexagonal)",
            Membership("crystal_system", ("cubic", "hexagonal")),
        ),
        ("spacegroup_symbol = P2_1/c", cmp("spacegroup_symbol", "=", "P2_1/c")),
        ('band_gap["PBE+U"] > 1', cmp("band_gap", ">", 1.0, "PBE+U")),
        ("band_gap[HSE06] in (1, 2.5)", Membership("band_gap", (1.0, 2.5), "HSE06")),
        ("jarvis = JVASP-1002", cmp("external_id", "=", "JVASP-1002", "jarvis")),
        ("cod >= '4000000'", cmp("external_id", ">=", 4000000, "cod")),
        ("cod != 4000000", cmp("external_id", "!=", "4000000", "cod")),
        ("curated-cofs = '05000N2'", cmp("external_id", "=", "05000N2", "curated-cofs")),
        ("external_id[mp] in ('mp-1', mp-2)", Membership("external_id", ("mp-1", "mp-2"), "mp")),
        ("source in (cod, 'curated-cofs')", Membership("source", ("cod", "curated-cofs"))),
        ("release = beta:x:1", cmp("release", "=", "beta:x:1")),
        ("\tnsites\n<=\n5 ", cmp("nsites", "<=", 5)),
    ],
)
def test_precedence_case_and_value_forms(source: str, expected: Node) -> None:
    """not > and > or; keywords in any case; numbers, quotes and bare words as documented."""
    assert parse(source) == expected


ERRORS = {
    "nsites <= and band_gap > 1": "--where: unexpected 'and' at column 11: expected a value",
    "elements has all C, H and": (
        "--where: the filter ends too early: expected a field name, '(' or 'not'"
    ),
    "": "--where: the filter is empty: expected a test such as nsites <= 100",
    "nsites": (
        "--where: the filter ends too early: "
        "expected an operator (=, !=, <, <=, >, >=, in, not in, has, excludes)"
    ),
    "nsites >": "--where: the filter ends too early: expected a value",
    "(nsites > 1": "--where: the filter ends too early: expected ')'",
    "nsites > 1)": "--where: unexpected ')' at column 11: expected the end of the filter",
    "nsites > 1 and and": (
        "--where: unexpected 'and' at column 16: expected a field name, '(' or 'not'"
    ),
    "nsites >= 1 nsites": (
        "--where: unexpected 'nsites' at column 13: expected 'and', 'or' or the end of the filter"
    ),
    "nsites in (1 2)": "--where: unexpected '2' at column 14: expected ')' or ','",
    "nsites in ()": "--where: unexpected ')' at column 12: expected a value",
    "elements has": (
        "--where: the filter ends too early: "
        "expected an element symbol or flag, '(', 'all', 'any' or 'only'"
    ),
    "elements has all C H": (
        "--where: unexpected 'H' at column 20: expected ',', 'and', 'or' or the end of the filter"
    ),
    "band_gap[] > 1": (
        "--where: unexpected ']' at column 10: expected a functional or database name"
    ),
    "curated-cofs = 05000N2": (
        "--where: unexpected 'N2' at column 21: expected 'and', 'or' or the end of the filter; "
        'quote a value that starts with a digit, e.g. "05000N2"'
    ),
    "nsites > 1 # comment": (
        "--where: unexpected character '#' at column 12: quote values that contain it"
    ),
    "reduced_formula = 'H2O": "--where: unclosed quote at column 19: close it with '",
    "nsite > 1": (
        "--where: unknown field 'nsite' at column 1: did you mean 'nsites'? fields are "
        + ", ".join(FIELDS)
    ),
    "nsites > 1 and colour = red": (
        "--where: unknown field 'colour' at column 16: fields are " + ", ".join(FIELDS)
    ),
    "elements has all C, Xx": "--where: unknown element symbol 'Xx' at column 21",
    "elements has any cl": (
        "--where: unknown element symbol 'cl' at column 18: "
        "symbols are case-sensitive: did you mean 'Cl'?"
    ),
    "elements excludes X": "--where: unknown element symbol 'X' at column 19",
    "flags has any deuterated, deuterted": (
        "--where: unknown flag 'deuterted' at column 27: did you mean 'deuterated'? flags are "
        + ", ".join(FLAGS)
    ),
    "flags excludes Pb": "--where: unknown flag 'Pb' at column 16: flags are " + ", ".join(FLAGS),
    "elements has deuterated": "--where: unknown element symbol 'deuterated' at column 14",
    "flags = deuterated": (
        "--where: operator '=' after flags at column 7: test flags with has all, "
        "has any, has only or excludes, e.g. flags excludes formula_sum_mismatch"
    ),
    "flags has any " + ", ".join(["deuterated"] * (MAX_LIST + 1)): (
        "--where: flags has any (...) lists 1,001 values at column 1: the maximum is 1,000 per list"
    ),
    "spacegroup = 231": "--where: space group 231 is outside 1..230 at column 14",
    "spacegroup in (14, 0)": "--where: space group 0 is outside 1..230 at column 20",
    'nsites > "abc"': '--where: nsites takes a whole number, not "abc" at column 10',
    "nsites > 1.5": "--where: nsites takes a whole number, not 1.5 at column 10",
    "density < abc": '--where: density takes a number, not "abc" at column 11',
    "band_gap > 'wide'": '--where: band_gap takes a number, not "wide" at column 12',
    "reduced_formula = 5": (
        '--where: reduced_formula takes text (e.g. reduced_formula = "H2O"), not 5 at column 19'
    ),
    "cod = 1.5": "--where: cod takes text (e.g. cod = 7033509), not 1.5 at column 7",
    "cod > abc": "--where: cod > \"abc\" at column 7: '>' compares ids with a whole number",
    "crystal_system > cubic": (
        "--where: operator '>' after crystal_system at column 16: "
        "crystal_system takes =, !=, in, not in"
    ),
    "crystal_system = monoclnic": (
        '--where: unknown crystal system "monoclnic" at column 18: use one of '
        + ", ".join(CRYSTAL_SYSTEMS)
    ),
    "release = omdb": (
        '--where: release "omdb" at column 11: write name:version, e.g. release = "omdb-gap1:1.1"'
    ),
    "elements = C": (
        "--where: operator '=' after elements at column 10: test elements with has all, "
        "has any, has only or excludes, e.g. elements has all C, H"
    ),
    "elements in (C)": (
        "--where: operator '=' after elements at column 10: test elements with has all, "
        "has any, has only or excludes, e.g. elements has all C, H"
    ),
    "nsites has all C": (
        "--where: 'has' or 'excludes' after nsites at column 1: "
        "nsites takes =, !=, <, <=, >, >=, in, not in"
    ),
    "cod[x] = 1": (
        "--where: 'cod' takes no [...] at column 1: write cod = ... or external_id[...] = ..."
    ),
    "nsites[PBE] > 1": (
        "--where: 'nsites' takes no [...] at column 1: "
        "only band_gap[functional] and external_id[database] do"
    ),
    "band_gap[''] > 1": (
        "--where: empty [] after 'band_gap' at column 1: write band_gap[functional] or leave [] out"
    ),
    "external_id = 1": (
        "--where: external_id needs a database at column 1: write e.g. external_id[cod] = 7033509"
    ),
    "source = ''": "--where: source takes a non-empty value at column 10",
    'spacegroup_symbol = "P 99"': (
        '--where: spacegroup_symbol "P 99" names no space group at column 21: write a '
        'Hermann-Mauguin or Hall symbol such as "P 21/c", "P 1 21/n 1" or "-P 2ybc"; '
        'symbols are stored as spglib spells them, e.g. "P2_1/c"'
    ),
    "spacegroup_symbol = '14'": (
        '--where: spacegroup_symbol "14" names no space group at column 21: write a '
        'Hermann-Mauguin or Hall symbol such as "P 21/c", "P 1 21/n 1" or "-P 2ybc"; '
        'symbols are stored as spglib spells them, e.g. "P2_1/c"'
    ),
    "id in (1, 2) and spacegroup in (" + ", ".join(["14"] * (MAX_LIST + 1)) + ")": (
        "--where: spacegroup in (...) lists 1,001 values at column 29: "
        "the maximum is 1,000 per list"
    ),
    "elements has any " + ", ".join(["C"] * (MAX_LIST + 1)): (
        "--where: elements has any (...) lists 1,001 values at column 1: "
        "the maximum is 1,000 per list"
    ),
    "nelements = 40000": (
        "--where: nelements takes a whole number from -32768 to 32767, not 40000 at column 13"
    ),
    "id != 9223372036854775808": (
        "--where: id takes a whole number from -9223372036854775808 to 9223372036854775807, "
        "not 9223372036854775808 at column 7"
    ),
    "nsites > " + "9" * 5000: (
        "--where: the number " + "9" * 60 + "... (5,000 characters) has too many digits "
        "at column 10"
    ),
    'reduced_formula = "H2\x00O"': (
        '--where: reduced_formula "H2\\x00O" contains a NUL character (U+0000) at column 19: '
        "text in a filter cannot hold it; remove it"
    ),
    "band_gap['PBE\ud800'] > 1": (
        '--where: band_gap[functional] "PBE\\ud800" contains a lone surrogate (U+D800) '
        "at column 1: text in a filter cannot hold it; remove it"
    ),
    "nsites > 1 \x00": (
        "--where: unexpected character '\\x00' at column 12: quote values that contain it"
    ),
    "nsites = '" + "y" * 70 + "'": (
        '--where: nsites takes a whole number, not "' + "y" * 60 + '..." (70 characters) '
        "at column 10"
    ),
    "nsites > 1 '" + "z" * 100 + "'": (
        "--where: unexpected ''" + "z" * 59 + "...' (102 characters) at column 12: "
        "expected 'and', 'or' or the end of the filter"
    ),
}


@pytest.mark.parametrize(("source", "message"), ERRORS.items(), ids=list(ERRORS))
def test_error_messages_say_where_and_what(source: str, message: str) -> None:
    """Every refusal is one line naming the column and what to write instead."""
    with pytest.raises(FilterError) as caught:
        parse(source)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    column = re.search(r"at column (\d+)", message)
    assert caught.value.column == (int(column.group(1)) if column else None)


def test_errors_are_crystaldb_errors_and_name_their_origin() -> None:
    """The CLI prints CrystaldbError messages; GraphQL passes its own origin."""
    assert issubclass(FilterError, CrystaldbError)
    with pytest.raises(FilterError, match=r"^filter: unexpected 'or' at column 1: "):
        where("or", origin="filter")


def test_hand_built_trees_are_checked_by_to_sql() -> None:
    """A tree from another front end gets the same checks, without a column."""
    cases: dict[Node, str] = {
        cmp("spacegroup", "=", 300): "invalid filter: space group 300 is outside 1..230",
        cmp("colour", "=", "red"): "invalid filter: unknown field 'colour'",
        ElementsTest("all", ("Xx",)): "invalid filter: unknown element symbol 'Xx'",
        FlagsTest("any", ("nope",)): (
            "invalid filter: unknown flag 'nope': flags are " + ", ".join(FLAGS)
        ),
        FlagsTest("all", ()): 'invalid filter: flags test with mode "all" and 0 flags',
        cmp("flags", "=", "deuterated"): "invalid filter: operator '=' after flags",
        And(()): "invalid filter: And needs at least one operand",
        Membership("id", ()): "invalid filter: id in () needs at least one value",
        cmp("nsites", ">", True): "invalid filter: nsites takes a whole number, not True",
        cmp("spacegroup_symbol", "=", "Q 9"): (
            'invalid filter: spacegroup_symbol "Q 9" names no space group: write a '
            'Hermann-Mauguin or Hall symbol such as "P 21/c"'
        ),
        Membership("spacegroup", tuple(1 + i % 230 for i in range(66_000))): (
            "invalid filter: spacegroup in (...) lists 66,000 values: the maximum is 1,000 per list"
        ),
        ElementsTest("none", ("C",) * (MAX_LIST + 1)): (
            "invalid filter: elements excludes (...) lists 1,001 values: "
            "the maximum is 1,000 per list"
        ),
        ElementsTest("some", ("C",) * 66_000): (  # type: ignore[arg-type]
            'invalid filter: elements test with mode "some" and 66,000 symbols: give a mode'
        ),
        cmp("nelements", ">", 2**15): (
            "invalid filter: nelements takes a whole number from -32768 to 32767, not 32768"
        ),
        cmp(
            "cod", ">", 2**70
        ): "invalid filter: cod takes a whole number from -9223372036854775808",
    }
    for node, message in cases.items():
        with pytest.raises(FilterError) as caught:
            to_sql(node)
        assert str(caught.value).startswith(message)


def test_hand_built_shorthands_compile_like_parsed_ones() -> None:
    """`cod` and a label without functional mean external_id[cod] and the PBE label."""
    dialect = postgresql.dialect()

    def sql(node: Node) -> str:
        return str(to_sql(node).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    assert sql(cmp("cod", "=", 7033509)) == sql(parse("cod = 7033509"))
    assert sql(cmp("band_gap", "<", 2)) == sql(parse("band_gap[PBE] < 2"))


def test_field_table_documents_every_field_with_a_working_example(loaded: Loaded) -> None:
    """Each example in FIELDS parses and runs, and the help text lists every field."""
    help_text = describe_fields()
    for name, spec in FIELDS.items():
        assert re.search(rf"^{re.escape(name)}\b", help_text, re.MULTILINE)
        assert spec.example in help_text
        node = parse(spec.example)
        assert loaded.select(node) == loaded.oracle(node), spec.example


# --------------------------------------------------------------------------- SQL vs oracle


def test_the_data_exercises_every_field(loaded: Loaded) -> None:
    """The fixture holds what the comparisons below need, or they would prove little."""
    rows = loaded.rows.values()
    assert len(loaded.rows) > 140
    functionals = {f for row in rows for _, f, _ in row.labels}
    assert {"PBE", "HSE06"} <= functionals
    assert {d for row in rows for d, _ in row.ids} >= {"cod", "curated-cofs", "mp"}
    assert {r for row in rows for r in row.releases} == {f"{n}:{v}" for n, v in RELEASES}
    assert loaded.rows[loaded.null_spacegroup].columns["spacegroup_number"] is None
    assert {f for row in rows for f in row.columns["flags"]} == set(FLAGS)


FIELD_CASES = [
    "id in (1, 2, 3, 50)",
    "id > 100",
    "nsites <= 12",
    "nsites = 12",
    "nsites != 12",
    "nsites in (4, 12, 160)",
    "nelements >= 4",
    "nelements < 2",
    "spacegroup = 14",
    "spacegroup != 14",
    "not spacegroup = 14",
    "spacegroup in (2, 14, 19)",
    "spacegroup not in (2, 14, 19)",
    "spacegroup > 200",
    "volume > 500",
    "volume <= 120.5",
    "density < 1.6",
    "density >= 3",
    'reduced_formula = "Mg3Al2(SiO4)3"',
    "reduced_formula != SiC",
    "reduced_formula in (SiC, 'Al2SiO5', C)",
    "hill_formula = 'C4'",
    "hill_formula in (C20H14O2, H2MgO2)",
    "anonymous_formula = AB2",
    "anonymous_formula in (ABC2, AB)",
    'spacegroup_symbol = "P2_1/c"',
    "spacegroup_symbol = P-1",
    "spacegroup_symbol != P-1",
    "crystal_system = monoclinic",
    "crystal_system != monoclinic",
    "not crystal_system = monoclinic",
    "crystal_system in (cubic, hexagonal, trigonal)",
    "elements has all C, H",
    "elements has C",
    "elements has any Pb, Cd, Hg",
    "elements has only C, H, N, O",
    "elements has only Si, O, Al, Mg",
    "elements excludes C",
    "elements excludes (H, C)",
    "not elements has any H, C",
    "elements has all C, H and not elements has any Pb, Cd and nsites <= 100",
    "band_gap > 1.5",
    "band_gap[PBE] <= 2",
    "band_gap != 0",
    "band_gap > 1.5 and band_gap <= 3 and spacegroup = 14",
    "band_gap > 1 and band_gap < 3",
    "not band_gap > 1",
    "band_gap[HSE06] > 2",
    "band_gap[HSE06] > 2 and band_gap < 1",
    "band_gap[OptB88vdW] < 0.5",
    "band_gap[OptB88vdW] = 0",
    "band_gap[nonexistent] > 0",
    "cod = 9000618",
    "cod = 9013162",
    "cod != 9000618",
    "cod in (1000002, 2000001, 9999999)",
    "cod >= 4000000",
    "cod < '2000000'",
    "cod > 9000618 and cod <= 9013162",
    "external_id[mp] > 3",
    "cod not in (1000002, 2000001)",
    "jarvis = JVASP-10",
    "jarvis in (JVASP-10, 'JVASP-107772')",
    "curated-cofs = '05000N2'",
    "external_id[mp] in (mp-0, mp-21, mp-42)",
    "external_id[mp] != mp-0",
    "source = cod",
    "source = 'curated-cofs'",
    "source = mp",
    "source != cod",
    "source in (jarvis, mp)",
    "source = nowhere",
    'release = "alpha:1.0"',
    "release = alpha:2.0",
    "release = 'beta:x:1'",
    "release != alpha:1.0",
    "release in (alpha:1.0, alpha:2.0)",
    "release = alpha:1.0 and release = alpha:2.0",
    "release = alpha:3.0",
    '(crystal_system = "monoclinic" or spacegroup in (2, 14, 19)) and nelements >= 3',
    "not (nsites > 50 or elements has H) and source = cod",
    "flags has any deuterated",
    "flags has any formula_sum_mismatch, deuterated",
    "flags has all formula_sum_mismatch, organic_without_hydrogen",
    "flags has formula_sum_mismatch",
    "flags has only deuterated",
    "flags has only organic_without_hydrogen, formula_sum_mismatch",
    "flags excludes symops_contradict_symbol",
    "flags excludes (formula_sum_mismatch, organic_without_hydrogen)",
    "not flags has any dummy_sites_dropped, pymatgen_fallback",
    "flags has any deuterated and elements has C",
    "flags excludes formula_sum_mismatch and elements has all C, H and nsites <= 100",
]


@pytest.mark.parametrize("source", FIELD_CASES)
def test_each_field_and_operator_matches_the_oracle(loaded: Loaded, source: str) -> None:
    """SQL and the Python meaning select the same structures, field by field."""
    node = parse(source)
    assert loaded.select(source) == loaded.oracle(node)


EMPTY_ON_PURPOSE = {
    "band_gap[nonexistent] > 0",
    "source = nowhere",
    "release = alpha:3.0",
    "external_id[mp] > 3",  # mp-... ids are not whole numbers
}


def test_cases_are_not_trivial(loaded: Loaded) -> None:
    """Each case selects some structures and leaves others out, unless meant to select none."""
    everything = set(loaded.rows)
    for source in FIELD_CASES:
        if source in EMPTY_ON_PURPOSE:
            continue
        assert loaded.oracle(parse(source)) not in (set(), everything), source


def test_ands_of_one_label_field_apply_to_one_label(loaded: Loaded) -> None:
    """A structure with PBE gaps g and g+3 is not 'between g+0.5 and g+2.5'."""
    doubly = loaded.doubly_labelled
    gaps = sorted(v for p, f, v in loaded.rows[doubly].labels if f == "PBE")
    low, high = gaps[0] + 0.5, gaps[0] + SECOND_PBE_SHIFT - 0.5
    assert doubly in loaded.select(f"band_gap > {low}")
    assert doubly in loaded.select(f"band_gap < {high}")
    assert doubly not in loaded.select(f"band_gap > {low} and band_gap < {high}")
    assert doubly not in loaded.select(f"band_gap > {low} and (nsites > 0 and band_gap < {high})")
    # Across `or` (or `not`) the comparisons are separate tests, each on any label.
    assert doubly in loaded.select(f"band_gap > {low} and (band_gap < {high} or id < 0)")
    assert loaded.select(f"band_gap > {low} and band_gap < {high}")  # others do lie between


def test_missing_values_are_false_and_their_negation_true(loaded: Loaded) -> None:
    """The structure without a space group: not in 'spacegroup != 14', but in 'not ... = 14'."""
    null = loaded.null_spacegroup
    assert null not in loaded.select("spacegroup != 14")
    assert null in loaded.select("not spacegroup = 14")
    assert null in loaded.select("not crystal_system in (cubic, monoclinic)")
    assert null in loaded.select("crystal_system not in (cubic, monoclinic)")
    assert null not in loaded.select("crystal_system in (cubic, monoclinic) or spacegroup >= 1")


FIELD_PAIRS = [
    ("nsites", "nelements", None, None),
    ("nelements", "spacegroup", None, None),
    ("volume", "nsites", None, None),
    ("density", "band_gap", None, None),
    ("band_gap", "band_gap", "PBE", "HSE06"),
    ("band_gap", "band_gap", "PBE", "PBE"),
    ("band_gap", "spacegroup", "OptB88vdW", None),
    ("spacegroup", "nsites", None, None),
]


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_two_fields_compared_match_the_oracle(loaded: Loaded, op: str) -> None:
    """FieldComparison (the OPTIMADE filters' `nsites > nelements`): some pair of values
    compares so; a missing value (no space group, no label) makes it false, NOT true."""
    for field_, other, qualifier, other_qualifier in FIELD_PAIRS:
        node = FieldComparison(field_, op, other, qualifier, other_qualifier)  # type: ignore[arg-type]
        for tree in (node, Not(node), And((node, ElementsTest("any", ("C", "O"))))):
            assert loaded.select(tree) == loaded.oracle(tree), tree
    null = loaded.null_spacegroup
    assert null not in loaded.select(FieldComparison("nsites", ">", "spacegroup"))
    assert null in loaded.select(Not(FieldComparison("nsites", ">", "spacegroup")))
    # a structure with two PBE gaps has a pair where one is below the other
    doubly = loaded.doubly_labelled
    assert doubly in loaded.select(FieldComparison("band_gap", "<", "band_gap", "PBE", "PBE"))
    assert loaded.select(FieldComparison("band_gap", "<", "band_gap")) == {doubly}


def test_two_fields_compared_are_checked() -> None:
    """Only numeric columns and labels compare with each other; qualifiers as for values."""
    cases: dict[Node, str] = {
        FieldComparison("nsites", ">", "reduced_formula"): (
            "invalid filter: reduced_formula compared with another field: compare two of id, "
        ),
        FieldComparison("elements", "=", "nsites"): "invalid filter: elements compared with",
        FieldComparison("cod", "<", "nsites"): "invalid filter: cod compared with another field",
        FieldComparison("nsites", ">", "colour"): "invalid filter: unknown field 'colour'",
        FieldComparison("nsites", "~", "nelements"): (  # type: ignore[arg-type]
            "invalid filter: operator '~' between two fields: use = != < <= > >="
        ),
        FieldComparison("nsites", ">", "nelements", "PBE"): (
            "invalid filter: 'nsites' takes no [...]"
        ),
    }
    for node, message in cases.items():
        with pytest.raises(FilterError) as caught:
            to_sql(node)
        assert str(caught.value).startswith(message), str(caught.value)


# --------------------------------------------------------------------------- random filters

KEYWORD = re.compile(r"and|or|not|in|has|all|any|only|excludes", re.IGNORECASE)
BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_+\-.:/]*")


class Generator:
    """Random ASTs over the stored values, and text that should parse back to them."""

    def __init__(self, rows: dict[int, Row], seed: int) -> None:
        self.random = random.Random(seed)
        self.rows = list(rows.values())
        self.elements = [*sorted({e for row in self.rows for e in row.elements}), "Pu", "In"]
        self.ids = [*sorted({i for row in self.rows for i in row.ids}), ("cod", "1234567")]

    def pick(self, column: str) -> Any:
        """A stored value of a column (never NULL)."""
        values = [row.columns[column] for row in self.rows if row.columns[column] is not None]
        return self.random.choice(values)

    def atom(self) -> Node:
        """One comparison, membership or elements test on a random field."""
        r = self.random
        kind = r.choice(
            ["int", "float", "text", "elements", "flags", "label", "id", "source", "release"]
        )
        if kind in ("int", "float", "text"):
            fields = {
                "int": ["id", "nsites", "nelements", "spacegroup"],
                "float": ["volume", "density"],
                "text": ["reduced_formula", "hill_formula", "anonymous_formula",
                         "spacegroup_symbol", "crystal_system"],
            }[kind]  # fmt: skip
            name = r.choice(fields)
            ops = ["=", "!="] if kind == "text" else ["=", "!=", "<", "<=", ">", ">="]
            values = tuple(self.pick(COLUMNS[name]) for _ in range(r.randint(1, 3)))
            if kind == "float" and r.random() < 0.5:
                values = tuple(round(v * r.uniform(0.8, 1.2), 2) for v in values)
            return self._compare(name, ops, values, None)
        if kind == "elements":
            symbols = tuple(dict.fromkeys(r.sample(self.elements, r.randint(1, 4))))
            return ElementsTest(r.choice(["all", "any", "only", "none"]), symbols)
        if kind == "flags":
            flags = tuple(dict.fromkeys(r.sample(FLAGS, r.randint(1, 3))))
            return FlagsTest(r.choice(["all", "any", "only", "none"]), flags)
        if kind == "label":
            functional = r.choice(["PBE", "PBE", "HSE06", "OptB88vdW"])
            values = tuple(round(r.uniform(-0.5, 6.5), 2) for _ in range(r.randint(1, 2)))
            return self._compare("band_gap", list(OPS), values, functional)
        if kind == "id":
            database = r.choice(["cod", "cod", "curated-cofs", "jarvis", "mp"])
            known = [i for d, i in self.ids if d == database] or ["none"]
            values = tuple(r.choice(known) for _ in range(r.randint(1, 3)))
            if database == "cod" and r.random() < 0.3:
                op = r.choice(["<", "<=", ">", ">="])
                return Comparison("external_id", op, int(values[0]), "cod")  # type: ignore[arg-type]
            return self._compare("external_id", ["=", "!="], values, database)
        if kind == "source":
            values = tuple(r.sample(["cod", "curated-cofs", "jarvis", "mp", "nowhere"], 2))
            return self._compare("source", ["=", "!="], values[: r.randint(1, 2)], None)
        names = [f"{n}:{v}" for n, v in RELEASES] + ["gamma:1"]
        values = tuple(r.sample(names, r.randint(1, 3)))
        return self._compare("release", ["=", "!="], values, None)

    def _compare(self, name: str, ops: list[str], values: tuple[Any, ...], q: str | None) -> Node:
        """A comparison with the first value, or a membership of all of them."""
        if len(values) > 1 or self.random.random() < 0.2:
            return Membership(name, values, q)
        return Comparison(name, self.random.choice(ops), values[0], q)  # type: ignore[arg-type]

    def tree(self, depth: int) -> Node:
        """A random boolean combination of atoms."""
        r = self.random
        if depth == 0 or r.random() < 0.3:
            return self.atom()
        choice = r.random()
        if choice < 0.2:
            return Not(self.tree(depth - 1))
        operands = tuple(self.tree(depth - 1) for _ in range(r.randint(2, 4)))
        return And(operands) if choice < 0.65 else Or(operands)

    # ----------------------------------------------------------------------- rendering

    def keyword(self, word: str) -> str:
        """A keyword in random case."""
        return self.random.choice([word, word.upper(), word.capitalize()])

    def value(self, value: Any) -> str:
        """A value as a user might write it: number, quoted string or bare word."""
        if not isinstance(value, str):
            return repr(value)
        quotes = ['"', "'"]
        if BARE.fullmatch(value) and not KEYWORD.fullmatch(value):
            quotes.append("")
        quote = self.random.choice(quotes)
        return f"{quote}{value}{quote}"

    def field(self, node: Comparison | Membership) -> str:
        """The field as written, using the shorthands (`cod`, no [PBE]) now and then."""
        r = self.random
        if node.field == "external_id" and node.qualifier != "mp" and r.random() < 0.7:
            return str(node.qualifier)
        if node.field == "band_gap" and node.qualifier == DEFAULT_FUNCTIONAL and r.random() < 0.6:
            return "band_gap"
        if node.qualifier is not None:
            return f"{node.field}[{node.qualifier}]"
        return node.field

    def render(self, node: Node) -> str:
        """Text that parses back to `node` (flattened)."""
        r = self.random
        if isinstance(node, And | Or):
            word = f" {self.keyword('and' if isinstance(node, And) else 'or')} "
            return word.join(self.operand(o) for o in node.operands)
        if isinstance(node, Not):
            inner = node.operand
            if isinstance(inner, Membership) and r.random() < 0.5:
                values = ", ".join(self.value(v) for v in inner.values)
                return f"{self.field(inner)} {self.keyword('not')} {self.keyword('in')} ({values})"
            return f"{self.keyword('not')} {self.operand(inner)}"
        if isinstance(node, ElementsTest | FlagsTest):
            return self.list_test(node)
        if isinstance(node, Membership):
            values = ", ".join(self.value(v) for v in node.values)
            return f"{self.field(node)} {self.keyword('in')} ({values})"
        space = r.choice(["", " ", "  "])
        return f"{self.field(node)}{space}{node.op}{space}{self.value(node.value)}"

    def list_test(self, node: ElementsTest | FlagsTest) -> str:
        """`elements|flags has [mode] ...` or `... excludes ...`, values bare or quoted."""
        r = self.random
        name, values = (
            ("elements", node.symbols) if isinstance(node, ElementsTest) else ("flags", node.flags)
        )
        listed = ", ".join(
            s if r.random() < 0.8 else self.random.choice(['"', "'"]).join(["", s, ""])
            for s in values
        )
        if r.random() < 0.2:
            listed = f"({listed})"
        if node.mode == "none":
            return f"{name} {self.keyword('excludes')} {listed}"
        mode = "" if node.mode == "all" and r.random() < 0.3 else self.keyword(node.mode) + " "
        return f"{name} {self.keyword('has')} {mode}{listed}"

    def operand(self, node: Node) -> str:
        """An operand of and/or/not, parenthesised where precedence needs it (or by whim)."""
        needs = isinstance(node, And | Or)
        text = self.render(node)
        return f"({text})" if needs or self.random.random() < 0.15 else text


def flatten(node: Node) -> Node:
    """The tree the parser builds: nested ands (ors) merged, label functional defaulted."""
    if isinstance(node, And | Or):
        kind = type(node)
        flat: list[Node] = []
        for operand in map(flatten, node.operands):
            flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
        return kind(tuple(flat))
    if isinstance(node, Not):
        return Not(flatten(node.operand))
    return node


def test_random_filters_match_the_oracle(loaded: Loaded) -> None:
    """400 seeded random filters: text parses back to its tree, and SQL agrees with Python."""
    generator = Generator(loaded.rows, seed=20240611)
    selected_sizes = set()
    for _ in range(400):
        node = flatten(generator.tree(depth=3))
        source = generator.render(node)
        assert parse(source) == node, source
        expected = loaded.oracle(node)
        assert loaded.select(node) == expected, source
        selected_sizes.add(len(expected))
    assert len(selected_sizes) > 30  # the filters select many different amounts


# --------------------------------------------------------------------------- indexes


def _plan(loaded: Loaded, source: str) -> str:
    """EXPLAIN of the filter's query, with sequential scans discouraged as on a large table."""
    query = select(Structure.id).where(where(source))
    compiled = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    with loaded.db.session() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        return "\n".join(session.scalars(text(f"EXPLAIN {compiled}")))


@pytest.mark.parametrize(
    ("source", "index"),
    [
        ("elements has all C, H", "ix_structures_elements"),
        ("elements has any Pb, Cd", "ix_structures_elements"),
        ("elements has only Si, O", "ix_structures_elements"),
        ("flags has any deuterated, symops_contradict_symbol", "ix_structures_flags"),
        ("flags has all formula_sum_mismatch", "ix_structures_flags"),
        ("nsites <= 12", "ix_structures_nsites"),
        ("spacegroup in (2, 14)", "ix_structures_spacegroup_number"),
        ("band_gap > 5.5", "ix_labels_property_value"),
        ("cod = 9000618", "pk_external_ids"),
        ("source = mp", "pk_external_ids"),
        ("cod >= 4000000", "pk_external_ids"),
        ("release = alpha:1.0", "uq_releases_name_version"),
    ],
)
def test_filters_can_use_an_index(loaded: Loaded, source: str, index: str) -> None:
    """The SQL is written so PostgreSQL can serve each test from an index."""
    plan = _plan(loaded, source)
    assert index in plan
    assert "Seq Scan" not in plan


@pytest.mark.parametrize(
    ("source", "index"),
    [
        ('spacegroup_symbol = "P 21/c"', "ix_structures_spacegroup_number"),
        ("spacegroup_symbol in ('P 21/n', 'P -1')", "ix_structures_spacegroup_number"),
    ],
)
def test_symbol_filters_use_the_space_group_index(loaded: Loaded, source: str, index: str) -> None:
    """A symbol names one space group number, which has the index (the symbol column has none)."""
    plan = _plan(loaded, source)
    assert index in plan
    assert "Seq Scan" not in plan


def _bound_plan(loaded: Loaded, source: str) -> str:
    """EXPLAIN of the filter's query as it is sent: lists bound as array parameters."""
    query = select(Structure.id).where(where(source))
    compiled = query.compile(loaded.db.engine, compile_kwargs={"render_postcompile": True})
    with loaded.db.session() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        explain = session.connection().exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
        return "\n".join(row[0] for row in explain)


@pytest.mark.parametrize(
    ("source", "index"),
    [
        ("id in (1, 2, 3)", "pk_structures"),
        ("spacegroup in (2, 14, 15)", "ix_structures_spacegroup_number"),
        ("nsites in (4, 12, 160)", "ix_structures_nsites"),
        ("reduced_formula in (SiC, C, 'Al2SiO5')", "ix_structures_reduced_formula"),
        ("crystal_system in (cubic, hexagonal)", "ix_structures_crystal_system"),
        ("spacegroup_symbol in ('P 21/c', 'P -1')", "ix_structures_spacegroup_number"),
        ("band_gap[HSE06] in (1.5, 2.5)", "ix_labels_property_value"),
        ("cod in (9000618, 9013162)", "pk_external_ids"),
        ("source in (mp, cod)", "pk_external_ids"),
        ("release in (alpha:1.0, 'beta:x:1')", "uq_releases_name_version"),
        ("elements has any Pb, Cd", "ix_structures_elements"),
        ("flags has any deuterated, pymatgen_fallback", "ix_structures_flags"),
    ],
)
def test_lists_are_one_array_parameter_an_index_serves(
    loaded: Loaded, source: str, index: str
) -> None:
    """`= ANY(array)` (unnest for releases), bound as the driver sends it, still uses the index."""
    plan = _bound_plan(loaded, source)
    assert index in plan
    assert "Seq Scan" not in plan


# --------------------------------------------------------------------------- space-group symbols


def _spellings(number: int) -> set[str]:
    """Every gemmi setting of a type: name, extended name, unspaced, 2_1 for 21, Hall symbol."""
    spellings = set()
    for entry in gemmi.spacegroup_table():
        if entry.number == number:
            name = entry.hm
            subscripted = re.sub(r"([2346])([1-5])", r"\1_\2", name)
            spellings |= {name, entry.xhm(), name.replace(" ", ""), subscripted}
            if gemmi.find_spacegroup_by_name(entry.hall) is None:
                spellings.add(entry.hall)
    return spellings


def _stored_types(loaded: Loaded) -> dict[int, str]:
    """The space group numbers and symbols of the stored rows."""
    return {
        row.columns["spacegroup_number"]: row.columns["spacegroup_symbol"]
        for row in loaded.rows.values()
        if row.columns["spacegroup_number"] is not None
    }


def test_stored_symbols_are_the_tables_spelling(loaded: Loaded) -> None:
    """Ingest stores spglib's symbol of the standard setting: what symbol filters normalise to."""
    stored = _stored_types(loaded)
    assert len(stored) > 10 and 14 in stored
    assert {number: stored_symbol(number) for number in stored} == stored


def test_symbols_in_any_spelling_or_setting_select_the_stored_ones(loaded: Loaded) -> None:
    """Every spelling of every stored type: the oracle's rows for the stored symbol (text, API)."""
    for number, stored in _stored_types(loaded).items():
        expected = loaded.oracle(cmp("spacegroup_symbol", "=", stored))
        assert expected
        for written in sorted(_spellings(number)):
            quote = "'" if '"' in written else '"'  # Hall symbols may hold either, not both
            assert parse(f"spacegroup_symbol = {quote}{written}{quote}") == cmp(
                "spacegroup_symbol", "=", stored
            ), written
            assert loaded.select(cmp("spacegroup_symbol", "=", written)) == expected, written


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ('spacegroup_symbol = "P 21/c"', 'spacegroup_symbol = "P2_1/c"'),
        ("spacegroup_symbol = 'P 1 21/c 1'", 'spacegroup_symbol = "P2_1/c"'),
        ('spacegroup_symbol = "P 21/n"', 'spacegroup_symbol = "P2_1/c"'),
        ('spacegroup_symbol = "-P 2ybc"', 'spacegroup_symbol = "P2_1/c"'),
        ("spacegroup_symbol = P21/c", 'spacegroup_symbol = "P2_1/c"'),
        ('spacegroup_symbol != "P 21/c"', 'spacegroup_symbol != "P2_1/c"'),
        (
            "spacegroup_symbol in ('P 21/n', 'F m -3 m', '-P 1', 'C 1 2/c 1')",
            "spacegroup_symbol in (P2_1/c, Fm-3m, P-1, C2/c)",
        ),
        (
            "spacegroup_symbol not in (P21/c, 'P 1 21/a 1', 'P -1')",
            "spacegroup_symbol not in (P2_1/c, P2_1/c, P-1)",
        ),
        (
            "not spacegroup_symbol = 'P 1 1 21/b' or nsites < 10",
            "not spacegroup_symbol = P2_1/c or nsites < 10",
        ),
    ],
)
def test_symbol_spellings_in_every_kind_of_test(loaded: Loaded, written: str, stored: str) -> None:
    """=, !=, in, not in and not: the spelling is normalised, the rows are the oracle's."""
    node = parse(written)
    assert node == parse(stored)
    expected = loaded.oracle(parse(stored))
    assert expected not in (set(), set(loaded.rows))
    assert loaded.select(written) == expected


def test_unknown_symbols_show_the_stored_spelling_and_a_cut_value() -> None:
    """The error names the field, echoes the value cut short and shows how symbols are stored."""
    for node in (
        cmp("spacegroup_symbol", "=", "Q" * 5000),
        Membership("spacegroup_symbol", ("P 21/c", "Z")),
    ):
        with pytest.raises(FilterError) as caught:
            to_sql(node)
        message = str(caught.value)
        assert "spacegroup_symbol" in message and '"P2_1/c"' in message
        assert len(message) < 300
    with pytest.raises(FilterError) as caught:
        to_sql(cmp("spacegroup_symbol", "=", "Q" * 5000))
    assert 'spacegroup_symbol "' + "Q" * 60 + '..." (5,000 characters)' in str(caught.value)


# --------------------------------------------------------------------------- list limits


def _statements(loaded: Loaded, node: Node) -> tuple[set[int], list[int]]:
    """Ids the SQL backend selects, and the number of parameters of each statement it sent."""
    counts: list[int] = []

    def count(*args: Any) -> None:
        counts.append(len(args[3] or ()))  # conn, cursor, statement, parameters, ...

    event.listen(loaded.db.engine, "before_cursor_execute", count)
    try:
        return loaded.select(node), counts
    finally:
        event.remove(loaded.db.engine, "before_cursor_execute", count)


def _lists(loaded: Loaded) -> dict[str, Callable[[int], Node]]:
    """A list of n values for every field that takes one, starting with stored values."""
    rows = list(loaded.rows.values())

    def padded(stored: list[Any], filler: Callable[[int], Any], n: int) -> tuple[Any, ...]:
        return tuple((sorted(set(stored)) + [filler(i) for i in range(n)])[:n])

    formulas = [row.columns["reduced_formula"] for row in rows]
    hse = [v for row in rows for _, f, v in row.labels if f == "HSE06"]
    cods = [i for row in rows for d, i in row.ids if d == "cod"]
    symbols = sorted(ELEMENT_SYMBOLS)
    return {
        "id": lambda n: Membership("id", tuple(range(1, n + 1))),
        "nsites": lambda n: Membership("nsites", tuple(range(1, n + 1))),
        "spacegroup": lambda n: Membership("spacegroup", tuple(1 + i % 230 for i in range(n))),
        "spacegroup_symbol": lambda n: Membership(
            "spacegroup_symbol", tuple(stored_symbol(1 + (i * 13) % 230) for i in range(n))
        ),
        "reduced_formula": lambda n: Membership(
            "reduced_formula", padded(formulas, lambda i: f"X{i}", n)
        ),
        "band_gap": lambda n: Membership("band_gap", padded(hse, lambda i: 100.0 + i, n), "HSE06"),
        "cod": lambda n: Membership("external_id", padded(cods, str, n), "cod"),
        "source": lambda n: Membership("source", padded(["cod", "mp"], lambda i: f"db{i}", n)),
        "release": lambda n: Membership(
            "release", padded(["alpha:1.0", "beta:x:1"], lambda i: f"r{i}:1", n)
        ),
        "elements": lambda n: ElementsTest("any", tuple(symbols[i % 3 :: 3][0] for i in range(n))),
        "elements has all": lambda n: ElementsTest(
            "all", tuple(("C", "H")[i % 2] for i in range(n))
        ),
        "elements excludes": lambda n: Not(
            ElementsTest("none", tuple(("Pb", "Cd", "Cl")[i % 3] for i in range(n)))
        ),
        "flags": lambda n: FlagsTest("any", tuple(FLAGS[i % len(FLAGS)] for i in range(n))),
    }


def test_lists_up_to_the_maximum_are_one_parameter(loaded: Loaded) -> None:
    """MAX_LIST values send as many parameters as two do, and select the oracle's rows."""
    for name, build in _lists(loaded).items():
        short, longest = build(2), build(MAX_LIST)
        assert loaded.oracle(longest), name
        selected, long_counts = _statements(loaded, longest)
        assert selected == loaded.oracle(longest), name
        _, short_counts = _statements(loaded, short)
        assert long_counts == short_counts, name
        assert max(long_counts) <= 4, name


def test_lists_over_the_maximum_are_refused_naming_field_count_and_maximum(loaded: Loaded) -> None:
    """One value too many, or the 66,000 that overflowed the driver: a FilterError, no SQL."""
    for name, build in _lists(loaded).items():
        for n in (MAX_LIST + 1, 66_000):
            with pytest.raises(FilterError) as caught:
                to_sql(build(n))
            message = str(caught.value)
            field_name = name.split()[0].replace("cod", "external_id")
            assert field_name in message, message
            assert f"lists {n:,} values" in message and f"maximum is {MAX_LIST:,}" in message


# --------------------------------------------------------------------------- nesting and length


def _nots(depth: int) -> Node:
    """not not ... nsites <= 12, `depth` levels, built without recursion."""
    node: Node = cmp("nsites", "<=", 12)
    for _ in range(depth):
        node = Not(node)
    return node


def _alternating(depth: int) -> Node:
    """nsites > 1 and (nsites < 200 or (... )): and/or alternating, `depth` levels."""
    node: Node = cmp("nsites", "=", 12)
    for level in range(depth):
        test = cmp("nsites", ">", level) if level % 2 else cmp("nelements", "<", 2 + level % 5)
        node = And((test, node)) if level % 2 else Or((test, node))
    return node


def _text(node: Node) -> str:
    """Text for the trees above, with the fewest parentheses."""
    if isinstance(node, Not):
        return f"not {_text(node.operand)}"
    if isinstance(node, And | Or):
        word = " and " if isinstance(node, And) else " or "
        return word.join(
            _text(o) if isinstance(o, Comparison | Not) else f"({_text(o)})" for o in node.operands
        )
    assert isinstance(node, Comparison)
    return f"{node.field} {node.op} {node.value}"


@pytest.mark.parametrize("build", [_nots, _alternating])
def test_trees_at_the_maximum_depth_compile_and_run(
    loaded: Loaded, build: Callable[[int], Node]
) -> None:
    """MAX_DEPTH levels of and/or/not: parsed from text, compiled, and the oracle's rows."""
    node = build(MAX_DEPTH)
    assert parse(_text(node)) == node
    assert loaded.select(node) == loaded.oracle(node)
    assert loaded.select(_text(node)) == loaded.oracle(node)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000])
@pytest.mark.parametrize("build", [_nots, _alternating])
def test_deeper_trees_are_refused_saying_the_maximum(
    build: Callable[[int], Node], depth: int
) -> None:
    """A tree built by another front end, or text, one level too deep or 5000 deep: FilterError."""
    expected = f"the maximum nesting depth is {MAX_DEPTH}"
    with pytest.raises(FilterError, match=expected):
        to_sql(build(depth))
    if depth == MAX_DEPTH + 1:  # 5000 levels of text: test_deep_text_is_refused_...
        with pytest.raises(FilterError, match=expected):
            parse(_text(build(depth)))


@pytest.mark.parametrize(
    "source",
    [
        "(" * 5000 + "nsites > 1" + ")" * 5000,
        "(" * (MAX_DEPTH + 1) + "nsites > 1" + ")" * (MAX_DEPTH + 1),
        "not " * 5000 + "nsites > 1",
        "(nsites > 1 or " * 3000 + "nsites > 2" + ")" * 3000,
        "elements has C and " * 3000 + "nsites > 1",  # wide, not deep: accepted
    ],
)
def test_deep_text_is_refused_saying_the_maximum(source: str) -> None:
    """5000 parentheses or nots: a FilterError, never RecursionError; width is no depth."""
    if source.startswith("elements"):
        assert len(parse(source).operands) == 3001  # type: ignore[union-attr]
        return
    with pytest.raises(FilterError, match=f"the maximum nesting depth is {MAX_DEPTH}"):
        parse(source)


def test_parentheses_up_to_the_maximum_are_fine() -> None:
    """MAX_DEPTH parentheses open at once parse; quoted ones do not count."""
    assert parse("(" * MAX_DEPTH + "nsites > 1" + ")" * MAX_DEPTH) == cmp("nsites", ">", 1)
    quoted = "reduced_formula = '" + "(" * 100 + "'"
    assert parse(quoted) == cmp("reduced_formula", "=", "(" * 100)


def test_filter_text_length_is_bounded() -> None:
    """MAX_LENGTH characters parse; one more is refused, saying both lengths."""
    assert parse("nsites > 1" + " " * (MAX_LENGTH - 10)) == cmp("nsites", ">", 1)
    with pytest.raises(FilterError) as caught:
        parse("nsites > 1" + " " * (MAX_LENGTH - 9))
    assert str(caught.value) == (
        f"--where: the filter is {MAX_LENGTH + 1:,} characters long: the maximum is {MAX_LENGTH:,}"
    )


# --------------------------------------------------------------------------- hostile strings


BAD_STRINGS = ["H2\x00O", "\ud800", "C\udfffH4"]
STRING_FIELDS: dict[str, tuple[Callable[[str], Node], Callable[[str], str]]] = {
    "reduced_formula": (
        lambda bad: cmp("reduced_formula", "=", bad),
        lambda bad: f"reduced_formula = '{bad}'",
    ),
    "hill_formula": (
        lambda bad: Membership("hill_formula", ("C4", bad)),
        lambda bad: f"hill_formula in (C4, '{bad}')",
    ),
    "anonymous_formula": (
        lambda bad: cmp("anonymous_formula", "!=", bad),
        lambda bad: f"anonymous_formula != '{bad}'",
    ),
    "spacegroup_symbol": (
        lambda bad: cmp("spacegroup_symbol", "=", f"P21/c{bad}"),
        lambda bad: f"spacegroup_symbol = 'P21/c{bad}'",
    ),
    "crystal_system": (
        lambda bad: cmp("crystal_system", "=", bad),
        lambda bad: f"crystal_system = '{bad}'",
    ),
    "release": (
        lambda bad: cmp("release", "=", f"alpha{bad}:1.0"),
        lambda bad: f"release = 'alpha{bad}:1.0'",
    ),
    "source": (lambda bad: cmp("source", "=", bad), lambda bad: f"source = '{bad}'"),
    "cod": (lambda bad: cmp("cod", "=", bad), lambda bad: f"cod = '{bad}'"),
    "external_id": (
        lambda bad: Membership("external_id", ("mp-1", bad), "mp"),
        lambda bad: f"external_id[mp] in (mp-1, '{bad}')",
    ),
    "external_id[database]": (
        lambda bad: cmp("external_id", "=", "mp-1", bad),
        lambda bad: f"external_id['{bad}'] = mp-1",
    ),
    "band_gap[functional]": (
        lambda bad: cmp("band_gap", ">", 1.0, bad),
        lambda bad: f"band_gap['{bad}'] > 1",
    ),
    "elements": (
        lambda bad: ElementsTest("all", ("C", bad)),
        lambda bad: f"elements has all C, '{bad}'",
    ),
    "flag": (
        lambda bad: FlagsTest("any", ("deuterated", f"deuterated{bad}")),
        lambda bad: f"flags has any deuterated, 'deuterated{bad}'",
    ),
}


@pytest.mark.parametrize("bad", BAD_STRINGS, ids=["nul", "surrogate", "low-surrogate"])
@pytest.mark.parametrize("name", list(STRING_FIELDS))
def test_nul_and_lone_surrogates_are_refused_naming_the_field(name: str, bad: str) -> None:
    """Before the driver: a one-line FilterError naming the field, printable and UTF-8 clean."""
    tree, source = STRING_FIELDS[name]
    for compile_ in (lambda: to_sql(tree(bad)), lambda: where(source(bad))):
        with pytest.raises(FilterError) as caught:
            compile_()
        message = str(caught.value)
        assert name in message, message
        assert ("NUL character (U+0000)" if "\x00" in bad else "lone surrogate") in message
        assert message.isprintable() and message.encode("utf-8")


def test_long_values_are_echoed_cut_with_their_length() -> None:
    """Values, field names, symbols and tokens: at most 60 characters of them, and the length."""
    cases: list[Callable[[], Any]] = [
        lambda: parse('nsites > "' + "a" * 5000 + '"'),
        lambda: parse("colour" + "r" * 4994 + " = 1"),
        lambda: parse("nsites > 1 '" + "b" * 4998 + "'"),
        lambda: parse("elements has all C, " + "Xx" * 2500),
        lambda: to_sql(cmp("crystal_system", "=", "c" * 5000)),
        lambda: to_sql(cmp("release", "=", "r" * 5000)),
        lambda: to_sql(ElementsTest("all", ("\x00" * 5000,))),
        lambda: parse("flags has any " + "f" * 5000),
        lambda: to_sql(cmp("reduced_formula", "=", "\ud800" * 5000)),
    ]
    for case in cases:
        with pytest.raises(FilterError) as caught:
            case()
        message = str(caught.value)
        assert "(5,000 characters)" in message, message
        assert len(message) < 400 and message.isprintable(), message


# --------------------------------------------------------------------------- whole numbers


@pytest.mark.parametrize(
    "source",
    [
        "id <= 9223372036854775807",
        "id in (1, -9223372036854775808, 9223372036854775807)",
        "nsites < 2147483647 and nsites > -2147483648",
        "nelements in (32767, 2, -32768)",
        "cod <= 9223372036854775807",
        "cod > -9223372036854775808",
    ],
)
def test_whole_numbers_at_the_column_limits_run(loaded: Loaded, source: str) -> None:
    """The largest numbers a column holds are accepted and run (no driver range error)."""
    assert loaded.select(source) == loaded.oracle(parse(source))


@pytest.mark.parametrize(
    "source",
    [
        "id = 9223372036854775808",
        "nsites > 99999999999999999999",
        "nelements in (2, 40000)",
        "cod >= 9223372036854775808",
        "nsites < 1e30",
    ],
)
def test_whole_numbers_beyond_the_column_are_refused(source: str) -> None:
    """Beyond the column's range: a FilterError naming field and range, not a driver error."""
    field_name = source.split()[0]
    with pytest.raises(FilterError, match=rf"{field_name} takes a whole number from -\d+ to \d+"):
        where(source)
