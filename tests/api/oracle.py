"""The same questions as StructureFilter asks, answered in Python over the stored rows."""

from __future__ import annotations

import random
from typing import Any

from crystaldb.core.records import FLAGS
from tests.api.conftest import Row
from tests.api.derived import MODELS

MODEL_NAMES = sorted(MODELS)

Filter = dict[str, Any]


def _within(value: float | None, bounds: dict[str, Any]) -> bool:
    """gte <= value <= lte, for the bounds given; a missing value is never within."""
    if value is None:
        return False
    low, high = bounds.get("gte"), bounds.get("lte")
    return (low is None or value >= low) and (high is None or value <= high)


def _elements(row: Row, spec: dict[str, list[str]]) -> bool:
    """hasAll / hasAny / hasOnly / excludes."""
    have = set(row.columns["elements"])
    tests = {
        "hasAll": lambda s: s <= have,
        "hasAny": lambda s: bool(s & have),
        "hasOnly": lambda s: have <= s,
        "excludes": lambda s: not (s & have),
    }
    return all(tests[name](set(symbols)) for name, symbols in spec.items())


def _flags(row: Row, spec: dict[str, list[str]]) -> bool:
    """hasAll / hasAny / excludes."""
    have = set(row.columns["flags"])
    tests = {
        "hasAll": lambda s: s <= have,
        "hasAny": lambda s: bool(s & have),
        "excludes": lambda s: not (s & have),
    }
    return all(tests[name](set(flags)) for name, flags in spec.items())


def _space_group(row: Row, spec: dict[str, Any]) -> bool:
    """number, symbol, in."""
    number, symbol = row.columns["spacegroup_number"], row.columns["spacegroup_symbol"]
    return (
        ("number" not in spec or number == spec["number"])
        and ("symbol" not in spec or symbol == spec["symbol"])
        and ("in" not in spec or number in spec["in"])
    )


def _source(row: Row, spec: dict[str, str]) -> bool:
    """Any id in the database, or exactly this one."""
    if "id" in spec:
        return (spec["database"], spec["id"]) in row.ids
    return any(database == spec["database"] for database, _ in row.ids)


def _gaps(row: Row, spec: dict[str, Any]) -> list[float]:
    """The values a bandGap filter tests: a model's predictions, or a functional's labels."""
    if spec.get("model"):
        return row.predictions.get(spec["model"], [])
    return row.gaps.get(spec.get("functional") or "PBE", [])


def holds(spec: Filter, row: Row) -> bool:
    """Every condition of the filter object holds for the row."""
    columns = row.columns
    checks = {
        "bandGap": lambda v: any(_within(g, v) for g in _gaps(row, v)),
        "spaceGroup": lambda v: _space_group(row, v),
        "crystalSystem": lambda v: columns["crystal_system"] == v,
        "elements": lambda v: _elements(row, v),
        "flags": lambda v: _flags(row, v),
        "nelements": lambda v: _within(columns["nelements"], v),
        "nsites": lambda v: _within(columns["nsites"], v),
        "reducedFormula": lambda v: columns["reduced_formula"] == v,
        "anonymousFormula": lambda v: columns["anonymous_formula"] == v,
        "source": lambda v: _source(row, v),
        "release": lambda v: v in row.releases,
        "and": lambda v: all(holds(item, row) for item in v),
        "or": lambda v: any(holds(item, row) for item in v),
        "not": lambda v: not holds(v, row),
    }
    return all(checks[name](value) for name, value in spec.items())


def select(rows: dict[int, Row], spec: Filter) -> set[int]:
    """Ids of the rows the filter selects."""
    return {row.id for row in rows.values() if holds(spec, row)}


def random_leaf(rng: random.Random, rows: list[Row]) -> Filter:
    """One condition with values taken from the data, so most select something."""
    row = rng.choice(rows)
    columns = row.columns
    elements = sorted(columns["elements"])
    kind = rng.choice(
        ["bandGap", "spaceGroup", "crystalSystem", "elements", "flags", "nelements", "nsites",
         "reducedFormula", "anonymousFormula", "source", "release"]
    )  # fmt: skip
    if kind == "bandGap":
        low = round(rng.uniform(0, 4), 2)
        bounds = {"gte": low, "lte": round(low + rng.uniform(0, 3), 2)}
        source = rng.choice([{}, {}, {"model": rng.choice(MODEL_NAMES)}])
        return {"bandGap": {**bounds, **source}}
    if kind == "spaceGroup":
        number = columns["spacegroup_number"] or 14
        return {"spaceGroup": rng.choice([{"number": number}, {"in": [number, 2, 62]}])}
    if kind == "crystalSystem":
        return {"crystalSystem": columns["crystal_system"] or "cubic"}
    if kind == "elements":
        mode = rng.choice(["hasAll", "hasAny", "hasOnly", "excludes"])
        symbols = rng.sample(elements, k=min(len(elements), rng.randint(1, 2)))
        if mode == "hasOnly":
            symbols = [*elements, *rng.sample(["O", "N", "H"], k=1)]
        return {"elements": {mode: sorted(set(symbols))}}
    if kind == "flags":
        flags = rng.sample(sorted(columns["flags"]) or FLAGS, k=1) + rng.sample(FLAGS, k=1)
        return {"flags": {rng.choice(["hasAll", "hasAny", "excludes"]): sorted(set(flags))}}
    if kind in ("nelements", "nsites"):
        value = columns[kind]
        return {
            kind: {"gte": max(1, value - rng.randint(0, 20)), "lte": value + rng.randint(0, 20)}
        }
    if kind in ("reducedFormula", "anonymousFormula"):
        return {
            kind: columns["reduced_formula" if kind == "reducedFormula" else "anonymous_formula"]
        }
    if kind == "source":
        database, eid = sorted(row.ids)[0] if row.ids else ("cod", "1")
        return {"source": rng.choice([{"database": database}, {"database": database, "id": eid}])}
    return {"release": "api-test:1.0"}


def random_filter(rng: random.Random, rows: list[Row], depth: int = 0) -> Filter:
    """A leaf, or several joined in one object, or and/or/not of smaller filters."""
    choice = rng.random() if depth < 2 else 0.0
    if choice < 0.4:
        return random_leaf(rng, rows)
    if choice < 0.6:
        merged: Filter = {}
        for _ in range(rng.randint(2, 3)):
            merged.update(random_leaf(rng, rows))
        return merged
    if choice < 0.75:
        return {"and": [random_filter(rng, rows, depth + 1) for _ in range(rng.randint(1, 3))]}
    if choice < 0.9:
        return {"or": [random_filter(rng, rows, depth + 1) for _ in range(rng.randint(1, 3))]}
    return {"not": random_filter(rng, rows, depth + 1)}
