"""SQL for the OPTIMADE tests crystaldb's filter AST has no node for: predictions by model,
release lists, species names, and zipped `elements:elements_ratios HAS ...`."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from ase.data import atomic_numbers, chemical_symbols
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    SmallInteger,
    and_,
    column,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
    tuple_,
)

from crystaldb.query.ast import FilterError
from crystaldb.schema.ml import Model, Prediction
from crystaldb.schema.releases import Release, ReleaseMember, ReleaseRef
from crystaldb.schema.structures import Structure

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
Pair = tuple[str, Any]  # (operator, value) of one HAS item
SYMBOLS = chemical_symbols[1:]  # "X" (number 0) is no element
_SPECIES = re.compile(r"([A-Z][a-z]?)(?:_(.+))?")


def combine(mode: str, parts: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """HAS / HAS ALL as AND of one test per item, HAS ANY as OR."""
    return or_(*parts) if mode == "any" else and_(*parts)


def predicted(models: Sequence[str], rhs: tuple[Any, ...]) -> ColumnElement[bool]:
    """Some band gap prediction of the models compares so; IS KNOWN: some prediction."""
    kind = rhs[0]
    tests: list[Any] = []
    if kind == "op":
        if isinstance(rhs[2], bool) or not isinstance(rhs[2], int | float):
            raise FilterError("a predicted band gap is a number: compare it with one")
        tests.append(OPS[rhs[1]](Prediction.value, rhs[2]))
    elif kind != "known":
        raise FilterError("a predicted band gap takes =, !=, <, <=, >, >= and IS KNOWN")
    found = exists().where(
        Prediction.structure_id == Structure.id,
        Prediction.property == "band_gap",
        Prediction.model_id.in_(select(Model.id).where(Model.name.in_(list(models)))),
        *tests,
    )
    found = found.correlate(Structure)
    return not_(found) if kind == "known" and not rhs[1] else found


def _member_of(refs: Sequence[str]) -> ColumnElement[bool]:
    """The release row is one of the "NAME:VERSION" strings."""
    pairs = []
    for text in refs:
        ref = ReleaseRef.parse(text) if isinstance(text, str) else None
        if ref is None or ref.version is None:
            raise FilterError(f'_crystaldb_releases holds "NAME:VERSION" strings, not {text!r}')
        pairs.append((ref.name, ref.version))
    return tuple_(Release.name, Release.version).in_(pairs)


def _members(*where: Any) -> Any:
    """EXISTS a release membership of the row's structure satisfying `where`."""
    return (
        exists()
        .where(ReleaseMember.structure_id == Structure.id, Release.id == ReleaseMember.release_id)
        .where(*where)
        .correlate(Structure)
    )


def releases(rhs: tuple[Any, ...]) -> ColumnElement[bool]:
    """_crystaldb_releases: HAS / ALL / ANY / ONLY "NAME:VERSION", LENGTH, IS KNOWN (always)."""
    kind = rhs[0]
    if kind == "known":
        return true() if rhs[1] else false()
    if kind == "length":
        count = (
            select(func.count())
            .where(ReleaseMember.structure_id == Structure.id)
            .correlate(Structure)
            .scalar_subquery()
        )
        return cast(ColumnElement[bool], OPS[rhs[1]](count, rhs[2]))
    if kind != "has":
        raise FilterError("_crystaldb_releases is a list: use HAS, HAS ALL / ANY / ONLY, LENGTH")
    if any(op != "=" for op in rhs[3]):
        raise FilterError("_crystaldb_releases HAS takes no operator")
    if rhs[1] == "only":
        return not_(_members(not_(_member_of(rhs[2]))))
    return combine(rhs[1], [_members(_member_of([value])) for value in rhs[2]])


def _sites() -> Any:
    """The row's sites as (z, occ) rows: occ is NULL where no occupancies are stored."""
    sites = func.unnest(Structure.atomic_numbers, Structure.occupancies)
    return sites.table_valued(column("z", SmallInteger), column("occ", Double)).render_derived()


def _species_test(sites: Any, name: Any) -> ColumnElement[bool]:
    """The site carries the species `name` (entries: "Fe" full, "Fe_0.5" partly occupied)."""
    found = _SPECIES.fullmatch(name) if isinstance(name, str) else None
    if found is None or found[1] not in atomic_numbers or found[1] == "X":
        return false()
    z = atomic_numbers[found[1]]
    if found[2] is None:
        return and_(sites.c.z == z, or_(sites.c.occ.is_(None), sites.c.occ >= 1.0))
    try:
        occ = float(found[2])
    except ValueError:
        return false()
    if not 0.0 < occ < 1.0 or f"{occ:g}" != found[2]:
        return false()  # not a name entries would give
    half = 0.5 * 10 ** (math.floor(math.log10(occ)) - 5)  # :g keeps 6 significant digits
    return and_(sites.c.z == z, sites.c.occ < 1.0, sites.c.occ.between(occ - half, occ + half))


def species_at_sites(mode: str, pairs: Sequence[Pair]) -> ColumnElement[bool]:
    """species_at_sites HAS / ALL / ANY / ONLY species names (with = only)."""
    if any(op != "=" for op, _ in pairs):
        raise FilterError("species_at_sites HAS takes no operator other than =")
    if mode == "only":
        sites = _sites()
        others = (
            select(1)
            .select_from(sites)
            .where(not_(or_(*(_species_test(sites, value) for _, value in pairs))))
        )
        return not_(exists(others.correlate(Structure)))
    parts = []
    for _, value in pairs:
        sites = _sites()
        parts.append(exists(select(1).select_from(sites).where(_species_test(sites, value))))
    return combine(mode, parts)


def symbols_where(op: str, value: Any) -> list[str]:
    """The element symbols that satisfy `symbol op value` (string order, as OPTIMADE's)."""
    if not isinstance(value, str):
        raise FilterError("elements hold strings: compare them with a quoted string")
    return [symbol for symbol in SYMBOLS if OPS[op](symbol, value)]


def _ratio_test(sites: Any, item: Sequence[Pair]) -> ColumnElement[bool]:
    """One (element, ratio) group of the row: the symbol and its share of the sites compare so."""
    if len(item) != 2:
        raise FilterError('elements:elements_ratios HAS takes pairs: "C":>0.5')
    (symbol_op, symbol), (ratio_op, ratio) = item
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise FilterError("an elements_ratios value is a number")
    numbers = [atomic_numbers[s] for s in symbols_where(symbol_op, symbol)]
    share = func.count().cast(Double) / Structure.nsites.cast(Double)
    return and_(sites.c.z.cast(BigInteger).in_(numbers or [-1]), OPS[ratio_op](share, ratio))


def zipped_ratios(mode: str, items: Sequence[Sequence[Pair]]) -> ColumnElement[bool]:
    """elements:elements_ratios HAS / ALL / ANY / ONLY (element, ratio) pairs: a group of the
    row's sites by atomic number, whose count over nsites is the served ratio, matches."""
    if mode == "only":
        sites = _sites()
        groups = select(sites.c.z).select_from(sites).group_by(sites.c.z)
        odd = groups.having(not_(or_(*(_ratio_test(sites, item) for item in items))))
        return not_(exists(odd.correlate(Structure)))
    parts = []
    for item in items:
        sites = _sites()
        groups = select(sites.c.z).select_from(sites).group_by(sites.c.z)
        parts.append(exists(groups.having(_ratio_test(sites, item)).correlate(Structure)))
    return combine(mode, parts)
