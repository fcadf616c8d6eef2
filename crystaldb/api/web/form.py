"""The search form's fields, read into a GraphQL StructureFilter, with a message per bad field
(so a typo is a sentence on the page, never a 500)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crystaldb.query.fields import DEFAULT_FUNCTIONAL

DEFAULT_FIRST = 50
MAX_FIRST = 500
ELEMENT_FIELDS = {"all": "hasAll", "any": "hasAny", "only": "hasOnly", "exclude": "excludes"}
MODEL_PREFIX = "model:"
# The results table's sortable columns: the `sort` field's value (a leading "-" for
# descending) -> the GraphQL StructureSort without its direction.
SORTS = {
    "id": "ID",
    "formula": "FORMULA",
    "spacegroup": "SPACE_GROUP",
    "nsites": "NSITES",
    "gap": "BAND_GAP",
}
_SPLIT = re.compile(r"[\s,;]+")


@dataclass
class Search:
    """What the form asks: the filter, the band gap source, the page; and what was wrong."""

    values: dict[str, str]
    filter: dict[str, Any] = field(default_factory=dict)
    functional: str = DEFAULT_FUNCTIONAL
    model: str | None = None
    first: int = DEFAULT_FIRST
    after: str | None = None
    sort: str = "id"  # a key of SORTS
    descending: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def variables(self) -> dict[str, Any]:
        """The variables of the search query."""
        return {
            "filter": self.filter or None,
            "sort": f"{SORTS[self.sort]}_{'DESC' if self.descending else 'ASC'}",
            "first": self.first,
            "after": self.after,
            "functional": self.functional,
            "model": self.model,
            "byModel": self.model is not None,
        }

    def sorted_by(self, column: str) -> str:
        """The `sort` value a column's header links to: ascending first, then the toggle."""
        return f"-{column}" if column == self.sort and not self.descending else column


def read(query: Mapping[str, str]) -> Search:
    """The search the query string asks for; `problems` lists each field that cannot be read."""
    values = {key: query.get(key, "").strip() for key in _FIELDS}
    search = Search(values)
    elements = {
        name: _SPLIT.split(values[key]) for key, name in ELEMENT_FIELDS.items() if values[key]
    }
    if elements:
        search.filter["elements"] = {k: [s for s in v if s] for k, v in elements.items()}
    method = values["method"] or DEFAULT_FUNCTIONAL
    if method.startswith(MODEL_PREFIX):
        search.model = method.removeprefix(MODEL_PREFIX)
    else:
        search.functional = method
    gap = _range(search, "gap_min", "gap_max", float, "band gap")
    if gap:
        gap.update({"model": search.model} if search.model else {"functional": method})
        search.filter["bandGap"] = gap
    nsites = _range(search, "nsites_min", "nsites_max", int, "number of sites")
    if nsites:
        search.filter["nsites"] = nsites
    if values["spacegroup"]:
        group = values["spacegroup"]
        key = "number" if group.isdigit() else "symbol"
        search.filter["spaceGroup"] = {key: int(group) if key == "number" else group}
    if values["formula"]:
        search.filter["reducedFormula"] = values["formula"]
    search.after = values["after"] or None
    if values["sort"]:
        column = values["sort"].removeprefix("-")
        if column in SORTS:
            search.sort, search.descending = column, values["sort"].startswith("-")
        else:
            listed = ", ".join(SORTS)
            search.problems.append(f"sort: {values['sort'][:40]!r} is not one of {listed}")
    if values["first"]:
        first = _number(search, "first", int, "page size")
        if first is not None and not 1 <= first <= MAX_FIRST:
            search.problems.append(f"page size: give 1 to {MAX_FIRST}, not {first}")
        elif first is not None:
            search.first = int(first)
    return search


_FIELDS = (
    *ELEMENT_FIELDS,
    "method",
    "gap_min",
    "gap_max",
    "nsites_min",
    "nsites_max",
    "spacegroup",
    "formula",
    "first",
    "sort",
    "after",
)


def _range(search: Search, low: str, high: str, kind: type, what: str) -> dict[str, Any]:
    """{gte, lte} from two fields, each left out when empty."""
    bounds = {"gte": _number(search, low, kind, what), "lte": _number(search, high, kind, what)}
    return {key: value for key, value in bounds.items() if value is not None}


def _number(search: Search, key: str, kind: type, what: str) -> Any:
    """A field as an int or float; None (and a problem, if it was not empty) otherwise."""
    text = search.values[key]
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        search.problems.append(f"{what}: {text[:40]!r} is not {noun}")
        return None
    if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
        search.problems.append(f"{what}: give a finite number, not {text[:40]!r}")
        return None
    return value
