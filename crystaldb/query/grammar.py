"""The filter language's syntax: text in, a checked AST (`crystaldb.query.ast`) out.

`GRAMMAR`, a lark LALR grammar, turns text into a parse tree; `_Builder`, a lark Transformer,
turns the tree into the AST, checking each field, operator and value against the field table
(`crystaldb.query.fields`) where it was written, so an error names its column. `parse(text,
origin)` does both and turns every failure, syntax (`_syntax_error`) or meaning, into one
`FilterError` line prefixed by `origin` (``--where``, or the GraphQL argument). This is the only
module of the language that loads lark; the SQL compiler (`crystaldb.query.sql`) never sees text.

Syntax, where it is not obvious:

- Keywords (and, or, not, in, has, all, any, only, excludes) are case-insensitive and
  reserved: quote a value that is one of them (``In``, indium, needs no quotes in an element
  list). Field names are case-insensitive too.
- ``not`` binds tighter than ``and``, which binds tighter than ``or``.
- Values are numbers, quoted strings ('...' or "..."; no escapes) or bare words made of
  letters, digits and ``_ - . : / +`` starting with a letter or ``_``. A number written
  without a point or exponent is a whole number.
- ``field not in (...)`` is ``not (field in (...))``; ``==`` is ``=``; ``has`` without
  ``all``, ``any`` or ``only`` is ``has all``.
- Nested ``and`` (and ``or``) are flattened into one node.

The parser is LALR with an explicit stack and the transformer is non-recursive, so however
deep the nesting, the input reaches the depth limits (`MAX_DEPTH`), not Python's recursion limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar, cast

from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from crystaldb.query.ast import (
    And,
    Comparison,
    FilterError,
    Invalid,
    ListTest,
    Membership,
    Mode,
    Node,
    Not,
    Op,
    Or,
    Value,
    fail,
    list_test,
    place,
    quote,
    quote_name,
)
from crystaldb.query.fields import (
    FIELDS,
    MAX_DEPTH,
    MAX_LENGTH,
    MODE_WORDS,
    FieldSpec,
    check_depth,
    check_item,
    check_list,
    check_list_field,
    check_op,
    check_value,
    resolve,
)

DEFAULT_ORIGIN = "--where"  # names the filter's origin at the start of every error message

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

# --------------------------------------------------------------------------- tree -> AST


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
    except Invalid as error:
        raise Invalid(error.subject, error.detail, column) from None


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
        field, resolved = _at(name.column, lambda: resolve(text, written))
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
        _at(op.column, lambda: check_op(ref.spec, symbol))
        return Comparison(ref.field, symbol, _value_at(ref.spec, literal, symbol), ref.qualifier)

    def membership(self, ref: _FieldRef, keyword: Token, literals: tuple[_Literal, ...]) -> Node:
        """`field in (v, ...)`."""
        _at(keyword.column, lambda: check_op(ref.spec, "="))
        _at(keyword.column, lambda: check_list(f"{ref.spec.name} in (...)", len(literals)))
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
    return _at(literal.column, lambda: check_value(spec, literal.value, op))


def _number(text: str) -> Value:
    """int when written without a point or exponent, else float; too many digits is an error."""
    try:
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    except ValueError:  # Python converts at most 4,300 digits to an int
        fail(f"the number {quote(text, '')} has too many digits")


def _list_test_at(ref: _FieldRef, mode: Mode, literals: tuple[_Literal, ...]) -> ListTest:
    """An elements or flags test, each error attributed to where it was written."""
    name = ref.spec.name
    _at(ref.column, lambda: check_list_field(ref.spec))
    _at(ref.column, lambda: check_list(f"{name} {MODE_WORDS[mode]} (...)", len(literals)))
    values = tuple(_at(x.column, partial(check_item, name, str(x.value))) for x in literals)
    return list_test(name, mode, values)


def _flatten(kind: type[And] | type[Or], operands: Iterable[Node]) -> tuple[Node, ...]:
    """Merge nested ands into one and (ors likewise): same meaning, one level."""
    flat: list[Node] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return tuple(flat)


# --------------------------------------------------------------------------- syntax errors

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
        found = f"unexpected {quote_name(str(token))} {place(token.line, column)}"
        hint = ""
        start = token.start_pos or 0
        if token.type == "WORD" and start > 0 and text[start - 1].isdigit():
            hint = '; quote a value that starts with a digit, e.g. "05000N2"'
        return FilterError(f"{origin}: {found}: expected {expected}{hint}", column)
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        char = text[position : position + 1]
        where = place(error.line, error.column)
        if char in "\"'":
            return FilterError(
                f"{origin}: unclosed quote {where}: close it with {char}", error.column
            )
        return FilterError(
            f"{origin}: unexpected character {quote_name(char)} {where}: "
            "quote values that contain it",
            error.column,
        )
    return FilterError(f"{origin}: cannot read the filter {place(error.line, error.column)}")


# --------------------------------------------------------------------------- text -> AST


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
        check_depth(node)
    except VisitError as error:
        invalid = error.orig_exc
        if not isinstance(invalid, Invalid):
            raise
        raise FilterError(invalid.text(origin), invalid.column) from None
    except Invalid as invalid:
        raise FilterError(invalid.text(origin), invalid.column) from None
    return node


def _check_parentheses(text: str, origin: str) -> None:
    """Refuse parentheses nested deeper than MAX_DEPTH; the lexer knows which are quoted."""
    depth = 0
    for token in _PARSER.lex(text):
        depth += {"LPAR": 1, "RPAR": -1}.get(token.type, 0)
        if depth > MAX_DEPTH:
            where = place(token.line, token.column)
            raise FilterError(
                f"{origin}: parentheses nested more than {MAX_DEPTH} deep {where}: "
                f"the maximum nesting depth is {MAX_DEPTH}; simplify the filter",
                token.column,
            )
