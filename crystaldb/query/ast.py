"""The filter language's AST and its errors: what every front end builds and every backend reads.

The nodes are frozen dataclasses (`Comparison`, `FieldComparison`, `Membership`,
`ElementsTest`, `FlagsTest`, `And`, `Or`, `Not`), pure data: this module loads neither lark
nor SQLAlchemy, so the GraphQL filter input (`crystaldb.api.filters`) and the OPTIMADE filters
(`crystaldb.api.optimade.filters`) can build a `Node` by hand, and a backend other than
`crystaldb.query.sql` could compile one. `crystaldb.query.grammar` builds them from text
(every node but `FieldComparison`, which only OPTIMADE filters write);
`crystaldb.query.fields` checks and normalises them against the field table.

Errors: `FilterError` is what callers see, one line that says where and what to do. `Invalid`
is the semantic error the checks raise (`fail`) before the origin of the filter and the column
are known; the parser and `to_sql` turn it into a `FilterError`. Messages echo user text cut at
60 characters (with its full length) and with unprintable characters escaped (`quote`,
`quote_name`, `show`), so a message is always one short line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NoReturn, TypeAlias

from crystaldb.core.errors import CrystaldbError

Value: TypeAlias = int | float | str
Op = Literal["=", "!=", "<", "<=", ">", ">="]
Mode = Literal["all", "any", "only", "none"]

ECHO_CHARS = 60  # user text longer than this is echoed cut, with its length


# --------------------------------------------------------------------------- the nodes


@dataclass(frozen=True, slots=True)
class Comparison:
    """`field[qualifier] op value`; the qualifier is a label's functional or an id's database."""

    field: str
    op: Op
    value: Value
    qualifier: str | None = None


@dataclass(frozen=True, slots=True)
class FieldComparison:
    """`field[qualifier] op other[other_qualifier]`: two numeric fields of the same structure
    (`nsites > nelements`); true when both have values and some pair of them compares so (a
    label field holds one value per calculation)."""

    field: str
    op: Op
    other: str
    qualifier: str | None = None
    other_qualifier: str | None = None


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


Node: TypeAlias = (
    Comparison | FieldComparison | Membership | ElementsTest | FlagsTest | And | Or | Not
)
ListTest: TypeAlias = ElementsTest | FlagsTest  # the tests of has/excludes


def list_test(field: str, mode: Mode, values: tuple[str, ...]) -> ListTest:
    """The AST node of `field has/excludes values`, values as given."""
    return ElementsTest(mode, values) if field == "elements" else FlagsTest(mode, values)


# --------------------------------------------------------------------------- errors


class FilterError(CrystaldbError):
    """A filter that does not parse or means nothing; the message says where and what to do."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


class Invalid(Exception):
    """A semantic error: what is wrong, then what to do; the column goes between them."""

    def __init__(self, subject: str, detail: str = "", column: int | None = None) -> None:
        super().__init__(subject)
        self.subject = subject
        self.detail = detail
        self.column = column

    def text(self, origin: str) -> str:
        """The one-line message: `origin: subject at column N: detail`."""
        where = f" {place(None, self.column)}" if self.column else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{origin}: {self.subject}{where}{detail}"


def fail(subject: str, detail: str = "") -> NoReturn:
    """Raise a semantic error; the parser attaches the column and the origin."""
    raise Invalid(subject, detail)


def place(line: int | None, column: int | None) -> str:
    """'at column N' (with the line when the filter spans several)."""
    if column is None:
        return "at the end of the filter"
    return f"at line {line}, column {column}" if line and line > 1 else f"at column {column}"


def show(value: object) -> str:
    """A value as the user would have written it, cut short and escaped for a one-line message."""
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int) and value.bit_length() > 256:
        return f"a whole number of {value.bit_length():,} bits"
    return quote(repr(value), "")


def quote(text: str, mark: str = '"') -> str:
    """User text in quotes: unprintables escaped, cut at ECHO_CHARS with its full length."""
    shown = ""
    for char in text:
        piece = char if char.isprintable() else ascii(char)[1:-1]  # \x00, \ud800
        if len(shown) + len(piece) > ECHO_CHARS:
            return f"{mark}{shown}...{mark} ({len(text):,} characters)"
        shown += piece
    return f"{mark}{shown}{mark}"


def quote_name(text: str) -> str:
    """User text as messages name fields, operators, symbols and tokens: in single quotes."""
    return quote(text, "'")
