"""The filter language's backend: a checked AST (`crystaldb.query.ast`) to SQLAlchemy.

`to_sql(node)` turns an AST, from the parser or built by hand (the GraphQL filter input),
into one boolean expression over `structures` rows; `where(text, origin)` parses then
compiles: ``select(Structure.id).where(where("nsites <= 100"))``. Kept apart from the grammar
(`crystaldb.query.grammar`) so that another front end reuses it and another backend could
replace it, as in optimade-python-tools.

Semantics, where they are not obvious:

- A missing value (a structure without a space group) makes a comparison false, and ``not``
  of it true: the logic is two-valued, unlike SQL's NULL.
- Two numeric fields compared (``nsites > nelements``, ``band_gap > band_gap[HSE06]``; the
  AST's `FieldComparison`, which the OPTIMADE filters build) hold when both have values and
  some pair of them compares so: a label field has one value per calculation.
- ``band_gap`` means the band gap from a calculation with the default functional
  (`DEFAULT_FUNCTIONAL`); ``band_gap[HSE06]`` names another. A comparison holds when some
  such label satisfies it; comparisons of the same label field joined by ``and`` (at any
  depth of ``and``, not across ``or`` or ``not``) must hold for one and the same label, so
  ``band_gap > 1 and band_gap < 2`` never pairs one calculation's 0.5 with another's 3.
- ``flags`` are the quality notes ingestion stores (`FLAGS`, explained in
  `crystaldb.core.validate`); they take the operators of ``elements``: ``flags has any
  deuterated`` (flagged so), ``flags excludes formula_sum_mismatch`` (not), ``flags has only
  deuterated`` (no other flag: unflagged structures too).
- ``source``, ``release`` and external ids (``cod = ...``) are sets per structure: ``=``
  and ``in`` mean "has one of them", ``!=`` and ``not in`` mean "has none of them". Ids are
  text; ``<``, ``<=``, ``>``, ``>=`` (``cod >= 4000000``) compare the ids that are whole
  numbers as numbers, and never select by an id with other characters. A ``release`` is
  ``"name:version"`` read as everywhere else (`ReleaseRef`: split at the first ``:``, since
  names hold none), so ``release = "beta:x:1"`` is version ``x:1`` of release ``beta``.
- ``spacegroup_symbol`` stands for its space-group type: ingest stores every structure in the
  standard setting of its type, so ``spacegroup_symbol = "P 21/n"`` selects exactly what
  ``spacegroup = 14`` selects; no filter selects by the setting of the original file. The SQL
  tests the space group number.
- Every test can use an index: B-tree indexes on the columns, the GIN indexes on ``elements``
  and ``flags`` (``@>``, ``&&``, ``<@``), ``ix_labels_property_value`` for labels, the primary
  key of ``external_ids`` and the unique keys of ``releases`` and ``release_members``. Negations
  (``excludes``, ``not``, ``!=``) can only filter rows found otherwise. A list (``in``,
  ``has``) is one array parameter (``= ANY(...)``, ``@>``), so a statement's parameter count
  does not grow with it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
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
from sqlalchemy.orm import aliased

from crystaldb.core.spacegroups import number_of_stored
from crystaldb.query.ast import (
    And,
    Comparison,
    ElementsTest,
    FieldComparison,
    FilterError,
    FlagsTest,
    Invalid,
    Membership,
    Mode,
    Node,
    Not,
    Or,
    Value,
)
from crystaldb.query.fields import DEFAULT_FUNCTIONAL, EQUALITY_OPS, FIELDS, FieldSpec, check
from crystaldb.query.grammar import DEFAULT_ORIGIN, parse
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.releases import Release, ReleaseMember, ReleaseRef
from crystaldb.schema.structures import ExternalId, Structure

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
        return _sql(check(node))
    except Invalid as error:
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
    if isinstance(node, FieldComparison):
        return _fields_sql(node)
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


def _operand(field: str, qualifier: str | None) -> tuple[Any, list[Any], Any]:
    """One side of a field comparison: its value's SQL, the conditions that give it a value,
    and the labels alias it reads (None for a column)."""
    spec = FIELDS[field]
    if spec.kind == "column":
        name = spec.column or spec.name
        column = getattr(Structure, name)
        known = [column.is_not(None)] if Structure.__table__.c[name].nullable else []
        return column, known, None
    label, calculation = aliased(Label), aliased(Calculation)
    where = [
        label.structure_id == Structure.id,
        label.property == field,
        calculation.id == label.calculation_id,
        calculation.functional == (qualifier or DEFAULT_FUNCTIONAL),
    ]
    return label.value, where, label


def _fields_sql(node: FieldComparison) -> ColumnElement[bool]:
    """Two fields compared: columns directly, labels through EXISTS over their values."""
    left, left_where, left_label = _operand(node.field, node.qualifier)
    right, right_where, right_label = _operand(node.other, node.other_qualifier)
    test = [*left_where, *right_where, _COMPARE[node.op](left, right)]
    if left_label is None and right_label is None:
        return and_(*test)
    return exists().where(*test).correlate(Structure)


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
