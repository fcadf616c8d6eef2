"""The filter language that selects structures (`--where`, and later the GraphQL API).

Three parts, kept apart so another backend (or another front end) can reuse the others:

1. `GRAMMAR`, a lark LALR grammar, turns text into a parse tree;
2. `_Builder`, a lark Transformer, turns the tree into a small typed AST of frozen dataclasses
   (`Comparison`, `Membership`, `ElementsTest`, `FlagsTest`, `And`, `Or`, `Not`), checking
   fields, operators and values on the way;
3. `to_sql` turns the AST into one SQLAlchemy boolean expression over `structures`:
   ``select(Structure.id).where(where("nsites <= 100"))``.

Examples::

    elements has all C, H and not elements has any Pb, Cd and nsites <= 100
    band_gap > 1.5 and band_gap <= 3 and spacegroup = 14
    (crystal_system = "monoclinic" or spacegroup in (2, 14, 19)) and nelements >= 3
    band_gap[HSE06] < 2 and release = "omdb-gap1:1.1" and cod = 7033509
    flags has any formula_sum_mismatch, deuterated and flags excludes symops_contradict_symbol

Semantics, where they are not obvious:

- Keywords (and, or, not, in, has, all, any, only, excludes) are case-insensitive and
  reserved: quote a value that is one of them (``In``, indium, needs no quotes in an element
  list). Field names are case-insensitive too; element symbols, flags, functionals, formulas,
  ids and the other values are not (``Cl``, not ``cl``; ``crystal_system = cubic``).
- ``not`` binds tighter than ``and``, which binds tighter than ``or``.
- Values are numbers, quoted strings ('...' or "..."; no escapes) or bare words made of
  letters, digits and ``_ - . : / +`` starting with a letter or ``_``.
- A missing value (a structure without a space group) makes a comparison false, and ``not``
  of it true: the logic is two-valued, unlike SQL's NULL.
- ``band_gap`` means the band gap from a calculation with the default functional
  (`DEFAULT_FUNCTIONAL`); ``band_gap[HSE06]`` names another. A comparison holds when some
  such label satisfies it; comparisons of the same label field joined by ``and`` (at any
  depth of ``and``, not across ``or`` or ``not``) must hold for one and the same label, so
  ``band_gap > 1 and band_gap < 2`` never pairs one calculation's 0.5 with another's 3.
- ``flags`` are the quality notes ingestion stores (`FLAGS`, explained in
  `crystaldb.core.validate`); they take the operators of ``elements``: ``flags has any
  deuterated`` (flagged so), ``flags excludes formula_sum_mismatch`` (not), ``flags has only
  deuterated`` (no other flag: unflagged structures too). An unknown flag is an error that
  lists the known ones.
- ``source``, ``release`` and external ids (``cod = ...``) are sets per structure: ``=``
  and ``in`` mean "has one of them", ``!=`` and ``not in`` mean "has none of them". Ids are
  text; ``<``, ``<=``, ``>``, ``>=`` (``cod >= 4000000``) compare the ids that are whole
  numbers as numbers, and never select by an id with other characters. A ``release`` is
  ``"name:version"`` read as everywhere else (`ReleaseRef`: split at the first ``:``, since
  names hold none), so ``release = "beta:x:1"`` is version ``x:1`` of release ``beta``.
- ``spacegroup_symbol`` takes a space-group symbol as people write it: with or without
  spaces, ``21`` or ``2_1`` or ``2(1)``, short or full (``P 1 21/c 1``), in any tabulated
  setting (``P 21/n``, ``P 1 1 21/b``, origin ``:2``, axes ``:R``) or as a Hall symbol
  (``-P 2ybc``). It is read through spglib's and gemmi's tables (`crystaldb.core.spacegroups`)
  and stands for its space-group *type*: ingest stores every structure in the standard setting
  of its type, spelled as spglib spells it (``P2_1/c``), so ``spacegroup_symbol = "P 21/n"``
  selects exactly what ``spacegroup = 14`` selects; no filter selects by the setting of the
  original file. The AST holds the stored spelling, and the SQL tests the space group number.
- Every test can use an index: B-tree indexes on the columns, the GIN indexes on ``elements``
  and ``flags`` (``@>``, ``&&``, ``<@``), ``ix_labels_property_value`` for labels, the primary
  key of ``external_ids`` and the unique keys of ``releases`` and ``release_members``. Negations
  (``excludes``, ``not``, ``!=``) can only filter rows found otherwise. A list (``in``,
  ``has``) is one array parameter (``= ANY(...)``, ``@>``), so a statement's parameter count
  does not grow with it.

Limits, so that no input reaches the database driver or Python's recursion limit:

- the text of a filter: at most `MAX_LENGTH` characters;
- every list (``in (...)``, ``has``/``excludes`` symbols or flags): at most `MAX_LIST` values;
- nesting: at most `MAX_DEPTH` levels of and/or/not in the tree (``not (a or b)`` is 2 deep)
  and, in text, of parentheses open at once;
- text values (formulas, symbols, ids, names, qualifiers) cannot hold NUL (U+0000), which
  PostgreSQL text refuses, nor lone surrogates, which UTF-8 cannot encode; whole numbers must
  fit the column they are compared with (``nelements``: 16 bits, ``nsites``: 32, ids: 64).

Errors echo user text cut at 60 characters (with its full length) and with unprintable
characters escaped, so a message is always one short line.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, Literal, NoReturn, TypeAlias, TypeVar, cast

from ase.data import chemical_symbols
from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    SmallInteger,
    Text,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    not_,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.records import CRYSTAL_SYSTEMS, FLAGS
from crystaldb.core.spacegroups import number_of_stored, space_group_number, stored_symbol
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.releases import Release, ReleaseMember, ReleaseRef
from crystaldb.schema.structures import ExternalId, Structure

DEFAULT_FUNCTIONAL = "PBE"  # what a label field without [functional] refers to
DEFAULT_ORIGIN = "--where"  # names the filter's origin at the start of every error message
ELEMENT_SYMBOLS = frozenset(chemical_symbols[1:119])  # H .. Og, without ase's dummy "X"
SPACEGROUPS = range(1, 231)
MAX_LENGTH = 100_000  # characters in the text of a filter
MAX_LIST = 1_000  # values in one list: in (...), has/excludes symbols or flags
MAX_DEPTH = 32  # levels of and/or/not in a tree, and of parentheses open at once in text
_ECHO_CHARS = 60  # user text longer than this is echoed cut, with its length
_BAD_CHARS = re.compile(r"[\x00\ud800-\udfff]")  # NUL (PostgreSQL text), lone surrogates (UTF-8)

_T = TypeVar("_T")

GRAMMAR = r"""
?start: disjunction

?disjunction: conjunction (_OR conjunction)*
?conjunction: negation (_AND negation)*
?negation: _NOT negation                 -> negation
         | atom
?atom: "(" disjunction ")"
     | field COMPARATOR value            -> comparison
     | field IN values                   -> membership
     | field _NOT IN values              -> non_membership
     | field _HAS [quantifier] symbols   -> has
     | field _EXCLUDES symbols           -> excludes

field: WORD ["[" qualifier "]"]
?qualifier: WORD | STRING
values: "(" value ("," value)* ")"
value: NUMBER | STRING | WORD
quantifier: ALL | ANY | ONLY
?symbols: symbol_list | "(" symbol_list ")"
symbol_list: symbol ("," symbol)*
symbol: WORD | STRING | IN

COMPARATOR: "<=" | ">=" | "!=" | "==" | "=" | "<" | ">"
_AND: "and"i
_OR: "or"i
_NOT: "not"i
_HAS: "has"i
_EXCLUDES: "excludes"i
IN: "in"i
ALL: "all"i
ANY: "any"i
ONLY: "only"i
WORD: /[a-z_][a-z0-9_+\-.:\/]*/i
NUMBER: /[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?/i
STRING: /"[^"\n]*"|'[^'\n]*'/

%import common.WS
%ignore WS
"""

# --------------------------------------------------------------------------- the AST

Value: TypeAlias = int | float | str
Op = Literal["=", "!=", "<", "<=", ">", ">="]
Mode = Literal["all", "any", "only", "none"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """`field[qualifier] op value`; the qualifier is a label's functional or an id's database."""

    field: str
    op: Op
    value: Value
    qualifier: str | None = None


@dataclass(frozen=True, slots=True)
class Membership:
    """`field[qualifier] in (values...)`."""

    field: str
    values: tuple[Value, ...]
    qualifier: str | None = None


@dataclass(frozen=True, slots=True)
class ElementsTest:
    """`elements has all|any|only ...` or `elements excludes ...` (mode "none")."""

    mode: Mode
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FlagsTest:
    """`flags has all|any|only ...` or `flags excludes ...` (mode "none"), over FLAGS."""

    mode: Mode
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class And:
    """All operands hold (nested ands are flattened into one)."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one operand holds (nested ors are flattened into one)."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The operand does not hold."""

    operand: Node


Node: TypeAlias = Comparison | Membership | ElementsTest | FlagsTest | And | Or | Not
ListTest: TypeAlias = ElementsTest | FlagsTest  # the tests of has/excludes

# --------------------------------------------------------------------------- the fields

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


# --------------------------------------------------------------------------- errors


class FilterError(CrystaldbError):
    """A filter that does not parse or means nothing; the message says where and what to do."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


class _Invalid(Exception):
    """A semantic error: what is wrong, then what to do; the column goes between them."""

    def __init__(self, subject: str, detail: str = "", column: int | None = None) -> None:
        super().__init__(subject)
        self.subject = subject
        self.detail = detail
        self.column = column

    def text(self, origin: str) -> str:
        """The one-line message: `origin: subject at column N: detail`."""
        where = f" {_where(None, self.column)}" if self.column else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{origin}: {self.subject}{where}{detail}"


def _fail(subject: str, detail: str = "") -> NoReturn:
    """Raise a semantic error; `_at` attaches the column, `parse` the origin."""
    raise _Invalid(subject, detail)


# --------------------------------------------------------------------------- checks


def _spec(name: str) -> FieldSpec:
    """The field called `name`, or an error listing the valid ones."""
    spec = FIELDS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name.lower(), list(FIELDS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        _fail(f"unknown field {_name(name)}", f"{hint}fields are " + ", ".join(FIELDS))
    return spec


def _resolve(name: str, qualifier: str | None) -> tuple[str, str | None]:
    """The AST's field and qualifier: label functional defaulted, `cod` -> external_id[cod]."""
    spec = _spec(name)
    if spec.kind == "external_id" and spec.qualifier is None:
        if qualifier is not None:
            _fail(f"'{name}' takes no [...]", f"write {name} = ... or external_id[...] = ...")
        return "external_id", name
    if qualifier == "":
        _fail(f"empty [] after '{name}'", f"write {name}[{spec.qualifier}] or leave [] out")
    if spec.qualifier is None and qualifier is not None:
        _fail(f"'{name}' takes no [...]", "only band_gap[functional] and external_id[database] do")
    if spec.kind == "external_id" and qualifier is None:
        _fail("external_id needs a database", "write e.g. external_id[cod] = 7033509")
    if spec.kind == "label" and qualifier is None:
        return name, DEFAULT_FUNCTIONAL
    if qualifier is not None:
        _check_text(f"{name}[{spec.qualifier}]", qualifier)
    return name, qualifier


_LIST_EXAMPLES: Mapping[str, str] = MappingProxyType(
    {"elements": "elements has all C, H", "flags": "flags excludes formula_sum_mismatch"}
)


def _check_op(spec: FieldSpec, op: str) -> None:
    """Refuse an operator the field does not support, naming those it does."""
    if spec.type in LIST_TYPES:
        _fail(
            f"operator {_name(str(op))} after {spec.name}",
            f"test {spec.name} with has all, has any, has only or excludes, "
            f"e.g. {_LIST_EXAMPLES[spec.name]}",
        )
    if op not in spec.ops:
        _fail(f"operator {_name(str(op))} after {spec.name}", f"{spec.name} takes {spec.operators}")


def _check_value(spec: FieldSpec, value: Value, op: str = "=") -> Value:
    """The value in the field's type, or an error saying what the field takes."""
    if isinstance(value, bool):
        _fail(f"{spec.name} takes {_takes(spec)}, not {value!r}")
    if spec.type == "id" and op not in EQUALITY_OPS:  # ids compared as numbers
        if isinstance(value, str) and value.isdecimal():
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            _fail(f"{spec.name} {op} {_show(value)}", f"'{op}' compares ids with a whole number")
        return _check_range(spec, value)
    if spec.type == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            _fail(f"{spec.name} takes {_takes(spec)}, not {_show(value)}")
        if spec.name == "spacegroup" and value not in SPACEGROUPS:
            _fail(f"space group {_show(value)} is outside 1..230")
        return _check_range(spec, value)
    if spec.type == "float":
        if not isinstance(value, int | float):
            _fail(f"{spec.name} takes {_takes(spec)}, not {_show(value)}")
        return float(value)
    if spec.type == "id" and isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        _fail(f"{spec.name} takes {_takes(spec)}, not {_show(value)}")
    _check_text(spec.name, value)
    if spec.name == "crystal_system" and value not in CRYSTAL_SYSTEMS:
        _fail(f"unknown crystal system {_show(value)}", "use one of " + ", ".join(CRYSTAL_SYSTEMS))
    if spec.name == "release":
        ref = ReleaseRef.parse(value)
        if not ref.name or ref.version is None:
            _fail(f"release {_show(value)}", 'write name:version, e.g. release = "omdb-gap1:1.1"')
    if not value:
        _fail(f"{spec.name} takes a non-empty value")
    if spec.name == "spacegroup_symbol":
        return _spacegroup_symbol(value)
    return value


def _check_text(name: str, text: str) -> None:
    """Refuse what PostgreSQL text cannot hold (NUL) or UTF-8 cannot encode (lone surrogates)."""
    bad = _BAD_CHARS.search(text)
    if bad is not None:
        char = bad.group()
        what = "a NUL character" if char == "\x00" else "a lone surrogate"
        _fail(
            f"{name} {_show(text)} contains {what} (U+{ord(char):04X})",
            "text in a filter cannot hold it; remove it",
        )


def _check_range(spec: FieldSpec, value: int) -> int:
    """A whole number that fits the column it is compared with (the database would refuse it)."""
    # ids compared as numbers are cast to bigint; columns are smallint, integer or bigint
    kind = Structure.__table__.c[spec.column].type if spec.column else BigInteger()
    bits = 16 if isinstance(kind, SmallInteger) else 64 if isinstance(kind, BigInteger) else 32
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not low <= value <= high:
        _fail(f"{spec.name} takes a whole number from {low} to {high}, not {_show(value)}")
    return value


def _spacegroup_symbol(symbol: str) -> str:
    """The stored spelling of the space-group type a symbol names, in any spelling or setting."""
    number = space_group_number(symbol)
    if number is None:
        _fail(
            f"spacegroup_symbol {_show(symbol)} names no space group",
            f'write a Hermann-Mauguin or Hall symbol such as "P 21/c", "P 1 21/n 1" or '
            f'"-P 2ybc"; symbols are stored as spglib spells them, e.g. "{stored_symbol(14)}"',
        )
    return stored_symbol(number)


def _check_list(subject: str, count: int) -> None:
    """Refuse a list longer than MAX_LIST (over 65,535 values the driver itself would fail)."""
    if count > MAX_LIST:
        _fail(f"{subject} lists {count:,} values", f"the maximum is {MAX_LIST:,} per list")


def _check_depth(node: Node) -> None:
    """Refuse and/or/not nested deeper than MAX_DEPTH, without recursing (trees may be deep)."""
    stack: list[tuple[Node, int]] = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, And | Or | Not):
            if depth >= MAX_DEPTH:
                _fail(
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


def _show(value: object) -> str:
    """A value as the user would have written it, cut short and escaped for a one-line message."""
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int) and value.bit_length() > 256:
        return f"a whole number of {value.bit_length():,} bits"
    return _quote(repr(value), "")


def _quote(text: str, mark: str = '"') -> str:
    """User text in quotes: unprintables escaped, cut at _ECHO_CHARS with its full length."""
    shown = ""
    for char in text:
        piece = char if char.isprintable() else ascii(char)[1:-1]  # \x00, \ud800
        if len(shown) + len(piece) > _ECHO_CHARS:
            return f"{mark}{shown}...{mark} ({len(text):,} characters)"
        shown += piece
    return f"{mark}{shown}{mark}"


def _name(text: str) -> str:
    """User text as messages name fields, operators, symbols and tokens: in single quotes."""
    return _quote(text, "'")


def _check_symbol(symbol: str) -> str:
    """A known, correctly capitalised element symbol."""
    if not isinstance(symbol, str):
        _fail(f"element symbols are text, not {_show(symbol)}")
    _check_text("elements symbol", symbol)
    if symbol in ELEMENT_SYMBOLS:
        return symbol
    fixed = symbol[:1].upper() + symbol[1:].lower()
    hint = f"symbols are case-sensitive: did you mean '{fixed}'?"
    _fail(f"unknown element symbol {_name(symbol)}", hint if fixed in ELEMENT_SYMBOLS else "")


def _check_flag(flag: str) -> str:
    """A known flag (FLAGS), or an error listing them: a misspelt one would select nothing."""
    if not isinstance(flag, str):
        _fail(f"flags are text, not {_show(flag)}")
    _check_text("flag", flag)
    if flag in FLAGS:
        return flag
    close = difflib.get_close_matches(flag.lower(), FLAGS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    _fail(f"unknown flag {_name(flag)}", f"{hint}flags are " + ", ".join(FLAGS))


_MODE_WORDS: Mapping[str, str] = MappingProxyType(
    {"all": "has all", "any": "has any", "only": "has only", "none": "excludes"}
)
_CHECK_ITEM: Mapping[str, Callable[[str], str]] = MappingProxyType(
    {"elements": _check_symbol, "flags": _check_flag}
)


def _list_test(field: str, mode: Mode, values: tuple[str, ...]) -> ListTest:
    """The AST node of `field has/excludes values`, values as given."""
    return ElementsTest(mode, values) if field == "elements" else FlagsTest(mode, values)


def _check_list_test(node: ListTest) -> ListTest:
    """A hand-built elements or flags test: a known mode, 1..MAX_LIST known values."""
    if isinstance(node, ElementsTest):
        field, what, values = "elements", "symbols", node.symbols
    else:
        field, what, values = "flags", "flags", node.flags
    if node.mode not in _MODE_WORDS or not values:
        _fail(
            f"{field} test with mode {_show(node.mode)} and {len(values):,} {what}",
            f"give a mode all|any|only|none and at least one of the {what}",
        )
    _check_list(f"{field} {_MODE_WORDS[node.mode]} (...)", len(values))
    return _list_test(field, node.mode, tuple(_CHECK_ITEM[field](v) for v in values))


def _check(node: Node) -> Node:
    """Validate and normalise an AST built by hand, as the parser does for text."""
    if isinstance(node, And | Or):
        if not node.operands:
            _fail(f"{type(node).__name__} needs at least one operand")
        return type(node)(tuple(_check(operand) for operand in node.operands))
    if isinstance(node, Not):
        return Not(_check(node.operand))
    if isinstance(node, ElementsTest | FlagsTest):
        return _check_list_test(node)
    field, qualifier = _resolve(node.field, node.qualifier)
    spec = FIELDS[node.field]
    if isinstance(node, Membership):
        _check_op(spec, "=")
        if not node.values:
            _fail(f"{node.field} in () needs at least one value")
        _check_list(f"{node.field} in (...)", len(node.values))
        return Membership(field, tuple(_check_value(spec, v) for v in node.values), qualifier)
    _check_op(spec, node.op)
    return Comparison(field, node.op, _check_value(spec, node.value, node.op), qualifier)


# --------------------------------------------------------------------------- text -> AST


@dataclass(frozen=True, slots=True)
class _FieldRef:
    """A field as written (resolved to the AST's field and qualifier), with its column."""

    spec: FieldSpec
    field: str
    qualifier: str | None
    column: int


@dataclass(frozen=True, slots=True)
class _Literal:
    """A value as written, with its column."""

    value: Value
    column: int


def _unquote(token: Token) -> str:
    """The text of a WORD, STRING or keyword token, without quotes."""
    text = str(token)
    return text[1:-1] if token.type == "STRING" else text


def _at(column: int | None, build: Callable[[], _T]) -> _T:
    """Run a check, attributing its error to `column`."""
    try:
        return build()
    except _Invalid as error:
        raise _Invalid(error.subject, error.detail, column) from None


@v_args(inline=True)
class _Builder(Transformer_NonRecursive[Token, Node]):
    """Parse tree -> AST, checking each field, operator and value where it was written.

    Non-recursive, so that `not not ... x` thousands deep reaches the depth check, not
    Python's recursion limit.
    """

    def field(self, name: Token, qualifier: Token | None) -> _FieldRef:
        """A known field, with its qualifier resolved (`cod` becomes external_id[cod])."""
        text = str(name).lower()
        written = None if qualifier is None else _unquote(qualifier)
        field, resolved = _at(name.column, lambda: _resolve(text, written))
        return _FieldRef(FIELDS[text], field, resolved, name.column or 0)

    def value(self, token: Token) -> _Literal:
        """A number (int when written without a point or exponent), a string or a bare word."""
        value: Value = _unquote(token)
        if token.type == "NUMBER":
            value = _at(token.column, lambda: _number(str(token)))
        return _Literal(value, token.column or 0)

    def values(self, *literals: _Literal) -> tuple[_Literal, ...]:
        """The list after `in`."""
        return literals

    def comparison(self, ref: _FieldRef, op: Token, literal: _Literal) -> Comparison:
        """`field op value`; `==` is `=`."""
        symbol = cast(Op, "=" if str(op) == "==" else str(op))
        _at(op.column, lambda: _check_op(ref.spec, symbol))
        return Comparison(ref.field, symbol, _value_at(ref.spec, literal, symbol), ref.qualifier)

    def membership(self, ref: _FieldRef, keyword: Token, literals: tuple[_Literal, ...]) -> Node:
        """`field in (v, ...)`."""
        _at(keyword.column, lambda: _check_op(ref.spec, "="))
        _at(keyword.column, lambda: _check_list(f"{ref.spec.name} in (...)", len(literals)))
        values = tuple(_value_at(ref.spec, literal) for literal in literals)
        return Membership(ref.field, values, ref.qualifier)

    def non_membership(self, ref: _FieldRef, keyword: Token, literals: tuple[_Literal, ...]) -> Not:
        """`field not in (v, ...)` is `not (field in (...))`."""
        return Not(self.membership(ref, keyword, literals))

    def quantifier(self, token: Token) -> Mode:
        """all, any or only, whatever the case."""
        return cast(Mode, str(token).lower())

    def symbol(self, token: Token) -> _Literal:
        """One element symbol or flag, checked once its field is known (has, excludes)."""
        return _Literal(_unquote(token), token.column or 0)

    def symbol_list(self, *symbols: _Literal) -> tuple[_Literal, ...]:
        """The symbols or flags after has/excludes."""
        return symbols

    def has(self, ref: _FieldRef, mode: Mode | None, symbols: tuple[_Literal, ...]) -> ListTest:
        """`elements|flags has [all|any|only] ...`; no quantifier means all."""
        return _list_test_at(ref, mode or "all", symbols)

    def excludes(self, ref: _FieldRef, symbols: tuple[_Literal, ...]) -> ListTest:
        """`elements|flags excludes ...`: none of them."""
        return _list_test_at(ref, "none", symbols)

    def negation(self, operand: Node) -> Not:
        """`not x`."""
        return Not(operand)

    def conjunction(self, *operands: Node) -> And:
        """`a and b and ...`, flattened."""
        return And(_flatten(And, operands))

    def disjunction(self, *operands: Node) -> Or:
        """`a or b or ...`, flattened."""
        return Or(_flatten(Or, operands))


def _value_at(spec: FieldSpec, literal: _Literal, op: str = "=") -> Value:
    """The checked value, its error attributed to where it was written."""
    return _at(literal.column, lambda: _check_value(spec, literal.value, op))


def _number(text: str) -> Value:
    """int when written without a point or exponent, else float; too many digits is an error."""
    try:
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    except ValueError:  # Python converts at most 4,300 digits to an int
        _fail(f"the number {_quote(text, '')} has too many digits")


def _list_test_at(ref: _FieldRef, mode: Mode, literals: tuple[_Literal, ...]) -> ListTest:
    """An elements or flags test, each error attributed to where it was written."""
    name = ref.spec.name
    _at(ref.column, lambda: _list_field(ref.spec))
    _at(ref.column, lambda: _check_list(f"{name} {_MODE_WORDS[mode]} (...)", len(literals)))
    check = _CHECK_ITEM[name]
    values = tuple(_at(x.column, partial(check, str(x.value))) for x in literals)
    return _list_test(name, mode, values)


def _list_field(spec: FieldSpec) -> None:
    """`has` and `excludes` apply to elements and flags; say what another field takes."""
    if spec.type not in LIST_TYPES:
        _fail(f"'has' or 'excludes' after {spec.name}", f"{spec.name} takes {spec.operators}")


def _flatten(kind: type[And] | type[Or], operands: Iterable[Node]) -> tuple[Node, ...]:
    """Merge nested ands into one and (ors likewise): same meaning, one level."""
    flat: list[Node] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return tuple(flat)


_PARSER = Lark(GRAMMAR, parser="lalr", lexer="basic", maybe_placeholders=True)

# How an expected terminal reads in an error message, in the order messages list them.
_EXPECTED = {
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "RSQB": "']'",
    "ALL": "'all'",
    "ANY": "'any'",
    "ONLY": "'only'",
    "_NOT": "'not'",
    "_AND": "'and'",
    "_OR": "'or'",
    "$END": "the end of the filter",
}
_OPERATORS = "an operator (=, !=, <, <=, >, >=, in, not in, has, excludes)"


def _expected(names: Iterable[str]) -> str:
    """What the parser wanted, in words."""
    left = set(names)
    phrases = []
    if "NUMBER" in left:
        phrases.append("a value")
        left -= {"NUMBER", "STRING", "WORD"}
    elif {"IN", "WORD"} <= left:
        phrases.append("an element symbol or flag")
        left -= {"STRING", "WORD", "IN"}
    elif {"STRING", "WORD"} <= left:
        phrases.append("a functional or database name")
        left -= {"STRING", "WORD"}
    elif "WORD" in left:
        phrases.append("a field name")
        left -= {"WORD"}
    if "COMPARATOR" in left:
        phrases.append(_OPERATORS)
        left -= {"COMPARATOR", "IN", "_NOT", "_HAS", "_EXCLUDES", "LSQB"}
    phrases += [text for name, text in _EXPECTED.items() if name in left]
    phrases += sorted(name.strip("_").lower() for name in left - set(_EXPECTED))
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _where(line: int | None, column: int | None) -> str:
    """'at column N' (with the line when the filter spans several)."""
    if column is None:
        return "at the end of the filter"
    return f"at line {line}, column {column}" if line and line > 1 else f"at column {column}"


def _acceptable(error: UnexpectedToken) -> set[str]:
    """The terminals the parser could take at the error (LALR lookaheads can over-state it)."""
    try:
        return set(error.interactive_parser.accepts())
    except Exception:  # the lookahead set is a fine fallback for a message
        return set(error.expected)


def _syntax_error(text: str, error: UnexpectedInput, origin: str) -> FilterError:
    """One line naming the place, what was found and what was expected there."""
    if isinstance(error, UnexpectedToken):
        token = error.token
        expected = _expected(_acceptable(error))
        if token.type == "$END":
            if not text.strip():
                return FilterError(
                    f"{origin}: the filter is empty: expected a test such as nsites <= 100"
                )
            return FilterError(f"{origin}: the filter ends too early: expected {expected}")
        column = token.column or 0
        found = f"unexpected {_name(str(token))} {_where(token.line, column)}"
        hint = ""
        start = token.start_pos or 0
        if token.type == "WORD" and start > 0 and text[start - 1].isdigit():
            hint = '; quote a value that starts with a digit, e.g. "05000N2"'
        return FilterError(f"{origin}: {found}: expected {expected}{hint}", column)
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        char = text[position : position + 1]
        where = _where(error.line, error.column)
        if char in "\"'":
            return FilterError(
                f"{origin}: unclosed quote {where}: close it with {char}", error.column
            )
        return FilterError(
            f"{origin}: unexpected character {_name(char)} {where}: quote values that contain it",
            error.column,
        )
    return FilterError(f"{origin}: cannot read the filter {_where(error.line, error.column)}")


def parse(text: str, origin: str = DEFAULT_ORIGIN) -> Node:
    """The AST of a filter; FilterError (one line, prefixed by `origin`) if it is wrong."""
    if len(text) > MAX_LENGTH:
        raise FilterError(
            f"{origin}: the filter is {len(text):,} characters long: the maximum is {MAX_LENGTH:,}"
        )
    try:
        tree = _PARSER.parse(text)  # LALR: an explicit stack, however deep the nesting
    except UnexpectedInput as error:
        raise _syntax_error(text, error, origin) from None
    _check_parentheses(text, origin)
    try:
        node = _Builder().transform(tree)
        _check_depth(node)
    except VisitError as error:
        invalid = error.orig_exc
        if not isinstance(invalid, _Invalid):
            raise
        raise FilterError(invalid.text(origin), invalid.column) from None
    except _Invalid as invalid:
        raise FilterError(invalid.text(origin), invalid.column) from None
    return node


def _check_parentheses(text: str, origin: str) -> None:
    """Refuse parentheses nested deeper than MAX_DEPTH; the lexer knows which are quoted."""
    depth = 0
    for token in _PARSER.lex(text):
        depth += {"LPAR": 1, "RPAR": -1}.get(token.type, 0)
        if depth > MAX_DEPTH:
            where = _where(token.line, token.column)
            raise FilterError(
                f"{origin}: parentheses nested more than {MAX_DEPTH} deep {where}: "
                f"the maximum nesting depth is {MAX_DEPTH}; simplify the filter",
                token.column,
            )


# --------------------------------------------------------------------------- AST -> SQL

_COMPARE: Mapping[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ELEMENTS = type_coerce(Structure.elements, ARRAY(Text))
_FLAGS = type_coerce(Structure.flags, ARRAY(Text))


def to_sql(node: Node) -> ColumnElement[bool]:
    """A boolean over `structures` rows: use as select(Structure.id).where(to_sql(node))."""
    try:
        _check_depth(node)  # first: _check and _sql recurse
        return _sql(_check(node))
    except _Invalid as error:
        raise FilterError(error.text("invalid filter")) from None


def where(text: str, origin: str = DEFAULT_ORIGIN) -> ColumnElement[bool]:
    """parse() then to_sql(): the WHERE clause selecting the structures a filter describes."""
    return _sql(parse(text, origin))


def _sql(node: Node) -> ColumnElement[bool]:
    """Compile a checked AST."""
    if isinstance(node, And):
        return _and_sql(node.operands)
    if isinstance(node, Or):
        return or_(*(_sql(operand) for operand in node.operands))
    if isinstance(node, Not):
        return not_(_sql(node.operand))
    if isinstance(node, ElementsTest):
        return _array_sql(_ELEMENTS, node.mode, node.symbols)
    if isinstance(node, FlagsTest):
        return _array_sql(_FLAGS, node.mode, node.flags)
    spec = FIELDS[node.field]
    if spec.kind == "label":
        return _label_exists(node.field, node.qualifier or DEFAULT_FUNCTIONAL, [node])
    if spec.kind == "column":
        return _column_sql(spec, node)
    return _set_sql(spec, node)


def _and_sql(operands: Sequence[Node]) -> ColumnElement[bool]:
    """AND, with the label tests on one property and functional folded into one EXISTS."""
    parts: list[ColumnElement[bool]] = []
    labels: dict[tuple[str, str], list[Comparison | Membership]] = {}
    for operand in operands:
        if isinstance(operand, Comparison | Membership) and FIELDS[operand.field].kind == "label":
            key = (operand.field, operand.qualifier or DEFAULT_FUNCTIONAL)
            labels.setdefault(key, []).append(operand)
        else:
            parts.append(_sql(operand))
    parts += [
        _label_exists(prop, functional, tests) for (prop, functional), tests in labels.items()
    ]
    return and_(*parts) if parts else true()


def _array_sql(column: Any, mode: Mode, values: Sequence[str]) -> ColumnElement[bool]:
    """Array operators the GIN indexes on elements and flags serve: @>, &&, <@."""
    wanted = list(values)
    if mode == "all":
        return cast(ColumnElement[bool], column.contains(wanted))
    if mode == "any":
        return cast(ColumnElement[bool], column.overlap(wanted))
    if mode == "only":
        return cast(ColumnElement[bool], column.contained_by(wanted))
    return not_(column.overlap(wanted))


def _value_test(target: Any, node: Comparison | Membership) -> ColumnElement[bool]:
    """`target op value` or `target = ANY(values)`."""
    if isinstance(node, Membership):
        return _any(target, node.values)
    return _COMPARE[node.op](target, node.value)


def _any(target: Any, values: Iterable[Value]) -> ColumnElement[bool]:
    """`target = ANY(array)`: one parameter however long the list, served by target's index."""
    array = bindparam(None, list(dict.fromkeys(values)), type_=ARRAY(target.type))
    return cast(ColumnElement[bool], target == any_(array))


def _one_of(target: Any, values: Sequence[Value]) -> ColumnElement[bool]:
    """`target = value` for one value, `target = ANY(array)` for more."""
    return (
        cast(ColumnElement[bool], target == values[0]) if len(values) == 1 else _any(target, values)
    )


def _by_number(node: Comparison | Membership) -> Comparison | Membership:
    """The symbol test as a number test: one spelling per number, and the number has an index."""
    if isinstance(node, Membership):
        numbers = tuple(number_of_stored(str(value)) for value in node.values)
        return Membership("spacegroup", numbers)
    return Comparison("spacegroup", node.op, number_of_stored(str(node.value)))


def _column_sql(spec: FieldSpec, node: Comparison | Membership) -> ColumnElement[bool]:
    """A test on a structures column; a NULL makes it false (not unknown), so NOT is total."""
    if spec.name == "spacegroup_symbol":
        spec, node = FIELDS["spacegroup"], _by_number(node)
    name = spec.column or spec.name
    column = getattr(Structure, name)
    test = _value_test(column, node)
    if Structure.__table__.c[name].nullable:
        return and_(column.is_not(None), test)
    return test


def _label_exists(
    prop: str, functional: str, tests: Sequence[Comparison | Membership]
) -> ColumnElement[bool]:
    """Some label of this property from this functional satisfies every test."""
    return (
        exists()
        .where(
            Label.structure_id == Structure.id,
            Label.property == prop,
            Calculation.id == Label.calculation_id,
            Calculation.functional == functional,
            *(_value_test(Label.value, test) for test in tests),
        )
        .correlate(Structure)
    )


def _set_sql(spec: FieldSpec, node: Comparison | Membership) -> ColumnElement[bool]:
    """external ids, sources and releases: "has one" for = and in, "has none" for !=."""
    values = list(node.values) if isinstance(node, Membership) else [node.value]
    if spec.kind == "release":
        found = exists().where(
            ReleaseMember.structure_id == Structure.id,
            Release.id == ReleaseMember.release_id,
            _release_in([str(value) for value in values]),
        )
    elif spec.kind == "source":
        found = exists().where(
            ExternalId.structure_id == Structure.id, _one_of(ExternalId.database, values)
        )
    elif isinstance(node, Comparison) and node.op not in EQUALITY_OPS:
        return _numeric_id_sql(node)
    else:
        found = exists().where(
            ExternalId.structure_id == Structure.id,
            ExternalId.database == node.qualifier,
            _one_of(ExternalId.external_id, values),
        )
    found = found.correlate(Structure)
    return not_(found) if isinstance(node, Comparison) and node.op == "!=" else found


def _release_in(releases: Sequence[str]) -> ColumnElement[bool]:
    """(name, version) among the releases: two array parameters (unnest) however many there are."""
    refs = [ReleaseRef.parse(release) for release in releases]
    if len(refs) == 1:
        return and_(Release.name == refs[0].name, Release.version == refs[0].version)
    names = bindparam(None, [ref.name for ref in refs], type_=ARRAY(Text))
    versions = bindparam(None, [ref.version for ref in refs], type_=ARRAY(Text))
    wanted = func.unnest(names, versions).table_valued("name", "version").render_derived()
    return tuple_(Release.name, Release.version).in_(select(wanted.c.name, wanted.c.version))


def _numeric_id_sql(node: Comparison) -> ColumnElement[bool]:
    """Some id of that database is a whole number and compares so (`cod >= 4000000`)."""
    # CASE, not AND: PostgreSQL may evaluate the cast before a sibling condition.
    digits = ExternalId.external_id.regexp_match("^[0-9]{1,18}$")
    number = case((digits, ExternalId.external_id.cast(BigInteger)))
    return (
        exists()
        .where(
            ExternalId.structure_id == Structure.id,
            ExternalId.database == node.qualifier,
            _COMPARE[node.op](number, node.value),
        )
        .correlate(Structure)
    )
