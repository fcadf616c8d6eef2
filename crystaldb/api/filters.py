"""StructureFilter, the GraphQL input, compiled to the --where AST so both share one backend.

Each filter object's conditions compile to one AST (and so to one SQL expression) through the
shared backend; `and`, `or` and `not` combine the objects' expressions, so a band gap range
holds for one label (both bounds on the same value) and each object of a list on its own. A
band gap range on a model's predictions, which the --where language has no field for, is an
EXISTS over `predictions` written here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import strawberry
from sqlalchemy import ColumnElement, and_, exists, not_, or_, select, true

from crystaldb.api.errors import ApiError
from crystaldb.core.lru import Lru
from crystaldb.core.records import FLAGS
from crystaldb.query.ast import (
    And,
    Comparison,
    ElementsTest,
    FilterError,
    FlagsTest,
    Membership,
    Mode,
    Node,
    Op,
    Value,
)
from crystaldb.query.fields import DEFAULT_FUNCTIONAL
from crystaldb.query.sql import to_sql
from crystaldb.schema.ml import Model, Prediction
from crystaldb.schema.structures import Structure

_N = TypeVar("_N", int, float)


@strawberry.input(description="Inclusive bounds on a whole number.")
class IntRange:
    gte: int | None = None
    lte: int | None = None


@strawberry.input(
    description="Band gap bounds in eV, on one source: the DFT labels of a functional "
    f"(default {DEFAULT_FUNCTIONAL}), or the predictions of a model (by name, as models lists)."
)
class BandGapFilter:
    gte: float | None = None
    lte: float | None = None
    functional: str | None = strawberry.field(
        default=None, description=f"DFT functional of the label; default {DEFAULT_FUNCTIONAL}."
    )
    model: str | None = strawberry.field(
        default=None, description="A model's name: bounds on its predictions, not on labels."
    )


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


@strawberry.input(
    description="Quality flags from ingestion (Structure.flags), one of: " + ", ".join(FLAGS) + "."
)
class FlagsFilter:
    has_all: list[str] | None = None
    has_any: list[str] | None = None
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
    flags: FlagsFilter | None = None
    nelements: IntRange | None = None
    nsites: IntRange | None = None
    reduced_formula: str | None = None
    anonymous_formula: str | None = None
    source: SourceFilter | None = None
    release: str | None = strawberry.field(default=None, description="name:version")
    and_: list[StructureFilter] | None = strawberry.field(default=None, name="and")
    or_: list[StructureFilter] | None = strawberry.field(default=None, name="or")
    not_: StructureFilter | None = strawberry.field(default=None, name="not")


@dataclass
class CompiledFilter:
    """The SQL where-clause, the models it names (input path -> name) to check exist, and the
    functionals its band gap conditions read (input path -> functional), to warn of any that
    labels no structure."""

    where: ColumnElement[bool]
    models: dict[str, str] = field(default_factory=dict)
    functionals: dict[str, str] = field(default_factory=dict)


# Compiled filters by their input's repr (dataclass reprs name every field and value): the
# same filter costs 0.5 ms to compile and clients send the same few, page after page. SQL
# expressions are immutable, so one where-clause can serve any number of statements.
# Bounded in bytes too: a compiled filter holds about 50 bytes per character of its repr.
_COMPILED: Lru[str, CompiledFilter] = Lru(256, 32 << 20, lambda key: 50 * len(key))


def compile_filter(spec: StructureFilter | None) -> CompiledFilter:
    """The SQL where-clause of a filter; ApiError naming the input path if it is invalid."""
    if spec is None:
        return CompiledFilter(true())
    return _COMPILED.get_or_put(repr(spec), lambda: _compiled(spec))


def _compiled(spec: StructureFilter) -> CompiledFilter:
    """A filter compiled afresh; an invalid one raises, so it is never kept."""
    compiled = CompiledFilter(true())
    where = _compile(spec, "filter", compiled)
    if where is not None:
        compiled.where = where
    return compiled


def _compile(
    spec: StructureFilter, path: str, compiled: CompiledFilter
) -> ColumnElement[bool] | None:
    """One filter object: its conditions (one AST) and its logic, joined by and; None if empty."""
    parts: list[ColumnElement[bool]] = []
    nodes = list(_conditions(spec, path, compiled.functionals))
    if nodes:
        parts.append(to_sql(nodes[0] if len(nodes) == 1 else And(tuple(nodes))))
    if spec.band_gap is not None and spec.band_gap.model is not None:
        parts.append(_predicted(spec.band_gap, f"{path}.bandGap", compiled.models))
    parts += _logic(spec, path, compiled)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else and_(*parts)


def _conditions(spec: StructureFilter, path: str, functionals: dict[str, str]) -> Iterator[Node]:
    """The filter object's conditions the shared backend knows, each checked where written."""
    if spec.band_gap is not None and spec.band_gap.model is None:
        functionals[f"{path}.bandGap"] = spec.band_gap.functional or DEFAULT_FUNCTIONAL
        yield _band_gap(spec.band_gap, f"{path}.bandGap")
    if spec.space_group is not None:
        yield from _space_group(spec.space_group, f"{path}.spaceGroup")
    simple: list[tuple[str, str, str | None]] = [
        ("crystal_system", "crystalSystem", spec.crystal_system),
        ("reduced_formula", "reducedFormula", spec.reduced_formula),
        ("anonymous_formula", "anonymousFormula", spec.anonymous_formula),
        ("release", "release", spec.release),
    ]
    for column, name, value in simple:
        if value is not None:
            yield _checked(Comparison(column, "=", value), f"{path}.{name}")
    if spec.elements is not None:
        yield from _elements(spec.elements, f"{path}.elements")
    if spec.flags is not None:
        yield from _flags(spec.flags, f"{path}.flags")
    for column, bounds in (("nelements", spec.nelements), ("nsites", spec.nsites)):
        if bounds is not None:
            yield _range(column, bounds.gte, bounds.lte, f"{path}.{column}")
    if spec.source is not None:
        yield _source(spec.source, f"{path}.source")


def _logic(
    spec: StructureFilter, path: str, compiled: CompiledFilter
) -> Iterator[ColumnElement[bool]]:
    """and: [...], or: [...] and not: {...}."""
    for combine, name, items in ((and_, "and", spec.and_), (or_, "or", spec.or_)):
        if items is None:
            continue
        if not items:
            raise ApiError(f"{path}.{name}: give at least one filter in the list")
        operands = [
            _required(item, f"{path}.{name}[{i}]", compiled) for i, item in enumerate(items)
        ]
        yield combine(*operands)
    if spec.not_ is not None:
        yield not_(_required(spec.not_, f"{path}.not", compiled))


def _required(spec: StructureFilter, path: str, compiled: CompiledFilter) -> ColumnElement[bool]:
    """A non-empty filter inside and/or/not (an empty one would mean nothing there)."""
    where = _compile(spec, path, compiled)
    if where is None:
        raise ApiError(f"{path}: the filter is empty; give at least one condition")
    return where


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
    functional = spec.functional or DEFAULT_FUNCTIONAL
    tests = [Comparison("band_gap", op, v, functional) for op, v in pairs]
    return _checked(tests[0] if len(tests) == 1 else And(tuple(tests)), path)


def _predicted(spec: BandGapFilter, path: str, models: dict[str, str]) -> ColumnElement[bool]:
    """Some band gap prediction of the model is within both bounds (index: model, property,
    value); the model's existence is checked against the database by the resolver."""
    if spec.functional is not None:
        raise ApiError(f"{path}: give functional (a DFT label) or model (predictions), not both")
    if not spec.model:
        raise ApiError(f"{path}.model: give a model name, as the models query lists them")
    bounds = _bounds(spec.gte, spec.lte, path)
    models[f"{path}.model"] = spec.model
    model_id = select(Model.id).where(Model.name == spec.model).scalar_subquery()
    tests = [Prediction.value >= v if op == ">=" else Prediction.value <= v for op, v in bounds]
    return (
        exists()
        .where(
            Prediction.structure_id == Structure.id,
            Prediction.model_id == model_id,
            Prediction.property == "band_gap",
            *tests,
        )
        .correlate(Structure)
    )


def _space_group(spec: SpaceGroupFilter, path: str) -> Iterator[Node]:
    """number, symbol and in, each a test of its own."""
    if spec.number is not None:
        yield _checked(Comparison("spacegroup", "=", spec.number), f"{path}.number")
    if spec.symbol is not None:
        yield _checked(Comparison("spacegroup_symbol", "=", spec.symbol), f"{path}.symbol")
    if spec.in_ is not None:
        values: tuple[Value, ...] = tuple(spec.in_)
        yield _checked(Membership("spacegroup", values), f"{path}.in")


_Lists = list[tuple[Mode, str, list[str] | None]]  # (mode, input field, values given)


def _elements(spec: ElementsFilter, path: str) -> Iterator[Node]:
    """One ElementsTest per list given."""
    lists: _Lists = [
        ("all", "hasAll", spec.has_all),
        ("any", "hasAny", spec.has_any),
        ("only", "hasOnly", spec.has_only),
        ("none", "excludes", spec.excludes),
    ]
    return _list_tests(ElementsTest, lists, path, "element symbol")


def _flags(spec: FlagsFilter, path: str) -> Iterator[Node]:
    """One FlagsTest per list given."""
    lists: _Lists = [
        ("all", "hasAll", spec.has_all),
        ("any", "hasAny", spec.has_any),
        ("none", "excludes", spec.excludes),
    ]
    return _list_tests(FlagsTest, lists, path, "flag")


def _list_tests(
    test: Callable[[Mode, tuple[str, ...]], Node], lists: _Lists, path: str, what: str
) -> Iterator[Node]:
    """The --where tests of has/excludes lists, each checked where written; [] is an error."""
    for mode, name, values in lists:
        if values is None:
            continue
        if not values:
            raise ApiError(f"{path}.{name}: give at least one {what}")
        yield _checked(test(mode, tuple(values)), f"{path}.{name}")


def _source(spec: SourceFilter, path: str) -> Node:
    """Has any id in the database, or this id there."""
    if spec.id is None:
        return _checked(Comparison("source", "=", spec.database), path)
    return _checked(Comparison("external_id", "=", spec.id, spec.database), path)
