"""OPTIMADE filters -> crystaldb's filter AST (or SQL where the AST has no node), so the same
compiler and indexes answer both languages.

The text is parsed by the `optimade` package's own grammar (`LarkParser`); `_Builder` turns the
tree into parts: AST nodes for what `--where` can say, SQLAlchemy booleans for the rest
(formula strings in OPTIMADE's spelling, timestamps, constants such as nperiodic_dimensions).
Parts are joined as AST while they are all AST, and compiled with `to_sql` once they mix.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeAlias, cast

from lark import Token, Transformer, Tree, v_args
from optimade.filterparser import LarkParser
from optimade.models import StructureResourceAttributes
from sqlalchemy import ColumnElement, Text, and_, any_, bindparam, false, not_, or_, true
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY

from crystaldb.api.optimade import filter_sql
from crystaldb.api.optimade.entries import (
    PREFIX,
    RELEASES,
    optimade_anonymous,
    optimade_reduced,
)
from crystaldb.api.optimade.provider import Catalogue
from crystaldb.core.lru import Lru
from crystaldb.query.ast import (
    And,
    Comparison,
    ElementsTest,
    FieldComparison,
    FilterError,
    Mode,
    Node,
    Not,
    Or,
)
from crystaldb.query.sql import to_sql
from crystaldb.schema.structures import Structure

__all__ = ["Compiled", "FilterError", "NotImplementedFilter", "compile_filter"]

Part: TypeAlias = Node | ColumnElement[bool]
Distinct = Callable[[Any], list[str]]  # the distinct stored values of a column
MAX_FILTER = 10_000  # characters in one OPTIMADE filter
_PARSER = LarkParser(version=(1, 2, 0))
_STANDARD = frozenset(StructureResourceAttributes.model_fields) | {"id", "type"}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}
# OPTIMADE property -> (crystaldb field, qualifier) for plain comparisons
_SCALARS: dict[str, tuple[str, str | None]] = {
    "nelements": ("nelements", None),
    "nsites": ("nsites", None),
    f"{PREFIX}space_group_number": ("spacegroup", None),
    f"{PREFIX}space_group_symbol": ("spacegroup_symbol", None),
    f"{PREFIX}crystal_system": ("crystal_system", None),
    f"{PREFIX}band_gap_pbe": ("band_gap", "PBE"),
    f"{PREFIX}cod_id": ("cod", None),
}
_NULLABLE = {"spacegroup": "spacegroup_number", "spacegroup_symbol": "spacegroup_symbol",
             "crystal_system": "crystal_system"}  # fmt: skip
# properties in OPTIMADE's spelling derived from one stored text column
_DERIVED: dict[str, tuple[Any, Callable[[str], str | None]]] = {
    "chemical_formula_reduced": (Structure.reduced_formula, optimade_reduced),
    "chemical_formula_anonymous": (Structure.reduced_formula, optimade_anonymous),
    "chemical_formula_hill": (Structure.hill_formula, lambda hill: hill),
    "chemical_formula_descriptive": (Structure.hill_formula, lambda hill: hill),
}
_CONSTANTS: dict[str, Any] = {
    "type": "structures",
    "nperiodic_dimensions": 3,
    "dimension_types": [1, 1, 1],
    "structure_features": [],
    "lattice_vectors": [None, None, None],  # only LENGTH is answered
}
_LENGTH_IS_NSITES = ("species_at_sites", "cartesian_site_positions")


class NotImplementedFilter(Exception):
    """A valid OPTIMADE filter that crystaldb does not answer yet (HTTP 501)."""


class _Property(str):
    """A property named where a value goes (`nsites > nelements`)."""


class Compiled:
    """The WHERE clause of a filter, and the warnings the spec asks for (unknown providers)."""

    def __init__(self, clause: ColumnElement[bool], warnings: list[str]) -> None:
        self.clause = clause
        self.warnings = warnings


# (filter, catalogue) -> its clause and warnings, for filters whose SQL does not depend on
# the stored values (formula filters list the matching stored spellings: never kept)
_COMPILED: Lru[tuple[str, Any], tuple[ColumnElement[bool], tuple[str, ...]]] = Lru(
    512, 32 << 20, lambda key: 50 * len(key[0])
)


def compile_filter(text: str, distinct: Distinct, known: Catalogue | None = None) -> Compiled:
    """The SQL boolean over `structures` for an OPTIMADE filter; FilterError for a bad one.
    `known` names the data-driven provider fields (provider.catalogue)."""
    known = known or Catalogue()
    key = (text, known.key())
    kept = _COMPILED.get(key)
    if kept is not None:  # SQLAlchemy expressions are immutable: shared safely
        return Compiled(kept[0], list(kept[1]))
    read: list[bool] = []

    def reading(column: Any) -> list[str]:
        read.append(True)
        return distinct(column)

    compiled = _compile(text, reading, known)
    if not read:
        _COMPILED.put(key, (compiled.clause, tuple(compiled.warnings)))
    return compiled


def _compile(text: str, distinct: Distinct, known: Catalogue) -> Compiled:
    """compile_filter without the cache."""
    if len(text) > MAX_FILTER:
        raise FilterError(f"the filter has {len(text):,} characters; the maximum is {MAX_FILTER:,}")
    try:
        tree = _parse(text)
    except Exception as error:  # BadRequest from the optimade package, lark's errors
        detail = getattr(error, "detail", None) or str(error)
        raise FilterError(f"the filter does not parse: {str(detail)[:300]}") from None
    builder = _Builder(distinct, known)
    try:
        part = builder.transform(tree)
    except RecursionError:
        raise FilterError("the filter nests too deeply") from None
    except Exception as error:  # lark wraps what the callbacks raise in VisitError
        raise getattr(error, "orig_exc", error) from None
    return Compiled(_sql(part), builder.warnings)


@lru_cache(maxsize=512)
def _parse(text: str) -> Tree[Token]:
    """The parse tree of a filter, kept for the pages that follow (lark takes milliseconds;
    the transform that follows builds new parts and leaves the tree as it is)."""
    tree: Tree[Token] = _PARSER.parse(text)
    return tree


def _sql(part: Part) -> ColumnElement[bool]:
    """A part as SQL: AST nodes through crystaldb's compiler."""
    if isinstance(part, ColumnElement):
        return part
    return to_sql(part)


def _is_node(part: Part) -> bool:
    """True for a crystaldb AST node."""
    return not isinstance(part, ColumnElement)


def _and(parts: Sequence[Part]) -> Part:
    """AND of parts: AST while they all are."""
    if len(parts) == 1:
        return parts[0]
    if all(_is_node(p) for p in parts):
        return And(tuple(parts))  # type: ignore[arg-type]
    return and_(*(_sql(p) for p in parts))


def _or(parts: Sequence[Part]) -> Part:
    """OR of parts: AST while they all are."""
    if len(parts) == 1:
        return parts[0]
    if all(_is_node(p) for p in parts):
        return Or(tuple(parts))  # type: ignore[arg-type]
    return or_(*(_sql(p) for p in parts))


def _not(part: Part) -> Part:
    """NOT of a part."""
    return Not(part) if _is_node(part) else not_(part)  # type: ignore[arg-type]


def _bool(value: bool) -> Part:
    """A constant truth value."""
    return true() if value else false()


def _unescape(token: str) -> str:
    """The text of an OPTIMADE string literal: quotes removed, \\" and \\\\ undone."""
    return re.sub(r"\\(.)", r"\1", token[1:-1])


@v_args(inline=True)
class _Builder(Transformer[Token, Part]):
    """OPTIMADE parse tree -> parts, property by property."""

    def __init__(self, distinct: Distinct, known: Catalogue) -> None:
        super().__init__()
        self.distinct = distinct
        self.known = known
        self.warnings: list[str] = []

    # values
    def string(self, token: Token) -> str:
        return _unescape(str(token))

    def number(self, token: Token) -> int | float:
        text = str(token)
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)

    def signed_int(self, token: Token) -> int:
        return int(token)

    def bool(self, *tokens: Token) -> bool:
        raise NotImplementedFilter("boolean values in filters are not supported")

    def property(self, *names: Token) -> tuple[str, ...]:
        return tuple(str(name) for name in names)

    def value(self, inner: Any) -> Any:
        return _Property(".".join(inner)) if isinstance(inner, tuple) else inner

    def constant(self, inner: Any) -> Any:
        return inner

    def non_string_value(self, inner: Any) -> Any:
        return inner

    def not_implemented_string(self, inner: Any) -> Any:
        raise NotImplementedFilter("a string constant before the property is not supported")

    def value_list(self, *items: Any) -> list[tuple[str, Any]]:
        """(operator, value) pairs; "=" where no operator is written."""
        pairs: list[tuple[str, Any]] = []
        op = "="
        for item in items:
            if isinstance(item, Token):
                op = str(item)
            elif item is not None:
                pairs.append((op, item))
                op = "="
        return pairs

    def value_zip(self, *items: Any) -> list[tuple[str, Any]]:
        return self.value_list(*items)

    def value_zip_list(self, *zips: list[tuple[str, Any]]) -> list[list[tuple[str, Any]]]:
        return list(zips)

    def property_zip_addon(self, *props: tuple[str, ...]) -> list[str]:
        return [".".join(prop) for prop in props]

    # right-hand sides
    def value_op_rhs(self, op: Token, value: Any) -> tuple[Any, ...]:
        return ("op", str(op), value)

    def known_op_rhs(self, _is: Token, which: Token) -> tuple[Any, ...]:
        return ("known", str(which) == "KNOWN")

    def fuzzy_string_op_rhs(self, kind: Token, *rest: Any) -> tuple[Any, ...]:
        return ("fuzzy", str(kind), rest[-1])

    def set_op_rhs(self, _has: Token, *rest: Any) -> tuple[Any, ...]:
        """("has", mode, values, their operators)."""
        if len(rest) == 2 and isinstance(rest[0], Token) and str(rest[0]) in ("ALL", "ANY", "ONLY"):
            pairs = rest[1]
        else:
            op, value = (None, rest[0]) if len(rest) == 1 else rest
            pairs, rest = [(str(op or "="), value)], ("ALL",)
        values, ops = [v for _, v in pairs], tuple(op for op, _ in pairs)
        return ("has", str(rest[0]).lower(), values, ops)

    def length_op_rhs(self, _length: Token, *rest: Any) -> tuple[Any, ...]:
        op, number = rest if len(rest) == 2 else (None, rest[0])
        return ("length", str(op or "="), _whole(number))

    def set_zip_op_rhs(self, others: list[str], _has: Token, *rest: Any) -> tuple[Any, ...]:
        """("zip", the other properties, mode, the (operator, value) tuples)."""
        if len(rest) == 1:
            return ("zip", others, "all", [rest[0]])
        return ("zip", others, str(rest[0]).lower(), rest[1])

    # comparisons and logic
    def property_first_comparison(self, prop: tuple[str, ...], rhs: tuple[Any, ...]) -> Part:
        return self._compare(prop, rhs)

    def constant_first_comparison(self, value: Any, op: Token, prop: Any) -> Part:
        if not isinstance(prop, tuple):
            return _bool(_OPS[str(op)](value, prop))
        return self._compare(prop, ("op", _FLIP[str(op)], value))

    def comparison(self, part: Part) -> Part:
        return part

    def expression_phrase(self, *children: Any) -> Part:
        return children[0] if len(children) == 1 else _not(children[-1])

    def expression_clause(self, *parts: Part) -> Part:
        return _and(parts)

    def expression(self, *parts: Part) -> Part:
        return _or(parts)

    def filter(self, *parts: Part) -> Part:
        return parts[0] if parts else true()

    # one comparison on one property
    def _compare(self, prop: tuple[str, ...], rhs: tuple[Any, ...]) -> Part:
        name = ".".join(prop)
        kind = rhs[0]
        if kind == "op" and isinstance(rhs[2], _Property):
            return self._versus(name, rhs[1], rhs[2])
        if _names_property(rhs[1:]):
            raise NotImplementedFilter(
                "a property in place of a value is supported only in comparisons of two "
                "numeric properties (nsites > nelements)"
            )
        if kind == "has" and name != "elements" and any(op != "=" for op in rhs[3]):
            raise NotImplementedFilter(f"HAS with an operator on '{name}' is not supported")
        if kind == "zip":
            return _zipped(name, rhs)
        if name == "id":
            return _id(rhs)
        if name in self.known.functionals:
            return _or([_scalar(name, "band_gap", f, rhs) for f in self.known.functionals[name]])
        if name in self.known.models:
            return filter_sql.predicted(self.known.models[name], rhs)
        if name == RELEASES:
            return filter_sql.releases(rhs)
        if name == "species_at_sites" and kind == "has":
            return filter_sql.species_at_sites(rhs[1], list(zip(rhs[3], rhs[2], strict=True)))
        if name in _SCALARS:
            return _scalar(name, *_SCALARS[name], rhs)
        if name in _DERIVED:
            return self._derived(name, rhs)
        if name == "elements":
            return _elements(rhs)
        if name == "last_modified":
            return _timestamp(rhs)
        if kind == "length" and name in ("elements_ratios", *_LENGTH_IS_NSITES):
            field = "nelements" if name == "elements_ratios" else "nsites"
            return Comparison(field, rhs[1], _whole(rhs[2]))
        if name in _CONSTANTS:
            return _constant(name, _CONSTANTS[name], rhs)
        if name.startswith(PREFIX) or (not name.startswith("_") and name not in _STANDARD):
            raise FilterError(f"unknown property '{name}' in the filter")
        if name in _STANDARD and name not in ("elements_ratios", "species", *_LENGTH_IS_NSITES):
            return _bool(kind == "known" and not rhs[1])  # a standard property never served
        if name.startswith("_"):
            self.warnings.append(f"unknown provider property '{name}' is treated as unknown")
            return _bool(kind == "known" and not rhs[1])
        raise NotImplementedFilter(f"filtering on '{name}' this way is not supported")

    def _versus(self, name: str, op: str, other: str) -> Part:
        """Two numeric properties compared: crystaldb's FieldComparison, or a plain comparison
        where one side is the same on every structure (nperiodic_dimensions)."""
        if name in _NUMERIC_CONSTANTS and other in _NUMERIC_CONSTANTS:
            return _bool(_OPS[op](_NUMERIC_CONSTANTS[name], _NUMERIC_CONSTANTS[other]))
        if other in _NUMERIC_CONSTANTS:
            return self._compare((name,), ("op", op, _NUMERIC_CONSTANTS[other]))
        if name in _NUMERIC_CONSTANTS:
            return self._compare((other,), ("op", _FLIP[op], _NUMERIC_CONSTANTS[name]))
        left, right = self._operands(name), self._operands(other)
        parts = [FieldComparison(f, op, g, q, r) for f, q in left for g, r in right]  # type: ignore[arg-type]
        return _or(parts) if parts else false()

    def _operands(self, name: str) -> list[tuple[str, str | None]]:
        """crystaldb's fields behind a numeric OPTIMADE property (a band gap field may stand
        for several stored functionals); 501 for the properties not compared so."""
        if name in _NUMERIC_FIELDS:
            return [_NUMERIC_FIELDS[name]]
        if name in self.known.functionals:
            return [("band_gap", f) for f in self.known.functionals[name]]
        ours = name.startswith(PREFIX) and name not in self.known.builders()
        if ours or (not name.startswith("_") and name not in _STANDARD):
            raise FilterError(f"unknown property '{name[:60]}' in the filter")
        if not name.startswith(PREFIX) and name.startswith("_"):
            self.warnings.append(f"unknown provider property '{name[:60]}' is treated as unknown")
            return []  # an unknown value compares false
        numeric = ", ".join((*_NUMERIC_FIELDS, *self.known.functionals, *_NUMERIC_CONSTANTS))
        raise NotImplementedFilter(
            f"comparing '{name[:60]}' with another property is not supported; "
            f"properties compared with each other: {numeric}"
        )

    def _derived(self, name: str, rhs: tuple[Any, ...]) -> Part:
        """A formula in OPTIMADE's spelling: the stored values whose spelling satisfies it."""
        column, spell = _DERIVED[name]
        kind = rhs[0]
        if kind == "known":
            return _bool(rhs[1])
        if kind == "op":
            test = _OPS[rhs[1]]
        elif kind == "fuzzy":
            test = _FUZZY[rhs[1]]
        else:
            raise FilterError(f"'{name}' is a string: it takes =, !=, <, >, CONTAINS, STARTS, ENDS")
        wanted = rhs[-1]
        if not isinstance(wanted, str):
            raise FilterError(f"'{name}' is a string; compare it with a quoted string")
        matching = []
        for stored in self.distinct(column):
            spelt = spell(stored)
            if spelt is not None and test(spelt, wanted):
                matching.append(stored)
        if not matching:
            return false()
        array = bindparam(None, matching, type_=ARRAY(Text))
        return cast(ColumnElement[bool], column == any_(array))


# numeric properties that can be compared with each other, as crystaldb's fields
_NUMERIC_FIELDS: dict[str, tuple[str, str | None]] = {
    "nsites": ("nsites", None),
    "nelements": ("nelements", None),
    f"{PREFIX}space_group_number": ("spacegroup", None),
    f"{PREFIX}band_gap_pbe": ("band_gap", "PBE"),
}
_NUMERIC_CONSTANTS: dict[str, int] = {"nperiodic_dimensions": 3}


def _names_property(values: Any) -> bool:
    """Whether a right-hand side names a property anywhere (HAS nelements, CONTAINS id)."""
    if isinstance(values, _Property):
        return True
    if isinstance(values, list | tuple):
        return any(_names_property(v) for v in values)
    return False


_FUZZY: dict[str, Callable[[str, str], bool]] = {
    "CONTAINS": lambda text, part: part in text,
    "STARTS": str.startswith,
    "ENDS": str.endswith,
}


def _whole(value: Any) -> int:
    """A whole number from a filter value, or a 400."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterError(f"expected a whole number, not {value!r}")
    return value


def _id(rhs: tuple[Any, ...]) -> Part:
    """`id` is text in OPTIMADE: = and != on the key, other tests on its decimal spelling."""
    kind = rhs[0]
    if kind == "known":
        return _bool(rhs[1])
    value = rhs[-1]
    if kind not in ("op", "fuzzy") or not isinstance(value, str):
        raise FilterError("'id' is a string; compare it with a quoted string")
    if kind == "op" and rhs[1] in ("=", "!=") and value.isdecimal() and len(value) < 19:
        return Comparison("id", rhs[1], int(value))
    text = sql_cast(Structure.id, Text)
    if kind == "fuzzy":
        pattern = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = {"CONTAINS": f"%{pattern}%", "STARTS": f"{pattern}%", "ENDS": f"%{pattern}"}
        return text.like(like[rhs[1]])
    return cast(ColumnElement[bool], _OPS[rhs[1]](text.collate("C"), value))


def _scalar(name: str, field: str, qualifier: str | None, rhs: tuple[Any, ...]) -> Part:
    """A property that is one crystaldb field: comparisons and IS KNOWN."""
    kind = rhs[0]
    if kind == "op" and field == "cod" and rhs[1] == "!=":
        # crystaldb's `cod != x` is "no COD id is x", true without one; OPTIMADE's is false
        # for an unknown value: a COD id, and not x
        return And((_known(field, qualifier), Comparison(field, "!=", rhs[2], qualifier)))  # type: ignore[arg-type]
    if kind == "op":
        return Comparison(field, rhs[1], rhs[2], qualifier)
    if kind == "known":
        known = _known(field, qualifier)
        return known if rhs[1] else _not(known)
    raise FilterError(f"'{name}' takes =, !=, <, <=, >, >= and IS KNOWN")


def _known(field: str, qualifier: str | None) -> Part:
    """The test that a crystaldb field has a value."""
    if field == "band_gap":
        return Comparison("band_gap", ">=", float("-inf"), qualifier)
    if field == "cod":
        return Comparison("source", "=", "cod")
    if field in _NULLABLE:
        return cast(ColumnElement[bool], getattr(Structure, _NULLABLE[field]).is_not(None))
    return true()


def _elements(rhs: tuple[Any, ...]) -> Part:
    """elements HAS / HAS ALL / ANY / ONLY, and LENGTH (nelements)."""
    kind = rhs[0]
    if kind == "has":
        mode: Mode = rhs[1]
        if not rhs[2] or not all(isinstance(v, str) for v in rhs[2]):
            raise FilterError("elements HAS takes quoted element symbols")
        if all(op == "=" for op in rhs[3]):
            return ElementsTest(mode, tuple(rhs[2]))
        # each item: one of the symbols that satisfy it (a GIN-indexed overlap)
        sets = [filter_sql.symbols_where(op, v) for op, v in zip(rhs[3], rhs[2], strict=True)]
        if mode == "only":
            return ElementsTest("only", tuple(sorted(set().union(*sets))))
        parts = [ElementsTest("any", tuple(s)) if s else false() for s in sets]
        return _or(parts) if mode == "any" else _and(parts)
    if kind == "length":
        return Comparison("nelements", rhs[1], _whole(rhs[2]))
    if kind == "known":
        return _bool(rhs[1])
    raise FilterError("'elements' is a list: use HAS, HAS ALL, HAS ANY, HAS ONLY or LENGTH")


def _zipped(name: str, rhs: tuple[Any, ...]) -> Part:
    """elements:elements_ratios HAS ... (either order); other zips are a 501."""
    names = [name, *rhs[1]]
    if sorted(names) != ["elements", "elements_ratios"]:
        raise NotImplementedFilter(
            f"HAS on the zipped properties {':'.join(names)} is not supported"
        )
    items = rhs[3] if names[0] == "elements" else [list(reversed(item)) for item in rhs[3]]
    return filter_sql.zipped_ratios(rhs[2], items)


def _timestamp(rhs: tuple[Any, ...]) -> Part:
    """last_modified compared with an RFC 3339 timestamp (the row's created_at)."""
    if rhs[0] == "known":
        return _bool(rhs[1])
    if rhs[0] != "op" or not isinstance(rhs[2], str):
        raise FilterError("'last_modified' takes a comparison with a quoted timestamp")
    try:
        moment = datetime.fromisoformat(rhs[2].replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"'{rhs[2][:40]}' is not an RFC 3339 timestamp") from None
    return cast(ColumnElement[bool], _OPS[rhs[1]](Structure.created_at, moment))


def _constant(name: str, value: Any, rhs: tuple[Any, ...]) -> Part:
    """A property with the same value on every structure: answered here, not by SQL."""
    kind = rhs[0]
    if kind == "known":
        return _bool(rhs[1])
    if kind == "length" and isinstance(value, list):
        return _bool(_OPS[rhs[1]](len(value), rhs[2]))
    if kind == "has" and isinstance(value, list):
        wanted = set(rhs[2])
        held = set(value)
        tests = {"all": wanted <= held, "any": bool(wanted & held), "only": held <= wanted}
        return _bool(tests[rhs[1]])
    if kind == "op" and not isinstance(value, list):
        try:
            return _bool(_OPS[rhs[1]](value, rhs[2]))
        except TypeError:
            raise FilterError(f"'{name}' cannot be compared with {rhs[2]!r}") from None
    raise NotImplementedFilter(f"this test on '{name}' is not supported")
