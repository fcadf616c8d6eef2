"""The fields of the filter language, and the checks of a filter against them.

One table (`FIELDS`, built by `_fields()`) says what each field tests, which operators and
values it takes, and how `--help` and the docs describe it (`describe_fields()`, from which
`docs/hooks/reference.py` generates the filter reference). The parser (`crystaldb.query.grammar`)
checks each field, operator and value against it where it was written; `check` does the same
for an AST built by hand (the GraphQL filter input), so both reach the SQL compiler
(`crystaldb.query.sql`) checked and normalised alike.

The table names the `structures` column a field maps to by its attribute name, and
`_check_range` reads the column's SQL integer type from `crystaldb.schema.structures`, so this
module (unlike `crystaldb.query.ast`) imports SQLAlchemy and the schema.

Field names are case-insensitive (the parser lowers them); element symbols, flags,
functionals, formulas, ids and the other values are not (``Cl``, not ``cl``;
``crystal_system = cubic``). An unknown flag is an error that lists the known ones, since a
misspelt one would select nothing.

``spacegroup_symbol`` takes a space-group symbol as people write it: with or without spaces,
``21`` or ``2_1`` or ``2(1)``, short or full (``P 1 21/c 1``), in any tabulated setting
(``P 21/n``, ``P 1 1 21/b``, origin ``:2``, axes ``:R``) or as a Hall symbol (``-P 2ybc``). It
is read through spglib's and gemmi's tables (`crystaldb.core.spacegroups`) and stands for its
space-group *type*: the checked AST holds the stored spelling (``P2_1/c``).

Limits, so that no input reaches the database driver or Python's recursion limit:

- the text of a filter: at most `MAX_LENGTH` characters;
- every list (``in (...)``, ``has``/``excludes`` symbols or flags): at most `MAX_LIST` values;
- nesting: at most `MAX_DEPTH` levels of and/or/not in the tree (``not (a or b)`` is 2 deep)
  and, in text, of parentheses open at once;
- text values (formulas, symbols, ids, names, qualifiers) cannot hold NUL (U+0000), which
  PostgreSQL text refuses, nor lone surrogates, which UTF-8 cannot encode; whole numbers must
  fit the column they are compared with (``nelements``: 16 bits, ``nsites``: 32, ids: 64).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from ase.data import chemical_symbols
from sqlalchemy import BigInteger, SmallInteger

from crystaldb.core.records import CRYSTAL_SYSTEMS, FLAGS
from crystaldb.core.spacegroups import space_group_number, stored_symbol
from crystaldb.query.ast import (
    And,
    Comparison,
    ElementsTest,
    FieldComparison,
    FlagsTest,
    ListTest,
    Membership,
    Node,
    Not,
    Op,
    Or,
    Value,
    fail,
    list_test,
    quote_name,
    show,
)
from crystaldb.schema.releases import ReleaseRef
from crystaldb.schema.structures import Structure

DEFAULT_FUNCTIONAL = "PBE"  # what a label field without [functional] refers to
ELEMENT_SYMBOLS = frozenset(chemical_symbols[1:119])  # H .. Og, without ase's dummy "X"
SPACEGROUPS = range(1, 231)
MAX_LENGTH = 100_000  # characters in the text of a filter
MAX_LIST = 1_000  # values in one list: in (...), has/excludes symbols or flags
MAX_DEPTH = 32  # levels of and/or/not in a tree, and of parentheses open at once in text
_BAD_CHARS = re.compile(r"[\x00\ud800-\udfff]")  # NUL (PostgreSQL text), lone surrogates (UTF-8)

# --------------------------------------------------------------------------- the table

Kind = Literal["column", "elements", "flags", "label", "external_id", "source", "release"]
Type = Literal["int", "float", "text", "id", "elements", "flags"]
LIST_TYPES = ("elements", "flags")  # fields tested with has/excludes

ORDERED_OPS: tuple[Op, ...] = ("=", "!=", "<", "<=", ">", ">=")
EQUALITY_OPS: tuple[Op, ...] = ("=", "!=")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the language: what it tests, which operators and values it takes."""

    name: str
    kind: Kind
    type: Type
    description: str
    example: str
    column: str | None = None  # the Structure attribute, for kind "column"
    qualifier: str | None = None  # what [...] names after the field, if it takes one

    @property
    def ops(self) -> tuple[Op, ...]:
        """Comparison operators allowed (membership `in` goes with any of them)."""
        if self.type in ("int", "float", "id"):
            return ORDERED_OPS
        return EQUALITY_OPS if self.type == "text" else ()

    @property
    def operators(self) -> str:
        """The operators as the help text shows them."""
        if self.type in LIST_TYPES:
            return "has all, has any, has only, excludes"
        return ", ".join((*self.ops, "in", "not in"))


# Databases whose ids are fields of their own (`cod = 7033509`), with an example id; any
# other database is reached with `external_id[<database>] = ...`.
EXTERNAL_ID_DATABASES: Mapping[str, str] = MappingProxyType(
    {"cod": "7033509", "jarvis": '"JVASP-1002"', "curated-cofs": '"05000N2"'}
)
LABEL_PROPERTIES = ("band_gap",)  # label fields; values in eV


def _column(name: str, type_: Type, description: str, example: str, column: str = "") -> FieldSpec:
    """A field that is a `structures` column (of the same name unless given)."""
    return FieldSpec(name, "column", type_, description, example, column=column or name)


def _fields() -> Mapping[str, FieldSpec]:
    """The field table, in the order the help text lists it."""
    systems = ", ".join(CRYSTAL_SYSTEMS)
    label = f"DFT label in eV; [functional] defaults to {DEFAULT_FUNCTIONAL}"
    numeric = " (< <= > >= compare whole-number ids as numbers)"
    specs = [
        _column("id", "int", "structure id", "id in (1, 2, 3)"),
        FieldSpec("elements", "elements", "elements", "chemical elements present (Cl, not cl)",
                  "elements has all C, H and elements excludes Pb"),
        _column("nelements", "int", "number of distinct elements", "nelements >= 3"),
        _column("nsites", "int", "sites in the stored cell", "nsites <= 100"),
        _column("reduced_formula", "text", "reduced formula (pymatgen)", 'reduced_formula = "H2O"'),
        _column("hill_formula", "text", "Hill formula of the cell", 'hill_formula = "C20H14O2"'),
        _column("anonymous_formula", "text", "formula with elements as A, B, ...",
                'anonymous_formula = "AB2"'),
        _column("spacegroup", "int", "space group number, 1-230 (spglib)",
                "spacegroup in (2, 14, 19)", column="spacegroup_number"),
        _column("spacegroup_symbol", "text",
                "space group type by Hermann-Mauguin or Hall symbol, any setting or spelling",
                'spacegroup_symbol = "P 21/c"'),
        _column("crystal_system", "text", f"one of {systems}", "crystal_system = monoclinic"),
        _column("volume", "float", "cell volume in cubic angstrom", "volume > 500"),
        _column("density", "float", "density in g/cm^3", "density < 1.6"),
        FieldSpec("flags", "flags", "flags", "quality flags: " + ", ".join(FLAGS),
                  "flags has any formula_sum_mismatch, deuterated"),
        *(
            FieldSpec(name, "label", "float", label, f"{name} > 1.5 and {name}[HSE06] < 4",
                      qualifier="functional")
            for name in LABEL_PROPERTIES
        ),
        *(
            FieldSpec(database, "external_id", "id", f"id in the {database} database{numeric}",
                      f"{database} = {example}")
            for database, example in EXTERNAL_ID_DATABASES.items()
        ),
        FieldSpec("external_id", "external_id", "id", f"id in the database in [...]{numeric}",
                  'external_id[mp] = "mp-149"', qualifier="database"),
        FieldSpec("source", "source", "text", "has an id in that database", "source = cod"),
        FieldSpec("release", "release", "text", "member of the release name:version",
                  'release = "omdb-gap1:1.1"'),
    ]  # fmt: skip
    return MappingProxyType({spec.name: spec for spec in specs})


FIELDS: Mapping[str, FieldSpec] = _fields()


def describe_fields() -> str:
    """The field table as plain text, for `--help` and the README."""
    width = max(len(name) for name in FIELDS)
    lines = []
    for spec in FIELDS.values():
        name = spec.name + (f"[{spec.qualifier}]" if spec.qualifier else "")
        lines.append(f"{name:<{width + 12}} {spec.description}; {spec.operators}")
        lines.append(f"{'':<{width + 12}} e.g. {spec.example}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- checks


def _spec(name: str) -> FieldSpec:
    """The field called `name`, or an error listing the valid ones."""
    spec = FIELDS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name.lower(), list(FIELDS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        fail(f"unknown field {quote_name(name)}", f"{hint}fields are " + ", ".join(FIELDS))
    return spec


def resolve(name: str, qualifier: str | None) -> tuple[str, str | None]:
    """The AST's field and qualifier: label functional defaulted, `cod` -> external_id[cod]."""
    spec = _spec(name)
    if spec.kind == "external_id" and spec.qualifier is None:
        if qualifier is not None:
            fail(f"'{name}' takes no [...]", f"write {name} = ... or external_id[...] = ...")
        return "external_id", name
    if qualifier == "":
        fail(f"empty [] after '{name}'", f"write {name}[{spec.qualifier}] or leave [] out")
    if spec.qualifier is None and qualifier is not None:
        fail(f"'{name}' takes no [...]", "only band_gap[functional] and external_id[database] do")
    if spec.kind == "external_id" and qualifier is None:
        fail("external_id needs a database", "write e.g. external_id[cod] = 7033509")
    if spec.kind == "label" and qualifier is None:
        return name, DEFAULT_FUNCTIONAL
    if qualifier is not None:
        _check_text(f"{name}[{spec.qualifier}]", qualifier)
    return name, qualifier


_LIST_EXAMPLES: Mapping[str, str] = MappingProxyType(
    {"elements": "elements has all C, H", "flags": "flags excludes formula_sum_mismatch"}
)


def check_op(spec: FieldSpec, op: str) -> None:
    """Refuse an operator the field does not support, naming those it does."""
    if spec.type in LIST_TYPES:
        fail(
            f"operator {quote_name(str(op))} after {spec.name}",
            f"test {spec.name} with has all, has any, has only or excludes, "
            f"e.g. {_LIST_EXAMPLES[spec.name]}",
        )
    if op not in spec.ops:
        fail(
            f"operator {quote_name(str(op))} after {spec.name}",
            f"{spec.name} takes {spec.operators}",
        )


def check_list_field(spec: FieldSpec) -> None:
    """`has` and `excludes` apply to elements and flags; say what another field takes."""
    if spec.type not in LIST_TYPES:
        fail(f"'has' or 'excludes' after {spec.name}", f"{spec.name} takes {spec.operators}")


def check_value(spec: FieldSpec, value: Value, op: str = "=") -> Value:
    """The value in the field's type, or an error saying what the field takes."""
    if isinstance(value, bool):
        fail(f"{spec.name} takes {_takes(spec)}, not {value!r}")
    if spec.type == "id" and op not in EQUALITY_OPS:  # ids compared as numbers
        if isinstance(value, str) and value.isdecimal():
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            fail(f"{spec.name} {op} {show(value)}", f"'{op}' compares ids with a whole number")
        return _check_range(spec, value)
    if spec.type == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            fail(f"{spec.name} takes {_takes(spec)}, not {show(value)}")
        if spec.name == "spacegroup" and value not in SPACEGROUPS:
            fail(f"space group {show(value)} is outside 1..230")
        return _check_range(spec, value)
    if spec.type == "float":
        if not isinstance(value, int | float):
            fail(f"{spec.name} takes {_takes(spec)}, not {show(value)}")
        return float(value)
    if spec.type == "id" and isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        fail(f"{spec.name} takes {_takes(spec)}, not {show(value)}")
    _check_text(spec.name, value)
    if spec.name == "crystal_system" and value not in CRYSTAL_SYSTEMS:
        fail(f"unknown crystal system {show(value)}", "use one of " + ", ".join(CRYSTAL_SYSTEMS))
    if spec.name == "release":
        ref = ReleaseRef.parse(value)
        if not ref.name or ref.version is None:
            fail(f"release {show(value)}", 'write name:version, e.g. release = "omdb-gap1:1.1"')
    if not value:
        fail(f"{spec.name} takes a non-empty value")
    if spec.name == "spacegroup_symbol":
        return _spacegroup_symbol(value)
    return value


def _check_text(name: str, text: str) -> None:
    """Refuse what PostgreSQL text cannot hold (NUL) or UTF-8 cannot encode (lone surrogates)."""
    bad = _BAD_CHARS.search(text)
    if bad is not None:
        char = bad.group()
        what = "a NUL character" if char == "\x00" else "a lone surrogate"
        fail(
            f"{name} {show(text)} contains {what} (U+{ord(char):04X})",
            "text in a filter cannot hold it; remove it",
        )


def _check_range(spec: FieldSpec, value: int) -> int:
    """A whole number that fits the column it is compared with (the database would refuse it)."""
    # ids compared as numbers are cast to bigint; columns are smallint, integer or bigint
    kind = Structure.__table__.c[spec.column].type if spec.column else BigInteger()
    bits = 16 if isinstance(kind, SmallInteger) else 64 if isinstance(kind, BigInteger) else 32
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not low <= value <= high:
        fail(f"{spec.name} takes a whole number from {low} to {high}, not {show(value)}")
    return value


def _spacegroup_symbol(symbol: str) -> str:
    """The stored spelling of the space-group type a symbol names, in any spelling or setting."""
    number = space_group_number(symbol)
    if number is None:
        fail(
            f"spacegroup_symbol {show(symbol)} names no space group",
            f'write a Hermann-Mauguin or Hall symbol such as "P 21/c", "P 1 21/n 1" or '
            f'"-P 2ybc"; symbols are stored as spglib spells them, e.g. "{stored_symbol(14)}"',
        )
    return stored_symbol(number)


def check_list(subject: str, count: int) -> None:
    """Refuse a list longer than MAX_LIST (over 65,535 values the driver itself would fail)."""
    if count > MAX_LIST:
        fail(f"{subject} lists {count:,} values", f"the maximum is {MAX_LIST:,} per list")


def check_depth(node: Node) -> None:
    """Refuse and/or/not nested deeper than MAX_DEPTH, without recursing (trees may be deep)."""
    stack: list[tuple[Node, int]] = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, And | Or | Not):
            if depth >= MAX_DEPTH:
                fail(
                    f"the filter nests and/or/not more than {MAX_DEPTH} levels deep",
                    f"the maximum nesting depth is {MAX_DEPTH}; simplify the filter",
                )
            children = current.operands if isinstance(current, And | Or) else (current.operand,)
            stack.extend((child, depth + 1) for child in children)


def _takes(spec: FieldSpec) -> str:
    """What kind of value a field takes, for messages."""
    if spec.type == "int":
        return "a whole number"
    if spec.type == "float":
        return "a number"
    return f"text (e.g. {spec.example})"


def _check_symbol(symbol: str) -> str:
    """A known, correctly capitalised element symbol."""
    if not isinstance(symbol, str):
        fail(f"element symbols are text, not {show(symbol)}")
    _check_text("elements symbol", symbol)
    if symbol in ELEMENT_SYMBOLS:
        return symbol
    fixed = symbol[:1].upper() + symbol[1:].lower()
    hint = f"symbols are case-sensitive: did you mean '{fixed}'?"
    fail(f"unknown element symbol {quote_name(symbol)}", hint if fixed in ELEMENT_SYMBOLS else "")


def _check_flag(flag: str) -> str:
    """A known flag (FLAGS), or an error listing them: a misspelt one would select nothing."""
    if not isinstance(flag, str):
        fail(f"flags are text, not {show(flag)}")
    _check_text("flag", flag)
    if flag in FLAGS:
        return flag
    close = difflib.get_close_matches(flag.lower(), FLAGS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    fail(f"unknown flag {quote_name(flag)}", f"{hint}flags are " + ", ".join(FLAGS))


MODE_WORDS: Mapping[str, str] = MappingProxyType(
    {"all": "has all", "any": "has any", "only": "has only", "none": "excludes"}
)  # how each Mode reads in a filter, for messages
_CHECK_ITEM: Mapping[str, Callable[[str], str]] = MappingProxyType(
    {"elements": _check_symbol, "flags": _check_flag}
)


def check_item(field: str, value: str) -> str:
    """One value of an elements or flags list: a known element symbol or flag."""
    return _CHECK_ITEM[field](value)


def _check_list_test(node: ListTest) -> ListTest:
    """A hand-built elements or flags test: a known mode, 1..MAX_LIST known values."""
    if isinstance(node, ElementsTest):
        field, what, values = "elements", "symbols", node.symbols
    else:
        field, what, values = "flags", "flags", node.flags
    if node.mode not in MODE_WORDS or not values:
        fail(
            f"{field} test with mode {show(node.mode)} and {len(values):,} {what}",
            f"give a mode all|any|only|none and at least one of the {what}",
        )
    check_list(f"{field} {MODE_WORDS[node.mode]} (...)", len(values))
    return list_test(field, node.mode, tuple(check_item(field, v) for v in values))


def check(node: Node) -> Node:
    """Validate and normalise an AST built by hand, as the parser does for text.

    The depth first, since the rest recurses.
    """
    check_depth(node)
    return _check(node)


def _check(node: Node) -> Node:
    """`check` below the depth check."""
    if isinstance(node, And | Or):
        if not node.operands:
            fail(f"{type(node).__name__} needs at least one operand")
        return type(node)(tuple(_check(operand) for operand in node.operands))
    if isinstance(node, Not):
        return Not(_check(node.operand))
    if isinstance(node, ElementsTest | FlagsTest):
        return _check_list_test(node)
    if isinstance(node, FieldComparison):
        return _check_field_comparison(node)
    field, qualifier = resolve(node.field, node.qualifier)
    spec = FIELDS[node.field]
    if isinstance(node, Membership):
        check_op(spec, "=")
        if not node.values:
            fail(f"{node.field} in () needs at least one value")
        check_list(f"{node.field} in (...)", len(node.values))
        return Membership(field, tuple(check_value(spec, v) for v in node.values), qualifier)
    check_op(spec, node.op)
    return Comparison(field, node.op, check_value(spec, node.value, node.op), qualifier)


def _numeric_operand(name: str, qualifier: str | None) -> tuple[str, str | None]:
    """One side of a field-to-field comparison: a number column or a label, resolved."""
    spec = _spec(name)
    if spec.kind not in ("column", "label") or spec.type not in ("int", "float"):
        numeric = ", ".join(
            s.name
            for s in FIELDS.values()
            if s.kind in ("column", "label") and s.type in ("int", "float")
        )
        fail(f"{spec.name} compared with another field", f"compare two of {numeric}")
    return resolve(name, qualifier)  # fmt: skip


def _check_field_comparison(node: FieldComparison) -> FieldComparison:
    """Both fields numeric (columns or labels), the operator one of = != < <= > >=."""
    field, qualifier = _numeric_operand(node.field, node.qualifier)
    other, other_qualifier = _numeric_operand(node.other, node.other_qualifier)
    if node.op not in ORDERED_OPS:
        fail(f"operator {quote_name(str(node.op))} between two fields", "use = != < <= > >=")
    return FieldComparison(field, node.op, other, qualifier, other_qualifier)
