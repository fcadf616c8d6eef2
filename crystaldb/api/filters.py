"""StructureFilter, the GraphQL input, compiled to the --where AST so both share one backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import strawberry
from sqlalchemy import ColumnElement, true

from crystaldb.api.errors import ApiError
from crystaldb.schema.filters import (
    DEFAULT_FUNCTIONAL,
    And,
    Comparison,
    ElementsTest,
    FilterError,
    Membership,
    Mode,
    Node,
    Not,
    Op,
    Or,
    Value,
    to_sql,
)

_N = TypeVar("_N", int, float)


@strawberry.input(description="Inclusive bounds on a whole number.")
class IntRange:
    gte: int | None = None
    lte: int | None = None


@strawberry.input(description="Band gap bounds in eV, from a calculation with this functional.")
class BandGapFilter:
    gte: float | None = None
    lte: float | None = None
    functional: str = DEFAULT_FUNCTIONAL


@strawberry.input(description="Space group by number (1-230), Hermann-Mauguin symbol or list.")
class SpaceGroupFilter:
    number: int | None = None
    symbol: str | None = None
    in_: list[int] | None = strawberry.field(default=None, name="in")


@strawberry.input(description="Element symbols (case-sensitive: Cl, not cl).")
class ElementsFilter:
    has_all: list[str] | None = None
    has_any: list[str] | None = None
    has_only: list[str] | None = None
    excludes: list[str] | None = None


@strawberry.input(description="Has an id in this database (and, if given, exactly this id).")
class SourceFilter:
    database: str
    id: str | None = None


@strawberry.input(description="All given conditions hold; and/or/not combine filters.")
class StructureFilter:
    band_gap: BandGapFilter | None = None
    space_group: SpaceGroupFilter | None = None
    crystal_system: str | None = None
    elements: ElementsFilter | None = None
    nelements: IntRange | None = None
    nsites: IntRange | None = None
    reduced_formula: str | None = None
    anonymous_formula: str | None = None
    source: SourceFilter | None = None
    release: str | None = strawberry.field(default=None, description="name:version")
    and_: list[StructureFilter] | None = strawberry.field(default=None, name="and")
    or_: list[StructureFilter] | None = strawberry.field(default=None, name="or")
    not_: StructureFilter | None = strawberry.field(default=None, name="not")


def compile_filter(spec: StructureFilter | None) -> ColumnElement[bool]:
    """The SQL where-clause of a filter; ApiError naming the input path if it is invalid."""
    if spec is None:
        return true()
    node = to_node(spec, "filter")
    return true() if node is None else to_sql(node)


def to_node(spec: StructureFilter, path: str) -> Node | None:
    """The AST of one filter object: its conditions joined by and; None when it is empty."""
    nodes = list(_conditions(spec, path))
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _conditions(spec: StructureFilter, path: str) -> Iterator[Node]:
    """Every condition of the filter object, each checked where it was written."""
    if spec.band_gap is not None:
        yield _band_gap(spec.band_gap, f"{path}.bandGap")
    if spec.space_group is not None:
        yield from _space_group(spec.space_group, f"{path}.spaceGroup")
    simple: list[tuple[str, str, str | None]] = [
        ("crystal_system", "crystalSystem", spec.crystal_system),
        ("reduced_formula", "reducedFormula", spec.reduced_formula),
        ("anonymous_formula", "anonymousFormula", spec.anonymous_formula),
        ("release", "release", spec.release),
    ]
    for field, name, value in simple:
        if value is not None:
            yield _checked(Comparison(field, "=", value), f"{path}.{name}")
    if spec.elements is not None:
        yield from _elements(spec.elements, f"{path}.elements")
    for field, bounds in (("nelements", spec.nelements), ("nsites", spec.nsites)):
        if bounds is not None:
            yield _range(field, bounds.gte, bounds.lte, f"{path}.{field}")
    if spec.source is not None:
        yield _source(spec.source, f"{path}.source")
    yield from _logic(spec, path)


def _logic(spec: StructureFilter, path: str) -> Iterator[Node]:
    """and: [...], or: [...] and not: {...}."""
    for kind, name, items in ((And, "and", spec.and_), (Or, "or", spec.or_)):
        if items is None:
            continue
        if not items:
            raise ApiError(f"{path}.{name}: give at least one filter in the list")
        operands = [_required(item, f"{path}.{name}[{i}]") for i, item in enumerate(items)]
        yield kind(tuple(operands))
    if spec.not_ is not None:
        yield Not(_required(spec.not_, f"{path}.not"))


def _required(spec: StructureFilter, path: str) -> Node:
    """A non-empty filter inside and/or/not (an empty one would mean nothing there)."""
    node = to_node(spec, path)
    if node is None:
        raise ApiError(f"{path}: the filter is empty; give at least one condition")
    return node


def _checked(node: Node, path: str) -> Node:
    """The node, validated by the --where backend, its message prefixed with the input path."""
    try:
        to_sql(node)
    except FilterError as error:
        raise ApiError(f"{path}: {str(error).removeprefix('invalid filter: ')}") from None
    return node


def _bounds(gte: _N | None, lte: _N | None, path: str) -> list[tuple[Op, _N]]:
    """The (operator, value) pairs of a range; refuses an empty or impossible one."""
    if gte is None and lte is None:
        raise ApiError(f"{path}: give gte, lte or both")
    if gte is not None and lte is not None and gte > lte:
        raise ApiError(f"{path}: gte ({gte}) is greater than lte ({lte}), so nothing matches")
    pairs: list[tuple[Op, _N | None]] = [(">=", gte), ("<=", lte)]
    return [(op, v) for op, v in pairs if v is not None]


def _range(field: str, gte: int | None, lte: int | None, path: str) -> Node:
    """nsites / nelements bounds."""
    tests = [Comparison(field, op, v) for op, v in _bounds(gte, lte, path)]
    return _checked(tests[0] if len(tests) == 1 else And(tuple(tests)), path)


def _band_gap(spec: BandGapFilter, path: str) -> Node:
    """Both bounds on the same label: to_sql folds an And of label tests into one EXISTS."""
    pairs = _bounds(spec.gte, spec.lte, path)
    tests = [Comparison("band_gap", op, v, spec.functional) for op, v in pairs]
    return _checked(tests[0] if len(tests) == 1 else And(tuple(tests)), path)


def _space_group(spec: SpaceGroupFilter, path: str) -> Iterator[Node]:
    """number, symbol and in, each a test of its own."""
    if spec.number is not None:
        yield _checked(Comparison("spacegroup", "=", spec.number), f"{path}.number")
    if spec.symbol is not None:
        yield _checked(Comparison("spacegroup_symbol", "=", spec.symbol), f"{path}.symbol")
    if spec.in_ is not None:
        values: tuple[Value, ...] = tuple(spec.in_)
        yield _checked(Membership("spacegroup", values), f"{path}.in")


def _elements(spec: ElementsFilter, path: str) -> Iterator[Node]:
    """One ElementsTest per list given."""
    modes: list[tuple[Mode, str, list[str] | None]] = [
        ("all", "hasAll", spec.has_all),
        ("any", "hasAny", spec.has_any),
        ("only", "hasOnly", spec.has_only),
        ("none", "excludes", spec.excludes),
    ]
    for mode, name, symbols in modes:
        if symbols is None:
            continue
        if not symbols:
            raise ApiError(f"{path}.{name}: give at least one element symbol")
        yield _checked(ElementsTest(mode, tuple(symbols)), f"{path}.{name}")


def _source(spec: SourceFilter, path: str) -> Node:
    """Has any id in the database, or this id there."""
    if spec.id is None:
        return _checked(Comparison("source", "=", spec.database), path)
    return _checked(Comparison("external_id", "=", spec.id, spec.database), path)
